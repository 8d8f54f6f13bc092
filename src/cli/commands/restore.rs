use std::path::{Path, PathBuf};

use crate::cli::exit::{EXIT_ARCHIVED, EXIT_FATAL, EXIT_OK};
use cairn::format::id::Id;
use cairn::format::snapshot::Snapshot;
use cairn::ops::patterns::{PatternRules, Patterns};
use cairn::ops::restorer::archived::{self, ArchivedPack, Retrieval};
use cairn::ops::restorer::select::Choice;
use cairn::ops::restorer::{Action, Change, Overwrite, RestoreOptions, restore};
use cairn::repo::Repository;
use cairn::repo::tree_walk::find_node;
use cairn::store::RetrievalTier;
use cairn::{Error, Result};
use indicatif::HumanBytes;

use super::{pick_snapshot, snapshot_path};
use crate::cli::Global;
use crate::cli::escape::escape_path;
use crate::cli::output::{errln, outln, print_json, regardless};
use crate::cli::progress::Meter;
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` (the newest that passes --host, --tag, --path) or an id prefix;
    /// `SNAPSHOT:PATH` takes a folder inside it as the root
    snapshot: String,
    /// Directory to restore into; snapshot paths are kept below it
    #[arg(short, long)]
    target: PathBuf,
    /// Restore only this path of the snapshot, or what this pattern matches, each with all
    /// below it (repeatable). A path is taken as typed or escaped as `ls` prints it (a
    /// relative one from the working directory, as backup takes it); one the snapshot does
    /// not hold that has `*`, `?` or `[` is a pattern, as backup's --exclude takes them
    #[arg(short, long = "include")]
    includes: Vec<String>,
    /// Like --include, a pattern matched without regard to case
    #[arg(long = "iinclude")]
    iincludes: Vec<String>,
    /// Leave out what this pattern matches, and all below it (repeatable; patterns as
    /// backup's --exclude); --delete leaves what it matches in the target
    #[arg(short, long = "exclude")]
    excludes: Vec<String>,
    /// Like --exclude, matched without regard to case
    #[arg(long = "iexclude")]
    iexcludes: Vec<String>,
    /// Read --exclude patterns from this file, one per line (repeatable)
    #[arg(long = "exclude-file")]
    exclude_files: Vec<PathBuf>,
    /// Read --iexclude patterns from this file, one per line (repeatable)
    #[arg(long = "iexclude-file")]
    iexclude_files: Vec<PathBuf>,
    /// What to do with a file that already stands in the target: `always` reads it and
    /// replaces it if it differs (a big one is rewritten only where it differs);
    /// `if-changed` does so too but takes one of the snapshot's size and mtime as
    /// identical unread; `if-newer` replaces it only if the snapshot's is newer (by
    /// mtime); `never` leaves it. The same goes for symlinks and other entries
    #[arg(long, value_enum, default_value_t = OverwriteArg::Always)]
    overwrite: OverwriteArg,
    /// In every folder the restore takes whole, remove what the snapshot does not hold
    /// there (not what --exclude matches). Without --include this is the snapshot's
    /// backup paths (or the SNAPSHOT:PATH folder). Try it with --dry-run first
    #[arg(long)]
    delete: bool,
    /// Change nothing: list what would be created, replaced, updated, kept and deleted
    /// (with -v also what is unchanged), reading existing files to tell
    #[arg(long, conflicts_with = "retrieve_cold")]
    dry_run: bool,
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
enum OverwriteArg {
    Always,
    IfChanged,
    IfNewer,
    Never,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Tier {
    Expedited,
    Standard,
    Bulk,
}

impl OverwriteArg {
    fn name(self) -> &'static str {
        match self {
            OverwriteArg::Always => "always",
            OverwriteArg::IfChanged => "if-changed",
            OverwriteArg::IfNewer => "if-newer",
            OverwriteArg::Never => "never",
        }
    }
}

/// `--include` paths and patterns, `--exclude` patterns. Below `SNAPSHOT:PATH` a relative
/// include is taken from that folder (the root of what is restored), not from the working
/// directory.
fn choice(repo: &Repository, (id, snap): (&Id, &Snapshot), args: &Args) -> Result<Choice> {
    let tree = snap.tree;
    let rooted = args.snapshot.contains(':');
    let mut paths = Vec::new();
    let mut patterns = Vec::new();
    for inc in &args.includes {
        let given = if rooted && !inc.starts_with('/') {
            format!("/{inc}")
        } else {
            inc.clone()
        };
        let path = snapshot_path(repo, tree, Path::new(&given))?;
        let held = find_node(repo, tree, &path).is_ok();
        if !held && inc.contains(['*', '?', '[']) {
            patterns.push(inc.clone());
        } else if !held {
            let missing = Err(Error::PathNotInSnapshot(path));
            return super::explain_missing(missing, &args.snapshot, &args.filter, id, snap);
        } else {
            paths.push(path);
        }
    }
    Ok(Choice {
        paths,
        include: Patterns::new(
            &PatternRules {
                patterns,
                ipatterns: args.iincludes.clone(),
                ..PatternRules::default()
            },
            "include",
        )?,
        exclude: Patterns::new(
            &PatternRules {
                patterns: args.excludes.clone(),
                pattern_files: args.exclude_files.clone(),
                ipatterns: args.iexcludes.clone(),
                ipattern_files: args.iexclude_files.clone(),
            },
            "exclude",
        )?,
    })
}

/// One line of the list of actions: what, the path as `ls` escapes it, and what it
/// costs.
fn action_line(a: &Action<'_>) -> String {
    let verb = match a.change {
        Change::Create => "create",
        Change::Replace => "replace",
        Change::Update => "update",
        Change::Unchanged => "unchanged",
        Change::Keep => "keep",
        Change::Delete => "delete",
    };
    let mut line = format!("{verb:<9} {:<8} {}", a.kind, escape_path(a.path));
    if a.bytes > 0 {
        line += &format!(" ({} to fetch)", HumanBytes(a.bytes));
    }
    line
}

fn total(packs: &[ArchivedPack]) -> HumanBytes {
    HumanBytes(packs.iter().map(|p| p.size).sum())
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = pick_snapshot(&repo, &args.snapshot, &args.filter)?;
    let choice = choice(&repo, (&id, &snap), args)?;
    if args.retrieve_cold {
        let retrieval = Retrieval {
            tier: match args.tier {
                Tier::Expedited => RetrievalTier::Expedited,
                Tier::Standard => RetrievalTier::Standard,
                Tier::Bulk => RetrievalTier::Bulk,
            },
            days: args.retrieve_days,
        };
        let prep = archived::prepare(&repo, snap.tree, &choice, retrieval)?;
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
    // Said before the progress bar starts drawing, which would otherwise leave a stale
    // copy of itself above this line on a terminal.
    g.info(format!(
        "restoring snapshot {} to {}",
        id.short(),
        args.target.display()
    ));
    let meter = Meter::bytes(g.progress() && !args.dry_run, false, "restoring");
    if let Some(s) = &snap.summary
        && args.includes.is_empty()
    {
        meter.total(s.total_bytes_processed);
    }
    // A restore removes the files it had not finished when interrupted (exit code 130).
    super::install_interrupt()?;
    let whole = choice.paths.is_empty() && choice.include.is_empty();
    let opts = RestoreOptions {
        target: args.target.clone(),
        choice,
        verify: args.verify,
        xattrs: !args.no_xattrs,
        sparse: args.sparse,
        overwrite: match args.overwrite {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Never => Overwrite::Never,
        },
        delete: args.delete,
        // A whole snapshot is cleaned below its backup paths only, never in the folders
        // that merely lead to them (`/home` for a backup of `/home/me`).
        delete_within: if whole && !args.snapshot.contains(':') {
            snap.paths.iter().map(PathBuf::from).collect()
        } else {
            Vec::new()
        },
        dry_run: args.dry_run,
    };
    let listed = args.dry_run || g.verbose > 0;
    let report = |a: &Action<'_>| {
        if !listed || (a.change == Change::Unchanged && g.verbose == 0) {
            return;
        }
        let printed = if g.json {
            print_json(&serde_json::json!({
                "message_type": "action",
                "action": a.change,
                // As `ls --json`: a name that is not UTF-8 is readable in one and exact
                // in the other.
                "path": a.path.to_string_lossy(),
                "path_escaped": escape_path(a.path),
                "kind": a.kind.as_str(),
                "bytes": a.bytes,
            }))
        } else {
            outln!("{}", action_line(a))
        };
        let _ = regardless(printed);
    };
    let damaged_before = repo.known_damaged_packs().len();
    let summary = restore(&repo, snap.tree, &opts, &meter, &report)?;
    let newly_damaged = repo.known_damaged_packs().len() > damaged_before;
    let met = summary.files + summary.other + summary.files_unchanged + summary.kept;
    if !opts.choice.include.is_empty() && opts.choice.paths.is_empty() && met == 0 {
        errln!(
            "warning: no entry of snapshot {} matches the --include patterns given; nothing was restored (`cairn find PATTERN` looks for names)",
            id.short()
        );
    }
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
                "xattrs_refused": {
                    "kind": r.kind,
                    "reason": r.reason,
                    "count": r.count,
                    "first": r.first.to_string_lossy(),
                    "first_escaped": escape_path(&r.first),
                },
            })))?;
        }
    }
    for (path, err) in &summary.errors {
        errln!("error: {}: {err}", path.display());
        if g.json {
            regardless(print_json(&serde_json::json!({
                "message_type": "error",
                "path": path.to_string_lossy(),
                "path_escaped": escape_path(path),
                "error": err,
            })))?;
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
            "files_updated": summary.files_updated,
            "kept": summary.kept,
            "folders_not_restored": summary
                .folders_not_restored
                .iter()
                .map(|p| p.to_string_lossy())
                .collect::<Vec<_>>(),
            "deleted": summary.deleted,
            "dry_run": args.dry_run,
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
            "{} {} files, {} dirs, {} other, {} bytes",
            if args.dry_run {
                "dry run, nothing changed: would restore"
            } else {
                "restored"
            },
            summary.files,
            summary.dirs,
            summary.other,
            summary.bytes
        );
        if summary.files_updated > 0 {
            line += &format!(
                " ({} files updated where they differed)",
                summary.files_updated
            );
        }
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
        if summary.kept > 0 {
            line += &format!(
                "; {} existing entries left as they are (--overwrite {})",
                summary.kept,
                args.overwrite.name()
            );
        }
        for path in &summary.folders_not_restored {
            errln!(
                "warning: {}: something other than a folder stands where the snapshot has a folder; it was left as it is (--overwrite {}), so nothing below it was restored (--overwrite always replaces it)",
                escape_path(path),
                args.overwrite.name()
            );
        }
        if summary.deleted > 0 {
            line += &format!(
                "; {} {} (--delete)",
                if args.dry_run {
                    "would delete"
                } else {
                    "deleted"
                },
                summary.deleted
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
        if newly_damaged {
            errln!(
                "no other copy of that data is in the repository; the damaged packs are now recorded, so the next backup stores their data again where the source still has it, and a restore after it succeeds; README, \"When something is damaged\", says how to mend the rest"
            );
        }
        Ok(EXIT_FATAL)
    }
}
