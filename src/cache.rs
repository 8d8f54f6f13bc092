//! The local index cache: a sled database mapping (blob type, blob id) to its place in a pack.
//!
//! It is only a cache. Each open compares it with the repository: the repository id must
//! match, and the set of index files it was built from must still all exist. A cache that
//! fails either test is cleared and rebuilt from the index files; one that cannot be opened
//! (damaged, or held by another cairn process) is replaced by a temporary one.

use std::collections::HashSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::IndexFile;
use crate::pack::{BlobType, Compression, PackEntry};

/// Where one blob is: its pack and its entry in that pack's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub entry: PackEntry,
}

/// Whether a cached location is in a live pack or only in one a prune marked for deletion.
const LIVE: u8 = 0;
const MARKED: u8 = 1;

/// Bumped whenever the cache's own encoding changes; a mismatch rebuilds it.
const CACHE_FORMAT: &[u8] = b"cairn-cache-2";
const LOCATION_LEN: usize = 32 + 4 + 4 + 4 + 1 + 1;
/// sled page cache. Lookups are point reads of 33-byte keys; the OS page cache holds the
/// rest, so a small in-process cache keeps memory flat as the repository grows.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub struct IndexCache {
    db: sled::Db,
    blobs: sled::Tree,
    indexes: sled::Tree,
}

/// Why a cache folder could not be opened.
enum OpenError {
    /// Another process holds it.
    Busy,
    Other(Error),
}

fn sled_err(e: sled::Error) -> Error {
    Error::Other(format!("index cache: {e}"))
}

fn key(kind: BlobType, id: &Id) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = kind as u8;
    k[1..].copy_from_slice(&id.0);
    k
}

fn encode_location(pack: &Id, e: &PackEntry, state: u8) -> [u8; LOCATION_LEN] {
    let mut v = [0u8; LOCATION_LEN];
    v[45] = state;
    v[..32].copy_from_slice(&pack.0);
    v[32..36].copy_from_slice(&e.offset().to_le_bytes());
    v[36..40].copy_from_slice(&e.length().to_le_bytes());
    v[40..44].copy_from_slice(&e.raw_length().to_le_bytes());
    v[44] = e.compression() as u8;
    v
}

