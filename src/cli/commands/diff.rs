//! `cairn diff A B`: which files were added, removed or changed between two snapshots.

use crate::cli::exit::EXIT_OK;
use cairn::Result;
use cairn::format::tree::NodeKind;
use cairn::ops::diff::{Change, Modifier, diff};
use indicatif::HumanBytes;

use super::pick_snapshot;
use crate::cli::output::outln;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// The earlier snapshot: `latest` or an id prefix
    first: String,
    /// The later snapshot: `latest` or an id prefix
    second: String,
    /// Also list paths whose content is the same but whose mode, owner or mtime changed
    /// (`U`); they are always counted
    #[arg(long)]
    metadata: bool,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

fn shown_path(c: &Change) -> String {
    let dir = c
        .after
        .or(c.before)
        .is_some_and(|n| n.kind == NodeKind::Dir);
    let p = c.path.to_string_lossy();
    if dir && p != "/" {
        format!("{p}/")
    } else {
        p.into_owned()
    }
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id_a, a) = pick_snapshot(&repo, &args.first, &args.filter)?;
    let (id_b, b) = pick_snapshot(&repo, &args.second, &args.filter)?;
    if !g.json && !g.quiet {
        outln!(
            "comparing snapshot {} ({}) to {} ({}):",
            id_a.short(),
            a.local_time().format("%Y-%m-%d %H:%M:%S"),
            id_b.short(),
            b.local_time().format("%Y-%m-%d %H:%M:%S")
        )?;
    }
    let stats = diff(&repo, a.tree, b.tree, &mut |c| {
        if c.modifier == Modifier::Metadata && !args.metadata {
            return Ok(());
        }
        if g.json {
            print_json(&serde_json::json!({
                "message_type": "change",
                "path": shown_path(c),
                "modifier": c.modifier,
                "type": c.after.or(c.before).map(|n| n.kind.as_str()),
                "size_before": c.before.map(|n| n.size),
                "size_after": c.after.map(|n| n.size),
            }))
        } else {
            outln!("{}    {}", c.modifier.letter(), shown_path(c))?;
            Ok(())
        }
    })?;
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "first_snapshot": id_a.to_hex(),
            "second_snapshot": id_b.to_hex(),
            "stats": stats,
        }))?;
    } else if !g.quiet {
        let (ad, rm) = (&stats.added, &stats.removed);
        outln!()?;
        outln!(
            "Files:        {:>8} added, {:>8} removed, {:>8} changed",
            ad.files,
            rm.files,
            stats.modified
        )?;
        outln!("Directories:  {:>8} added, {:>8} removed", ad.dirs, rm.dirs)?;
        outln!(
            "Others:       {:>8} added, {:>8} removed",
            ad.others,
            rm.others
        )?;
        outln!(
            "Paths:        {:>8} changed type, {:>8} changed metadata only",
            stats.type_changed,
            stats.metadata_changed
        )?;
        outln!(
            "File sizes:   {:>8} added, {:>8} removed",
            HumanBytes(ad.file_bytes).to_string(),
            HumanBytes(rm.file_bytes).to_string()
        )?;
        outln!(
            "Data added:   {} blobs, {} ({} stored)",
            ad.data_blobs,
            HumanBytes(ad.data_bytes),
            HumanBytes(ad.stored_bytes)
        )?;
        outln!(
            "Data removed: {} blobs, {} ({} stored)",
            rm.data_blobs,
            HumanBytes(rm.data_bytes),
            HumanBytes(rm.stored_bytes)
        )?;
    }
    Ok(EXIT_OK)
}
