//! Putting a node's metadata on what a restore made or kept.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::Result;
use crate::format::tree::Node;
use crate::ops::fsmeta::{
    XattrRefusals, apply_file_metadata, apply_file_xattrs, apply_metadata_at, apply_xattrs_at,
};

/// Puts a node's metadata on what the restore made or kept: owner, mode and times, then
/// its extended attributes unless told not to.
pub(super) struct Meta {
    pub(super) xattrs: bool,
    pub(super) refused: XattrRefusals,
}

impl Meta {
    pub(super) fn file(&self, file: &File, path: &Path, node: &Node) -> Result<()> {
        apply_file_metadata(file, path, node)?;
        if self.xattrs {
            apply_file_xattrs(file, path, node, &self.refused);
        }
        Ok(())
    }

    pub(super) fn at(&self, dir: &OwnedFd, name: &OsStr, path: &Path, node: &Node) -> Result<()> {
        apply_metadata_at(dir, name, path, node)?;
        if self.xattrs {
            apply_xattrs_at(dir, name, path, node, &self.refused);
        }
        Ok(())
    }
}
