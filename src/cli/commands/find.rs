//! `cairn find PATTERN...`: which snapshots hold files or folders of a matching name.

use crate::cli::exit::EXIT_OK;
use cairn::Result;
use cairn::ops::find::{FindQuery, find};
use indicatif::HumanBytes;

use crate::cli::escape::escape;
use crate::cli::file_time;
use crate::cli::output::outln;
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Name patterns (`*`, `?`, `[abc]`, `{a,b}`); an entry matching any is listed
    #[arg(required = true)]
    patterns: Vec<String>,
    /// Match without regard to case
    #[arg(short = 'i', long)]
    ignore_case: bool,
    /// Only entries modified at or after this time ("YYYY-MM-DD[ HH:MM:SS]", local)
    #[arg(long, value_name = "TIME")]
    oldest: Option<String>,
    /// Only entries modified at or before this time ("YYYY-MM-DD[ HH:MM:SS]", local)
    #[arg(long, value_name = "TIME")]
    newest: Option<String>,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let query = FindQuery {
        patterns: args.patterns.clone(),
        ignore_case: args.ignore_case,
        oldest: args
            .oldest
            .as_deref()
            .map(|t| super::parse_time("--oldest", t))
            .transpose()?,
        newest: args
            .newest
            .as_deref()
            .map(|t| super::parse_time("--newest", t))
            .transpose()?,
    };
    let repo = g.open()?;
    let snapshots = args.filter.select(&repo.snapshots()?)?;
    let meter = Meter::items(g.progress(), "find");
    let results = find(&repo, &snapshots, &query, &meter)?;
    drop(meter);
    if g.json {
        let items: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "snapshot": r.id.to_hex(),
                    "short_id": r.id.short(),
                    "time": r.snapshot.local_time().to_rfc3339(),
                    "hostname": r.snapshot.hostname,
                    "paths": r.snapshot.paths,
                    "matches": r.found.iter().map(|f| serde_json::json!({
                        "path": String::from_utf8_lossy(&f.path),
                        "type": f.kind,
                        "size": f.size,
                        "mtime": file_time::rfc3339(f.mtime),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(items))?;
        return Ok(EXIT_OK);
    }
    for r in &results {
        outln!(
            "snapshot {} of {} at {}:",
            r.id.short(),
            r.snapshot.hostname,
            r.snapshot.local_time().format("%Y-%m-%d %H:%M:%S")
        )?;
        for f in &r.found {
            outln!(
                "  {}  {}  {}  {}",
                escape(&f.path),
                f.kind,
                HumanBytes(f.size),
                file_time::text(f.mtime)
            )?;
        }
    }
    if !g.quiet && !g.json {
        let entries: usize = results.iter().map(|r| r.found.len()).sum();
        g.info(format!(
            "{entries} matches in {} of {} snapshots",
            results.len(),
            snapshots.len()
        ));
    }
    Ok(EXIT_OK)
}
