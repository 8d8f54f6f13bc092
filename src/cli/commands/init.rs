use cairn::Result;
use cairn::config::ChunkerParams;
use cairn::error::EXIT_OK;
use cairn::repository::{InitOptions, Repository};

use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct NewRepoArgs {
    /// Minimum chunk size in bytes
    #[arg(long, default_value_t = ChunkerParams::default().min)]
    chunk_min: u32,
    /// Average chunk size in bytes
    #[arg(long, default_value_t = ChunkerParams::default().avg)]
    chunk_avg: u32,
    /// Maximum chunk size in bytes
    #[arg(long, default_value_t = ChunkerParams::default().max)]
    chunk_max: u32,
    /// zstd compression level (1–22)
    #[arg(long, default_value_t = 3)]
    compression_level: i32,
}

impl NewRepoArgs {
    pub fn options(&self) -> InitOptions {
        InitOptions {
            chunker: ChunkerParams {
                min: self.chunk_min,
                avg: self.chunk_avg,
                max: self.chunk_max,
            },
            zstd_level: self.compression_level,
        }
    }
}

pub fn run(g: &Global, args: &NewRepoArgs) -> Result<i32> {
    let backend = g.backend()?;
    let password = g.password().get(true)?;
    let config = Repository::init(backend.clone(), &password, &args.options(), &g.retry())?;
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "initialized",
            "repository": backend.location(),
            "id": config.id.to_hex(),
        }))?;
    } else if !g.quiet {
        println!(
            "created cairn repository {} at {}",
            config.id.short(),
            backend.location()
        );
        println!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(EXIT_OK)
}
