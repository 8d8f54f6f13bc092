//! Local copies of tree packs, for remote repositories.
//!
//! Every backup compares against its parent's trees, and `ls`, `restore` and `dump` walk
//! trees before they read any data. On S3 each tree blob read would be a GET; with the
//! tree packs kept here (written through when a backup uploads them, fetched whole on the
//! first miss) an unchanged rerun costs a handful of requests instead of one per folder.
//! Trees are a small share of a repository, so the copies are small too. Data packs are
//! never cached.
//!
//! The copies are the sealed packs as stored, so the cache holds nothing readable. A copy is
//! checked against its name (the BLAKE3 of its bytes) when fetched, and every blob read from
//! it is authenticated as usual; a damaged copy is dropped and read again from the store.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::store::{Backend, Kind, ObjectName};

pub struct TreePackCache {
    dir: PathBuf,
}

impl TreePackCache {
    /// The cache below `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> TreePackCache {
        TreePackCache { dir: dir.into() }
    }

    fn path(&self, pack: &Id) -> PathBuf {
        let hex = pack.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// `length` bytes at `offset` of a cached pack, or `None` when it is not cached (or
    /// its copy is too short, which drops the copy).
    pub fn read_range(&self, pack: &Id, offset: u64, length: u64) -> Option<Vec<u8>> {
        let path = self.path(pack);
        let f = File::open(&path).ok()?;
        let mut buf = vec![0u8; usize::try_from(length).ok()?];
        match f.read_exact_at(&mut buf, offset) {
            Ok(()) => Some(buf),
            Err(_) => {
                self.drop_copy(pack);
                None
            }
        }
    }

    /// Fetches a whole pack from the store, checks it against its name and keeps a copy.
    pub fn fetch(&self, backend: &dyn Backend, pack: &Id) -> Result<Vec<u8>> {
        let name = ObjectName::new(Kind::Pack, pack);
        let bytes = backend.read(&name)?;
        if Id::of_stored(&bytes) != *pack {
            return Err(Error::corrupt(
                name.path(),
                "its content does not match its name",
            ));
        }
        self.store(pack, &bytes);
        Ok(bytes)
    }

    /// Keeps a copy of a pack. Failing to cache is not an error: the store still has it.
    pub fn store(&self, pack: &Id, bytes: &[u8]) {
        if let Err(e) = self.try_store(pack, bytes) {
            tracing::debug!("not caching pack {}: {e}", pack.short());
        }
    }

    fn try_store(&self, pack: &Id, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(pack);
        let dir = path.parent().unwrap_or(&self.dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!(".tmp-{}", hex::encode(suffix)));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Forgets a copy that turned out damaged, saying so.
    pub fn drop_copy(&self, pack: &Id) {
        if self.remove_copy(pack) {
            tracing::warn!("dropped damaged cached copy of pack {}", pack.short());
        }
    }

    /// Removes the copy of a pack that is gone from the store (a prune deleted it);
    /// returns whether there was one.
    pub fn remove_copy(&self, pack: &Id) -> bool {
        match fs::remove_file(self.path(pack)) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!("cannot remove cached pack {}: {e}", pack.short());
                false
            }
        }
    }
}
