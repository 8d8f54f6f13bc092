use std::path::PathBuf;

use cairn::Result;
use cairn::archiver::absolute_path;
use cairn::error::{EXIT_FATAL, EXIT_OK};
use cairn::restorer::{RestoreOptions, restore};

use super::pick_snapshot;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix
    snapshot: String,
    /// Directory to restore into; snapshot paths are kept below it
    #[arg(short, long)]
    target: PathBuf,
    /// Restore only this path of the snapshot (repeatable; a relative one is taken from
    /// the working directory, as backup takes it)
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
        .map(|p| absolute_path(p))
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
    let opts = RestoreOptions {
        target: args.target.clone(),
        includes,
        verify: args.verify,
    };
    let summary = restore(&repo, snap.tree, &opts, &bar)?;
    for (path, err) in &summary.errors {
        eprintln!("error: {}: {err}", path.display());
        if g.json {
            print_json(&serde_json::json!({"message_type": "error", "path": path, "error": err}))?;
        }
    }
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": id.to_hex(),
            "files_restored": summary.files,
            "dirs_restored": summary.dirs,
            "other_restored": summary.other,
            "bytes_restored": summary.bytes,
            "files_verified": summary.verified_files,
            "errors": summary.errors.len(),
            "requests": repo.request_stats(),
        }))?;
    } else {
        g.info(format!(
            "restored {} files, {} dirs, {} other, {} bytes{}",
            summary.files,
            summary.dirs,
            summary.other,
            summary.bytes,
            if args.verify {
                format!(", verified {} files", summary.verified_files)
            } else {
                String::new()
            }
        ));
    }
    if summary.errors.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "error: {} items could not be restored (listed above)",
            summary.errors.len()
        );
        Ok(EXIT_FATAL)
    }
}
