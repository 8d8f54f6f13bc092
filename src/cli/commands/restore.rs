use std::path::PathBuf;

use cairn::Result;
use cairn::error::{EXIT_ARCHIVED, EXIT_FATAL, EXIT_OK};
use cairn::ops::restorer::archived::{self, ArchivedPack, Retrieval};
use cairn::ops::restorer::{RestoreOptions, restore};
use cairn::store::RetrievalTier;
use indicatif::HumanBytes;

use super::{pick_snapshot, snapshot_path};
use crate::cli::output::{errln, regardless};
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` (the newest that passes --host, --tag, --path) or an id prefix;
    /// `SNAPSHOT:PATH` takes a folder inside it as the root
    snapshot: String,
    /// Directory to restore into; snapshot paths are kept below it
    #[arg(short, long)]
    target: PathBuf,
    /// Restore only this path of the snapshot (repeatable; as typed, or escaped as `ls`
    /// prints it; a relative one is taken from the working directory, as backup takes it)
    #[arg(short, long = "include")]
    includes: Vec<PathBuf>,
    /// Re-read every restored file and check it against the snapshot
    #[arg(long)]
    verify: bool,
    /// Do not restore extended attributes and POSIX ACLs
    #[arg(long)]
    no_xattrs: bool,
    /// Leave every aligned 4 KiB block of zeros as a hole, not only the holes files had
    /// when they were backed up (which are always made)
    #[arg(long)]
    sparse: bool,
    /// Request the retrieval of the data packs this restore needs that are in an archive
    /// storage class (S3 GLACIER, DEEP_ARCHIVE), then restore once they all are readable;
    /// until then it exits with code 4 and says how many are waiting
    #[arg(long)]
    retrieve_cold: bool,
    /// Retrieval tier for --retrieve-cold: Expedited (minutes, dearest; not for
    /// DEEP_ARCHIVE), Standard (hours) or Bulk (up to two days, cheapest)
    #[arg(long, value_enum, default_value_t = Tier::Standard, requires = "retrieve_cold")]
    tier: Tier,
    /// Days the retrieved copies stay readable (and are charged for) with --retrieve-cold
    #[arg(long, default_value_t = 2, requires = "retrieve_cold", value_parser = clap::value_parser!(u32).range(1..=365))]
    retrieve_days: u32,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Tier {
    Expedited,
    Standard,
    Bulk,
}

fn total(packs: &[ArchivedPack]) -> HumanBytes {
    HumanBytes(packs.iter().map(|p| p.size).sum())
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = pick_snapshot(&repo, &args.snapshot, &args.filter)?;
    let includes = args
        .includes
        .iter()
        .map(|p| snapshot_path(&repo, snap.tree, p))
        .collect::<Result<Vec<_>>>()?;
    if args.retrieve_cold {
        let retrieval = Retrieval {
            tier: match args.tier {
                Tier::Expedited => RetrievalTier::Expedited,
                Tier::Standard => RetrievalTier::Standard,
                Tier::Bulk => RetrievalTier::Bulk,
            },
            days: args.retrieve_days,
        };
        let prep = archived::prepare(&repo, snap.tree, &includes, retrieval)?;
        if g.json {
            regardless(print_json(&serde_json::json!({
                "message_type": "retrieval",
                "requested": prep.requested,
                "retrieving": prep.retrieving,
                "ready": prep.ready,
            })))?;
        }
        if !prep.complete() {
            if !prep.requested.is_empty() {
                g.info(format!(
                    "requested the retrieval of {} archived data packs ({}) for {} days",
                    prep.requested.len(),
                    total(&prep.requested),
                    args.retrieve_days
                ));
            }
            if !prep.retrieving.is_empty() {
                g.info(format!(
                    "{} archived data packs ({}) are still being retrieved",
                    prep.retrieving.len(),
                    total(&prep.retrieving)
                ));
            }
            errln!(
                "error: the restore needs archived data that is not readable yet; run the same command again once the retrieval is done (Expedited: minutes, Standard: hours, Bulk: up to two days)"
            );
            return Ok(EXIT_ARCHIVED);
        }
        if prep.ready > 0 {
            g.info(format!(
                "the {} archived data packs this restore needs are retrieved",
                prep.ready
            ));
        }
    }
    let meter = Meter::bytes(g.progress(), false, "restoring");
    if let Some(s) = &snap.summary
        && args.includes.is_empty()
    {
        meter.total(s.total_bytes_processed);
    }
    g.info(format!(
        "restoring snapshot {} to {}",
        id.short(),
        args.target.display()
    ));
    // A restore removes the files it had not finished when interrupted (exit code 130).
    cairn::interrupt::install()
        .map_err(|e| cairn::Error::System(format!("cannot handle Ctrl-C: {e}")))?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        includes,
        verify: args.verify,
        xattrs: !args.no_xattrs,
        sparse: args.sparse,
    };
    let summary = restore(&repo, snap.tree, &opts, &meter)?;
    for r in &summary.xattrs_refused {
        errln!(
            "warning: {} extended attributes of kind {} were not restored ({}; first at {}){}",
            r.count,
            r.kind,
            r.reason,
            r.first.display(),
            match r.kind.as_str() {
                "trusted" | "security" => "; restoring them needs root",
                _ => "; the target's file system may not support them",
            }
        );
        if g.json {
            regardless(print_json(&serde_json::json!({
                "message_type": "warning",
                "xattrs_refused": r,
            })))?;
        }
    }
    for (path, err) in &summary.errors {
        errln!("error: {}: {err}", path.display());
        if g.json {
            regardless(print_json(
                &serde_json::json!({"message_type": "error", "path": path, "error": err}),
            ))?;
        }
    }
    if g.json {
        regardless(print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": id.to_hex(),
            "files_restored": summary.files,
            "dirs_restored": summary.dirs,
            "other_restored": summary.other,
            "files_unchanged": summary.files_unchanged,
            "hard_links": summary.hard_links,
            "skipped": summary.skipped,
            "bytes_restored": summary.bytes,
            "files_verified": summary.verified_files,
            "errors": summary.errors.len(),
            "files_waiting": summary.files_waiting,
            "archived_packs": summary.archived_packs,
            "requests": repo.request_stats(),
        })))?;
    } else {
        let mut line = format!(
            "restored {} files, {} dirs, {} other, {} bytes",
            summary.files, summary.dirs, summary.other, summary.bytes
        );
        if summary.hard_links > 0 {
            line += &format!(", {} hard links", summary.hard_links);
        }
        if args.verify {
            line += &format!(", verified {} files", summary.verified_files);
        }
        if summary.files_unchanged > 0 {
            line += &format!(
                "; {} files already there and identical were kept",
                summary.files_unchanged
            );
        }
        if summary.skipped > 0 {
            line += &format!(
                "; skipped {} sockets (the program that listens on one creates it)",
                summary.skipped
            );
        }
        g.info(line);
    }
    if !summary.archived_packs.is_empty() {
        for p in &summary.archived_packs {
            errln!(
                "error: data pack {} is in storage class {} ({})",
                p.id,
                p.class,
                HumanBytes(p.size)
            );
        }
        errln!(
            "error: {} files were not restored: they need data from the {} archived packs above ({} in all); run the same restore with --retrieve-cold to request them, then again once they are retrieved",
            summary.files_waiting,
            summary.archived_packs.len(),
            total(&summary.archived_packs)
        );
        return Ok(EXIT_ARCHIVED);
    }
    if summary.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        errln!(
            "error: {} items could not be restored (listed above)",
            summary.errors.len()
        );
        Ok(EXIT_FATAL)
    }
}
