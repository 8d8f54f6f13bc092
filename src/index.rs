//! `index/<id>` files: which blob lives in which pack, where. They are the truth about the
//! repository's contents; the local cache is derived from them.

use serde::{Deserialize, Serialize};

use crate::cbor::Versioned;
use crate::id::Id;
use crate::pack::PackEntry;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub v: u64,
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedPack {
    pub id: Id,
    /// Size of the pack object in bytes.
    pub size: u64,
    pub blobs: Vec<PackEntry>,
}

crate::cbor::versioned!(IndexFile, "index", 1);

impl IndexFile {
    pub fn new() -> IndexFile {
        IndexFile {
            v: IndexFile::VERSION,
            packs: Vec::new(),
        }
    }

    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}
