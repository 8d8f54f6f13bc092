//! Which blobs a backup need not store: those the repository holds in sound live packs
//! (the index cache) and those claimed by this run.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::Result;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::repo::cache::IndexCache;

/// Blob ids known to be stored or on their way: the repository's (in the cache) and those
/// claimed during this run.
pub struct Known<'a> {
    cache: &'a IndexCache,
    claimed: Mutex<HashSet<(BlobType, Id)>>,
}

impl<'a> Known<'a> {
    pub fn new(cache: &'a IndexCache) -> Known<'a> {
        Known {
            cache,
            claimed: Mutex::new(HashSet::new()),
        }
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<(BlobType, Id)>> {
        // A panic elsewhere cannot leave the set half-updated: insert is atomic for us.
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if the caller is the first to see this blob and must store it.
    pub fn claim(&self, kind: BlobType, id: &Id) -> Result<bool> {
        if self.claimed().contains(&(kind, *id)) || self.cache.contains(kind, id)? {
            return Ok(false);
        }
        Ok(self.claimed().insert((kind, *id)))
    }

    /// True if the blob is in the repository or stored by this run.
    pub fn has(&self, kind: BlobType, id: &Id) -> Result<bool> {
        Ok(self.claimed().contains(&(kind, *id)) || self.cache.contains(kind, id)?)
    }
}
