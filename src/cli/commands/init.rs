use std::ops::RangeInclusive;

use crate::cli::exit::EXIT_OK;
use cairn::format::config::{
    CHUNK_AVG_LIMITS, CHUNK_MAX_LIMITS, CHUNK_MIN_LIMITS, ChunkerParams, Config, ZSTD_LEVELS,
};
use cairn::repo::{InitOptions, Repository};
use cairn::{Error, Result};

use crate::cli::output::{outln, regardless};
use crate::cli::{Global, print_json};

/// Settings of a new repository. They are fixed once it exists (every writer must chunk
/// and compress alike), so they are `None` unless given, to tell "not given" from the
/// default.
#[derive(clap::Args)]
pub struct NewRepoArgs {
    /// Minimum chunk size in bytes (new repositories only; default 524288)
    #[arg(long, value_parser = chunk_size(CHUNK_MIN_LIMITS))]
    chunk_min: Option<u32>,
    /// Average chunk size in bytes (new repositories only; default 1048576)
    #[arg(long, value_parser = chunk_size(CHUNK_AVG_LIMITS))]
    chunk_avg: Option<u32>,
    /// Maximum chunk size in bytes (new repositories only; default 8388608)
    #[arg(long, value_parser = chunk_size(CHUNK_MAX_LIMITS))]
    chunk_max: Option<u32>,
    /// zstd compression level, 1–22 (new repositories only; default 3)
    #[arg(long, value_parser = clap::value_parser!(i32).range(i64::from(*ZSTD_LEVELS.start())..=i64::from(*ZSTD_LEVELS.end())))]
    compression_level: Option<i32>,
}

/// A parser of even byte counts within `limits`, FastCDC's conditions.
fn chunk_size(limits: RangeInclusive<u32>) -> impl Fn(&str) -> Result<u32, String> + Clone {
    move |s| {
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number of bytes"))?;
        if !limits.contains(&n) || !n.is_multiple_of(2) {
            return Err(format!(
                "{n} is outside {}..={} bytes or odd; FastCDC needs an even size in that range",
                limits.start(),
                limits.end()
            ));
        }
        Ok(n)
    }
}

impl NewRepoArgs {
    /// The settings, with defaults for those not given; min ≤ avg ≤ max is checked here,
    /// before any password is asked for.
    pub fn options(&self, g: &Global) -> Result<InitOptions> {
        let defaults = InitOptions::default();
        let chunker = ChunkerParams {
            min: self.chunk_min.unwrap_or(defaults.chunker.min),
            avg: self.chunk_avg.unwrap_or(defaults.chunker.avg),
            max: self.chunk_max.unwrap_or(defaults.chunker.max),
        };
        if !(chunker.min <= chunker.avg && chunker.avg <= chunker.max) {
            return Err(Error::Usage(format!(
                "chunk sizes must grow: --chunk-min {} ≤ --chunk-avg {} ≤ --chunk-max {} does not hold",
                chunker.min, chunker.avg, chunker.max
            )));
        }
        Ok(InitOptions {
            chunker,
            zstd_level: self.compression_level.unwrap_or(defaults.zstd_level),
            object_lock: g.object_lock()?,
        })
    }

    /// The first of these options given on the command line, if any.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.chunk_min.is_some(), "--chunk-min"),
            (self.chunk_avg.is_some(), "--chunk-avg"),
            (self.chunk_max.is_some(), "--chunk-max"),
            (self.compression_level.is_some(), "--compression-level"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

pub fn run(g: &Global, args: &NewRepoArgs) -> Result<i32> {
    let options = args.options(g)?;
    let backend = g.new_backend()?;
    let password = g.password().get()?.confirmed()?;
    let config = Repository::init(backend.clone(), &password, &options, &g.retry())?;
    let store = backend.describe_store()?;
    regardless(print_created(
        g,
        &config,
        &backend.location(),
        store.as_deref(),
    ))?;
    Ok(EXIT_OK)
}

fn print_created(g: &Global, config: &Config, location: &str, store: Option<&str>) -> Result<()> {
    let id = &config.id;
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "initialized",
            "repository": location,
            "id": id.to_hex(),
            "store": store,
            "object_lock": config.object_lock,
        }))
    } else if !g.quiet {
        outln!("created cairn repository {} at {location}", id.short())?;
        if let Some(store) = store {
            outln!("store: {store}")?;
        }
        if let Some(lock) = &config.object_lock {
            outln!(
                "object lock: every object but locks is kept for {lock}, by every later command"
            )?;
        }
        outln!("Keep the password safe: without it the data cannot be recovered.")
    } else {
        Ok(())
    }
}
