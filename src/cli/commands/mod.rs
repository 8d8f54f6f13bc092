//! One module per command.

pub mod backup;
pub mod check;
pub mod diff;
pub mod dump;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod prune;
pub mod restore;
pub mod snapshots;
pub mod stats;
pub mod unlock;

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

/// Which snapshots a command looks at: `--host`, `--tag`, `--path`.
#[derive(clap::Args)]
pub struct SnapshotFilter {
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: any of them)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: any of them)
    #[arg(long = "path")]
    paths: Vec<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.hostname == h)
            && (self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t)))
            && (self.paths.is_empty() || s.paths.iter().any(|p| self.paths.contains(p)))
    }
}
