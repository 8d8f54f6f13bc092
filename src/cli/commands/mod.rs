//! One module per command.

pub mod backup;
pub mod check;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod unlock;

use std::path::{Path, PathBuf};

use cairn::format::id::Id;
use cairn::format::snapshot::{Snapshot, resolve};
use cairn::format::tree::{FileTime, Node, NodeKind, file_time};
use cairn::ops::archiver::absolute_path;
use cairn::repo::Repository;
use cairn::repo::tree_walk::find_node;
use cairn::{Error, Result};

use crate::cli::escape::unescaped_path;

/// Loads the snapshots and picks one: `latest` (the newest that passes `filter`) or an id
/// prefix (among those that pass), optionally followed by `:PATH`, a folder inside it that
/// then stands as the snapshot's root (restic's `SNAPSHOT:PATH`).
pub fn pick_snapshot(
    repo: &Repository,
    wanted: &str,
    filter: &SnapshotFilter,
) -> Result<(Id, Snapshot)> {
    let (which, folder) = match wanted.split_once(':') {
        Some((which, folder)) => (which, Some(folder)),
        None => (wanted, None),
    };
    let all = repo.snapshots()?;
    let list = filter.select(&all)?;
    if list.is_empty() && !all.is_empty() {
        return Err(Error::Invalid(
            "no snapshot passes the --host, --tag and --path given (`cairn snapshots` with the same options lists what does)".into(),
        ));
    }
    let (id, mut snap) = resolve(&list, which)?.clone();
    if let Some(folder) = folder {
        if folder.is_empty() {
            return Err(Error::Invalid(format!(
                "{wanted:?}: give a folder after the colon, as in {which}:/home/me"
            )));
        }
        let found = find_path(repo, snap.tree, Path::new(folder));
        let (path, node) = explain_missing(found, wanted, filter, &id, &snap)?;
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(tree)) => snap.tree = tree,
            _ => {
                return Err(Error::Invalid(format!(
                    "{wanted:?}: {} is a {} in snapshot {}, not a folder",
                    path.display(),
                    node.kind.as_str(),
                    id.short()
                )));
            }
        }
    }
    Ok((id, snap))
}

/// `result`, where a path is missing from a snapshot that a bare `latest` picked, with
/// the snapshot named and the way to the right one: the newest snapshot of all may be of
/// other paths or another host.
pub fn explain_missing<T>(
    result: Result<T>,
    wanted: &str,
    filter: &SnapshotFilter,
    id: &Id,
    snap: &Snapshot,
) -> Result<T> {
    let bare_latest = wanted.split(':').next() == Some("latest") && filter.is_empty();
    match result {
        Err(Error::PathNotInSnapshot(path)) if bare_latest => Err(Error::Invalid(format!(
            "{} is not in snapshot {} (the newest of all: host {}, paths {}); `latest` looks at every snapshot: add --path (or --host, --tag) to take the newest that holds it, or name a snapshot from `cairn snapshots`",
            path.display(),
            id.short(),
            snap.hostname,
            snap.paths.join(", ")
        ))),
        other => other,
    }
}

/// The snapshot path a command-line argument names: made absolute as backup makes its
/// paths (a relative one is taken from the working directory). It is read as escaped
/// text (the form `ls` prints names in) if that names an entry, so that whatever `ls`
/// printed finds its entry; otherwise as typed.
pub fn snapshot_path(repo: &Repository, tree: Id, arg: &Path) -> Result<PathBuf> {
    let literal = cairn::ops::archiver::absolute_path(arg)?;
    Ok(match unescaped_path(&literal) {
        Some(unescaped) if find_node(repo, tree, &unescaped).is_ok() => unescaped,
        _ => literal,
    })
}

/// The entry a command-line argument names (see `snapshot_path`), with its path.
pub fn find_path(repo: &Repository, tree: Id, arg: &Path) -> Result<(PathBuf, Node)> {
    let path = snapshot_path(repo, tree, arg)?;
    let node = find_node(repo, tree, &path)?;
    Ok((path, node))
}

/// From now on Ctrl-C and SIGTERM only ask the work to stop (see `cairn::interrupt`): for
/// commands that must clean up (a restore's unfinished files, a held lock).
pub fn install_interrupt() -> Result<()> {
    cairn::interrupt::install().map_err(|e| Error::System(format!("cannot handle Ctrl-C: {e}")))
}

/// Lossy text form of raw name bytes, for display.
pub fn display_bytes(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Which snapshots a command looks at: `--host`, `--tag`, `--path`.
#[derive(clap::Args)]
pub struct SnapshotFilter {
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: any of them)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: any of them); a relative path
    /// is taken from the working directory, as backup takes it
    #[arg(long = "path")]
    paths: Vec<PathBuf>,
}

impl SnapshotFilter {
    /// Whether no filter was given.
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.tags.is_empty() && self.paths.is_empty()
    }

    /// The snapshots that pass, in their order. `--path` is compared after the same
    /// normalisation backup applies to the paths it records.
    pub fn select(&self, snapshots: &[(Id, Snapshot)]) -> Result<Vec<(Id, Snapshot)>> {
        let paths = self
            .paths
            .iter()
            .map(|p| absolute_path(p))
            .collect::<Result<Vec<_>>>()?;
        let wanted = |s: &Snapshot| {
            paths.is_empty()
                || s.paths
                    .iter()
                    .any(|p| paths.iter().any(|w| Path::new(p) == w))
        };
        Ok(snapshots
            .iter()
            .filter(|(_, s)| {
                self.host.as_ref().is_none_or(|h| &s.hostname == h)
                    && (self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t)))
                    && wanted(s)
            })
            .cloned()
            .collect())
    }
}

/// `YYYY-MM-DD HH:MM:SS` (or `YYYY-MM-DD`) in local time, as nanoseconds since the epoch.
pub fn parse_time(option: &str, s: &str) -> Result<FileTime> {
    use chrono::format::ParseErrorKind::{Impossible, OutOfRange};
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let with_time = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S");
    let date_only = NaiveDate::parse_from_str(s, "%Y-%m-%d");
    let naive = match (with_time, date_only) {
        (Ok(t), _) => t,
        (_, Ok(d)) => d.and_time(chrono::NaiveTime::MIN),
        // In the right format, but no such day or time (February 30th, 25 o'clock).
        (Err(e), _) | (_, Err(e)) if matches!(e.kind(), OutOfRange | Impossible) => {
            return Err(Error::Usage(format!(
                "{option} {s:?} is not a valid date and time: check the day of the month and the hours, minutes and seconds"
            )));
        }
        _ => {
            return Err(Error::Usage(format!(
                "{option} {s:?}: write it as \"YYYY-MM-DD HH:MM:SS\" (local time)"
            )));
        }
    };
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| file_time(t.timestamp(), i64::from(t.timestamp_subsec_nanos())))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{option} {s:?} does not exist in the local time zone"
            ))
        })
}
