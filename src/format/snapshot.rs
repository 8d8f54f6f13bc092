//! `snapshots/<id>`: one backup run. Immutable once written; its id is the hash of its bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::{Id, Prefix, by_prefix};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored bytes of new blobs (compressed and sealed).
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Files that could not be read and are missing from the snapshot.
    pub files_failed: u64,
    /// Nanoseconds since the Unix epoch.
    pub backup_start: i64,
    pub backup_end: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u64,
    /// Nanoseconds since the Unix epoch (UTC).
    pub time: i64,
    pub tree: Id,
    /// Absolute paths given to the backup (lossy UTF-8 for display and matching).
    pub paths: Vec<String>,
    pub hostname: String,
    pub username: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The cairn version that wrote it.
    pub program: String,
}

crate::format::cbor::versioned!(Snapshot, "snapshot", 1);

impl Snapshot {
    pub fn local_time(&self) -> chrono::DateTime<chrono::Local> {
        chrono::DateTime::from_timestamp_nanos(self.time).with_timezone(&chrono::Local)
    }
}

/// Picks one snapshot by `latest` or a unique prefix of its id. `list` is sorted by time.
pub fn resolve<'a>(list: &'a [(Id, Snapshot)], wanted: &str) -> Result<&'a (Id, Snapshot)> {
    if wanted == "latest" {
        return list
            .iter()
            .max_by_key(|(_, s)| s.time)
            .ok_or_else(|| Error::Invalid("the repository has no snapshots yet".into()));
    }
    match by_prefix(list, |(id, _)| id, wanted) {
        Prefix::One(one) => Ok(one),
        Prefix::NotHex => Err(Error::Invalid(format!(
            "{wanted:?} is not a snapshot id: give `latest` or hex digits of an id (see `cairn snapshots`)"
        ))),
        Prefix::NotFound => Err(Error::Invalid(format!(
            "no snapshot with id {wanted} (see `cairn snapshots`)"
        ))),
        Prefix::Ambiguous => Err(Error::Invalid(format!(
            "snapshot id prefix {wanted} is ambiguous; give more digits"
        ))),
    }
}
