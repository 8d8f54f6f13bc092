//! `index/<id>` files: which blob lives in which pack, where. They are the truth about the
//! repository's contents; the local cache is derived from them.
//!
//! An index file also carries prune's marks: packs that no snapshot needed when a prune
//! looked, kept for a grace period before a later prune deletes them (see `prune`). Marked
//! packs are readable (a restore may still use them) but never deduplicated against.

use serde::{Deserialize, Serialize};

use crate::format::cbor::Versioned;
use crate::format::id::Id;
use crate::format::pack::PackEntry;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub v: u64,
    pub packs: Vec<IndexedPack>,
    /// Packs marked for deletion (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<MarkedPack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: Id,
    /// Size of the pack object in bytes.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

/// A pack that a prune found unneeded. A later prune deletes it once `marked` is older than
/// the grace period and no snapshot needs it; if a snapshot does, the pack is live again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkedPack {
    pub id: Id,
    pub size: u64,
    /// When the mark was made: nanoseconds since the Unix epoch.
    pub marked: i64,
    /// Its blobs, when it was indexed (empty for a pack no index listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<PackEntry>,
}

crate::format::cbor::versioned!(IndexFile, "index", 2, 1);

/// Index files are written every this many blobs (live and marked), so an interrupted
/// backup leaves most of its uploaded packs indexed and pending entries stay bounded.
pub const BLOBS_PER_INDEX_FILE: usize = 50_000;

impl IndexFile {
    pub fn new() -> IndexFile {
        IndexFile {
            v: IndexFile::VERSION,
            packs: Vec::new(),
            delete: Vec::new(),
        }
    }

    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum::<usize>()
            + self.delete.iter().map(|p| p.blobs.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.packs.is_empty() && self.delete.is_empty()
    }
}
