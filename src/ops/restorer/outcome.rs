//! What a restore did (or, in a dry run, would do): each action as it is decided, and
//! the summary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::archived;
use crate::format::tree::NodeKind;
use crate::ops::fsmeta::XattrRefusal;

/// What happens (or, in a dry run, would happen) to one path of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Nothing stood there.
    Create,
    /// Something else stood there and is replaced whole.
    Replace,
    /// A file that differs is rewritten only where its blobs differ.
    Update,
    /// Already the snapshot's content; its metadata is set.
    Unchanged,
    /// Left as it is, as `--overwrite` says.
    Keep,
    /// Not in the snapshot: removed by `--delete`.
    Delete,
}

/// What an action is done to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// An entry of the snapshot, of its type.
    Entry(NodeKind),
    /// A further name of a file restored already: a hard link to it.
    HardLink,
    /// Something in the target that is no file, folder or symlink (a FIFO, socket or
    /// device node), removed by `--delete`.
    Other,
}

impl ActionKind {
    /// Its name in output: `file`, `dir`, `symlink`, ..., `hardlink`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Entry(kind) => kind.as_str(),
            ActionKind::HardLink => "hardlink",
            ActionKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One path and what the restore does with it.
#[derive(Debug)]
pub struct Action<'a> {
    pub change: Change,
    /// The full path in the target.
    pub path: &'a Path,
    pub kind: ActionKind,
    /// Bytes to fetch for it.
    pub bytes: u64,
}

/// Told every action as it is decided (from the placing thread).
pub type Report<'a> = dyn Fn(&Action<'_>) + Sync + 'a;

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, FIFOs and device nodes.
    pub other: u64,
    pub bytes: u64,
    pub verified_files: u64,
    /// Files already at the target with the snapshot's content: kept.
    pub files_unchanged: u64,
    /// Of `files`: those rewritten only where they differed.
    pub files_updated: u64,
    /// Entries left as they stood because `--overwrite` said so.
    pub kept: u64,
    /// Of those, entries other than folders standing where the snapshot has a folder:
    /// nothing below them was restored.
    pub folders_not_restored: Vec<PathBuf>,
    /// Entries removed by `--delete` (a folder counts once, with all in it).
    pub deleted: u64,
    /// Sockets, which are not restored (the program that listens on one makes it).
    pub skipped: u64,
    /// Files restored as hard links to another name of theirs (or found linked already).
    pub hard_links: u64,
    /// Kinds of extended attributes the target refused.
    pub xattrs_refused: Vec<XattrRefusal>,
    #[serde(skip)]
    pub errors: Vec<(PathBuf, String)>,
    /// Files not restored because a pack they need is archived (listed in
    /// `archived_packs`): the restore is to be run again once those are retrieved.
    pub files_waiting: u64,
    #[serde(skip)]
    pub archived_packs: Vec<archived::ArchivedPack>,
}

/// The summary, shared by the placing thread and the writers.
pub(super) struct Tally(pub(super) Mutex<RestoreSummary>);

impl Tally {
    pub(super) fn count(&self, f: impl FnOnce(&mut RestoreSummary)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Messages of errors on one path often start with it; the path is said once.
    pub(super) fn error(&self, path: &Path, e: String) {
        let prefix = format!("{}: ", path.display());
        let message = e.strip_prefix(&prefix).unwrap_or(&e).to_string();
        self.count(|s| s.errors.push((path.to_path_buf(), message)));
    }
}
