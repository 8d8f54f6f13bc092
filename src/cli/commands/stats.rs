//! `cairn stats [SNAPSHOT...]`: sizes before and after deduplication and compression.

use crate::cli::exit::EXIT_OK;
use cairn::ops::stats::{Stats, stats};
use cairn::{Error, Result};
use indicatif::HumanBytes;

use crate::cli::output::{errln, outln, regardless};
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to count (`latest` or id prefixes); default: every snapshot the filters
    /// select
    snapshots: Vec<String>,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let all = repo.snapshots()?;
    let mut chosen = Vec::new();
    if args.snapshots.is_empty() {
        chosen = args.filter.select(&all)?;
    } else {
        for wanted in &args.snapshots {
            let one = cairn::format::snapshot::resolve(&all, wanted)?;
            if !chosen.iter().any(|(id, _)| id == &one.0) {
                chosen.push(one.clone());
            }
        }
    }
    let meter = Meter::items(g.progress(), "stats");
    meter.start("snapshots", chosen.len() as u64);
    let s = stats(&repo, &chosen, &meter)?;
    meter.finish();
    // The warning below matters more than whether anyone still reads stdout.
    regardless(print_report(g, &s))?;
    if s.missing_blobs > 0 {
        errln!(
            "warning: {} blobs these snapshots need are in no index; run `cairn check`",
            s.missing_blobs
        );
    }
    Ok(EXIT_OK)
}

fn print_report(g: &Global, s: &Stats) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(s).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("message_type".into(), "summary".into());
        }
        return print_json(&v);
    }
    outln!("Snapshots:         {}", s.snapshots)?;
    outln!(
        "Files:             {} (summed over the snapshots), {} directories, {} others",
        s.files,
        s.dirs,
        s.others
    )?;
    outln!(
        "Logical size:      {} (what restoring each snapshot writes)",
        HumanBytes(s.logical_bytes)
    )?;
    outln!(
        "Deduplicated size: {} in {} data blobs, plus {} in {} trees",
        HumanBytes(s.data_bytes),
        s.data_blobs,
        HumanBytes(s.tree_bytes),
        s.tree_blobs
    )?;
    outln!(
        "Stored size:       {} compressed and encrypted, in {} packs",
        HumanBytes(s.stored_bytes),
        s.packs
    )?;
    outln!(
        "Ratio:             {:.2}x (logical size / stored size)",
        s.ratio
    )?;
    outln!(
        "Repository:        {} in {} packs (all snapshots, and data `prune` has yet to free)",
        HumanBytes(s.repository_bytes),
        s.repository_packs
    )
}
