//! Source paths that could not be read, and what the snapshot keeps of each.

use std::path::PathBuf;

/// A source path that could not be read, or not wholly, and what the snapshot holds of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub path: PathBuf,
    pub error: String,
    pub kept: Kept,
}

/// What the snapshot holds of a path that could not be read, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kept {
    /// Nothing: it is left out.
    Nothing,
    /// A folder that could not be listed, or not wholly: it is in the snapshot with the
    /// entries that were listed.
    Folder,
    /// The entry, without its extended attributes.
    WithoutXattrs,
}

impl Kept {
    /// Its name in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kept::Nothing => "nothing",
            Kept::Folder => "folder",
            Kept::WithoutXattrs => "without_xattrs",
        }
    }

    /// What the user is told.
    pub fn describe(self) -> &'static str {
        match self {
            Kept::Nothing => "left out of the snapshot",
            Kept::Folder => {
                "the folder is in the snapshot, without the entries that could not be listed"
            }
            Kept::WithoutXattrs => "in the snapshot without its extended attributes",
        }
    }
}
