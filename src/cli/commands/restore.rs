use std::path::PathBuf;

use cairn::Result;
use cairn::error::{EXIT_FATAL, EXIT_OK};
use cairn::restorer::{RestoreOptions, restore};

use super::{pick_snapshot, snapshot_path};
use crate::cli::output::{errln, regardless};
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix
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
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = pick_snapshot(&repo, &args.snapshot)?;
    let includes = args
        .includes
        .iter()
        .map(|p| snapshot_path(&repo, snap.tree, p))
        .collect::<Result<Vec<_>>>()?;
    let bar = cairn::progress::bytes_bar(g.progress(), "restoring");
    if let Some(s) = &snap.summary
        && args.includes.is_empty()
    {
        cairn::progress::total_known(&bar, s.total_bytes_processed);
    }
    g.info(format!(
        "restoring snapshot {} to {}",
        id.short(),
        args.target.display()
    ));
    // A restore removes the files it had not finished when interrupted (exit code 130).
    cairn::interrupt::install()
        .map_err(|e| cairn::Error::Other(format!("cannot handle Ctrl-C: {e}")))?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        includes,
        verify: args.verify,
    };
    let summary = restore(&repo, snap.tree, &opts, &bar)?;
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
            "skipped": summary.skipped,
            "bytes_restored": summary.bytes,
            "files_verified": summary.verified_files,
            "errors": summary.errors.len(),
            "requests": repo.request_stats(),
        })))?;
    } else {
        let mut line = format!(
            "restored {} files, {} dirs, {} other, {} bytes",
            summary.files, summary.dirs, summary.other, summary.bytes
        );
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
