//! One module per command.

pub mod backup;
pub mod dump;
pub mod init;
pub mod ls;
pub mod restore;
pub mod snapshots;

use cairn::Result;
use cairn::id::Id;
use cairn::repository::Repository;
use cairn::snapshot::{Snapshot, resolve};

/// Loads the snapshots and picks one by `latest` or id prefix.
pub fn pick_snapshot(repo: &Repository, wanted: &str) -> Result<(Id, Snapshot)> {
    let list = repo.snapshots()?;
    resolve(&list, wanted).cloned()
}

/// Lossy text form of raw name bytes, for display.
pub fn display_bytes(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