fn decode_location(kind: BlobType, id: Id, v: &[u8]) -> Option<BlobLocation> {
    if v.len() != LOCATION_LEN {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let pack = Id(v[..32].try_into().expect("32 bytes"));
    let compression = Compression::try_from(v[44]).ok()?;
    Some(BlobLocation {
        pack,
        entry: PackEntry(kind, id, u32_at(32), u32_at(36), u32_at(40), compression),
    })
}

impl IndexCache {
    /// Opens (or creates) the cache in `dir`. Falls back to a temporary cache when the
    /// directory's cache cannot be used.
    pub fn open(dir: Option<&Path>) -> Result<IndexCache> {
        if let Some(dir) = dir {
            match Self::open_at(dir) {
                Ok(c) => return Ok(c),
                Err(OpenError::Busy) => {
                    // Another cairn process works on the same repository. Its cache is
                    // fine; this run builds a private one from the index files.
                    tracing::info!(
                        "index cache {} is in use by another cairn process; using a temporary one",
                        dir.display()
                    );
                }
                Err(OpenError::Other(first)) => {
                    // A damaged cache is thrown away and built anew.
                    tracing::warn!(
                        "index cache {} unusable ({first}); rebuilding it",
                        dir.display()
                    );
                    if std::fs::remove_dir_all(dir).is_ok()
                        && let Ok(c) = Self::open_at(dir)
                    {
                        return Ok(c);
                    }
                    tracing::warn!("using a temporary index cache for this run");
                }
            }
        }
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(sled_err)?;
        Self::from_db(db)
    }

    fn open_at(dir: &Path) -> Result<IndexCache, OpenError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| OpenError::Other(Error::io(dir, e)))?;
        let db = sled::Config::new()
            .path(dir.join("index.sled"))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                // sled's own wording for a database locked by another process.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    OpenError::Busy
                }
                other => OpenError::Other(sled_err(other)),
            })?;
        Self::from_db(db).map_err(OpenError::Other)
    }

    fn from_db(db: sled::Db) -> Result<IndexCache> {
        let blobs = db.open_tree("blobs").map_err(sled_err)?;
        let indexes = db.open_tree("indexes").map_err(sled_err)?;
        Ok(IndexCache { db, blobs, indexes })
    }

    fn clear(&self) -> Result<()> {
        self.blobs.clear().map_err(sled_err)?;
        self.indexes.clear().map_err(sled_err)?;
        Ok(())
    }

    /// Brings the cache in line with the repository's index files. `listed` is the names
    /// of all index files; `load` reads one.
    pub fn sync(
        &self,
        repo_id: &Id,
        listed: &[Id],
        load: impl Fn(&Id) -> Result<IndexFile> + Sync,
    ) -> Result<()> {
        let owner = self.db.get(b"repository").map_err(sled_err)?;
        let format = self.db.get(b"format").map_err(sled_err)?;
        if owner.as_deref() != Some(&repo_id.0[..]) || format.as_deref() != Some(CACHE_FORMAT) {
            self.clear()?;
            self.db
                .insert(b"repository", &repo_id.0[..])
                .map_err(sled_err)?;
            self.db.insert(b"format", CACHE_FORMAT).map_err(sled_err)?;
        }
        let listed_set: HashSet<Id> = listed.iter().copied().collect();
        let mut cached = HashSet::new();
        for k in self.indexes.iter().keys() {
            let k = k.map_err(sled_err)?;
            match <[u8; 32]>::try_from(&k[..]) {
                Ok(a) => cached.insert(Id(a)),
                Err(_) => false,
            };
        }
        if !cached.is_subset(&listed_set) {
            // An index file it was built from is gone (pruned or replaced): entries may
            // point at packs that no longer exist. Start over.
            tracing::info!("index cache is stale; rebuilding");
            self.clear()?;
            cached.clear();
        }
        let missing: Vec<Id> = listed
            .iter()
            .filter(|id| !cached.contains(id))
            .copied()
            .collect();
        // Index files are decrypted on both cores; sled takes the inserts from one.
        let (tx, rx) = crossbeam_channel::bounded::<(Id, Result<IndexFile>)>(4);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..crate::threads() {
                let tx = tx.clone();
                let (next, missing, load) = (&next, &missing, &load);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(id) = missing.get(i) else { break };
                        if tx.send((*id, load(id))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (id, index) in rx {
                match index {
                    Ok(index) => self.add_index(&id, &index)?,
                    // A damaged index file must not stop restores of what the others
                    // list; it stays out of the cache, so the next run tries it again.
                    Err(e @ Error::Corrupt(..)) => {
                        tracing::warn!("index/{id} left out: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        self.db.flush().map_err(sled_err)?;
        Ok(())
    }

    /// Records the blobs of an index file that is now in the repository. A blob in a live
    /// pack replaces one known only from a marked pack, never the other way round.
    pub fn add_index(&self, id: &Id, index: &IndexFile) -> Result<()> {
        // One insert at a time: a sled batch of tens of thousands of random keys clones
        // nodes it cannot free until the batch ends (measured: 150 MB for 42k entries).
        // The index file is the truth, so a crash half-way only leaves entries that the
        // next sync finds again (the index id is recorded last).
        for pack in &index.packs {
            for e in &pack.blobs {
                self.blobs
                    .insert(
                        key(e.kind(), &e.id()),
                        &encode_location(&pack.id, e, LIVE)[..],
                    )
                    .map_err(sled_err)?;
            }
        }
        for pack in &index.delete {
            for e in &pack.blobs {
                let k = key(e.kind(), &e.id());
                if !self.blobs.contains_key(k).map_err(sled_err)? {
                    self.blobs
                        .insert(k, &encode_location(&pack.id, e, MARKED)[..])
                        .map_err(sled_err)?;
                }
            }
        }
        self.indexes.insert(id.0, &[][..]).map_err(sled_err)?;
        Ok(())
    }

    /// Where a blob can be read from: a live pack, or failing that a pack marked for
    /// deletion that still exists.
    pub fn get(&self, kind: BlobType, id: &Id) -> Result<Option<BlobLocation>> {
        let v = self.blobs.get(key(kind, id)).map_err(sled_err)?;
        Ok(v.and_then(|v| decode_location(kind, *id, &v)))
    }

    /// Whether a blob is in a live pack: only those may be deduplicated against, because a
    /// marked pack may be deleted before the snapshot that would use it is written.
    pub fn contains(&self, kind: BlobType, id: &Id) -> Result<bool> {
        let v = self.blobs.get(key(kind, id)).map_err(sled_err)?;
        Ok(v.is_some_and(|v| v.len() == LOCATION_LEN && v[45] == LIVE))
    }

    /// Calls `each` with every cached blob's location (live or marked pack), in key order.
    /// Reads from disk as it goes, so memory stays flat.
    pub fn for_each(&self, each: &mut dyn FnMut(&BlobLocation) -> Result<()>) -> Result<()> {
        for kv in self.blobs.iter() {
            let (k, v) = kv.map_err(sled_err)?;
            let Some((&kind, id)) = k.split_first() else {
                continue;
            };
            let (Ok(kind), Ok(id)) = (BlobType::try_from(kind), <[u8; 32]>::try_from(id)) else {
                continue;
            };
            if let Some(loc) = decode_location(kind, Id(id), &v) {
                each(&loc)?;
            }
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(sled_err)
    }
}
