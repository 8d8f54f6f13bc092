//! What a walk of the source leaves out: the user's excludes, and cairn's own folders.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::exclude::Excludes;

/// Why the walk leaves an entry out, if it does.
#[derive(PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Excluded,
    /// A folder cairn itself uses.
    Own,
}

/// What a walk leaves out: the user's excludes, and cairn's own folders wherever they
/// appear, known by device and inode so that any spelling of their path matches.
pub struct LeaveOut<'a> {
    excludes: &'a Excludes,
    own_dirs: HashSet<(u64, u64)>,
}

impl<'a> LeaveOut<'a> {
    /// Folders that do not exist (yet) cannot be met, so they are not looked for.
    pub fn new(excludes: &'a Excludes, own_dirs: &[PathBuf]) -> LeaveOut<'a> {
        let own_dirs = own_dirs
            .iter()
            .filter_map(|d| std::fs::metadata(d).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        LeaveOut { excludes, own_dirs }
    }

    pub(super) fn is_own(&self, meta: &std::fs::Metadata) -> bool {
        meta.is_dir() && self.own_dirs.contains(&(meta.dev(), meta.ino()))
    }

    /// The verdict on an entry met inside a backup path.
    pub(super) fn judge(&self, path: &Path, meta: &std::fs::Metadata) -> Verdict {
        if self.is_own(meta) {
            Verdict::Own
        } else if self.excludes.leaves_out(path, meta) {
            Verdict::Excluded
        } else {
            Verdict::Keep
        }
    }
}
