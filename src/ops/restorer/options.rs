//! What a restore is asked to do.

use std::path::{Path, PathBuf};

use super::select::Choice;

/// What a restore does with a file that already stands where the snapshot puts one
/// (restic's `--overwrite`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Read it: identical is kept, different is replaced (or, when big, updated where
    /// its blobs differ).
    #[default]
    Always,
    /// As `Always`, but one of the snapshot's size and mtime counts as identical unread.
    IfChanged,
    /// Replace it only if the snapshot's entry has the later mtime.
    IfNewer,
    /// Leave every existing entry as it is.
    Never,
}

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Which entries to restore (`--include`, `--exclude`).
    pub choice: Choice,
    pub verify: bool,
    /// Restore extended attributes and POSIX ACLs (`--no-xattrs` turns it off).
    pub xattrs: bool,
    /// Leave every aligned block of zeros as a hole (`--sparse`); holes recorded at backup
    /// are made whatever this says.
    pub sparse: bool,
    pub overwrite: Overwrite,
    /// Remove, in every restored folder, what the snapshot does not hold there.
    pub delete: bool,
    /// Absolute snapshot paths at and below which `delete` removes; empty for anywhere
    /// the restore takes whole.
    pub delete_within: Vec<PathBuf>,
    /// Decide and report every action, change nothing.
    pub dry_run: bool,
}

impl RestoreOptions {
    /// Options restoring everything into `target` as the command line does by default.
    pub fn new(target: PathBuf) -> RestoreOptions {
        RestoreOptions {
            target,
            choice: Choice::default(),
            verify: false,
            xattrs: true,
            sparse: false,
            overwrite: Overwrite::Always,
            delete: false,
            delete_within: Vec::new(),
            dry_run: false,
        }
    }

    /// Whether `--delete` may remove entries in the snapshot folder `path` (absolute),
    /// which the restore takes whole.
    pub(super) fn cleans(&self, path: &Path) -> bool {
        self.delete
            && (self.delete_within.is_empty()
                || self.delete_within.iter().any(|w| path.starts_with(w)))
    }
}
