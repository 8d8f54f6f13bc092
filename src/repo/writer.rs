//! Writing packs and the index files that list them: the one way backup, prune and the
//! adoption of unindexed packs fill packs and gather their entries into index files.
//!
//! A pack holds one blob type, so that reading trees never pulls file data along, and is
//! finished once it reaches the repository's pack size (its last blob may take it past).
//! Index files are cut at [`BLOBS_PER_INDEX_FILE`] blobs and, for a backup, also by the
//! bytes and age of what they list (see [`FlushPolicy`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::format::id::Id;
use crate::format::index::{BLOBS_PER_INDEX_FILE, IndexFile, IndexedPack, MarkedPack};
use crate::format::pack::{BlobType, Compression, FinishedPack, PackBuilder};
use crate::repo::Repository;

/// Fills packs of one blob type to the repository's pack size.
pub struct PackFiller {
    kind: BlobType,
    target: usize,
    builder: PackBuilder,
    /// Memory of a finished pack, for the next one: a data pack is many MiB, and fresh
    /// memory costs a page fault per 4 KiB.
    spare: Option<Vec<u8>>,
}

impl PackFiller {
    /// A filler for `kind` blobs, finishing packs at `target` bytes.
    pub fn new(kind: BlobType, target: usize) -> PackFiller {
        // The first pack grows as it needs: a small backup never takes a pack's memory.
        PackFiller {
            kind,
            target,
            builder: PackBuilder::new(0),
            spare: None,
        }
    }

    /// For the repository's pack size.
    pub fn for_repo(repo: &Repository, kind: BlobType) -> PackFiller {
        PackFiller::new(kind, repo.config().pack_size as usize)
    }

    fn fresh(&mut self) -> PackBuilder {
        match (self.kind, self.spare.take()) {
            (BlobType::Data, Some(buf)) => PackBuilder::reusing(buf),
            // A blob may end a pack past its target; an eighth more room avoids most
            // reallocations.
            (BlobType::Data, None) => PackBuilder::new(self.target + self.target / 8),
            // Tree packs are small and grow as they need.
            (BlobType::Tree, _) => PackBuilder::new(0),
        }
    }

    /// Whether memory given to [`PackFiller::recycle`] now would be used.
    pub fn wants_memory(&self) -> bool {
        self.kind == BlobType::Data && self.spare.is_none()
    }

    /// Keeps a finished pack's memory for the next pack.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.wants_memory() && buf.capacity() >= self.target {
            self.spare = Some(buf);
        }
    }

    /// Adds a sealed blob; returns the pack it filled, to be finished and written, once it
    /// reaches the pack size.
    pub fn add(
        &mut self,
        id: Id,
        raw_length: u32,
        compression: Compression,
        sealed: &[u8],
    ) -> Result<Option<PackBuilder>> {
        self.builder
            .add_sealed(self.kind, id, raw_length, compression, sealed)?;
        if self.builder.size() < self.target {
            return Ok(None);
        }
        let next = self.fresh();
        Ok(Some(std::mem::replace(&mut self.builder, next)))
    }

    /// The pack being filled, if it holds any blob; the filler starts an empty one.
    pub fn take(&mut self) -> Option<PackBuilder> {
        if self.builder.is_empty() {
            return None;
        }
        Some(std::mem::replace(&mut self.builder, PackBuilder::new(0)))
    }
}

/// Writes a finished pack; returns its index entry and its memory, for reuse.
pub fn write_pack(repo: &Repository, pack: FinishedPack) -> Result<(IndexedPack, Vec<u8>)> {
    repo.upload_pack(&pack)?;
    Ok(split(pack))
}

/// A finished pack's index entry, and its memory.
pub fn split(pack: FinishedPack) -> (IndexedPack, Vec<u8>) {
    let FinishedPack { id, bytes, entries } = pack;
    let entry = IndexedPack {
        id,
        size: bytes.len() as u64,
        blobs: entries,
    };
    (entry, bytes)
}

/// When the entries gathered so far are written as an index file, besides when the
/// writer is flushed. A pack that no index file lists yet is what a crash leaves: the next
/// backup adopts it with one ranged read, and cannot when it went to a cold storage class.
/// So a backup writes entries once they cover this much time or data, keeping what a crash
/// leaves small at one index file per `max_pack_bytes` of upload.
#[derive(Clone, Copy, Debug)]
pub struct FlushPolicy {
    /// Blobs (live and marked) per index file: bounds the memory of pending entries and
    /// the file's size.
    pub max_blobs: usize,
    /// Bytes of live packs listed.
    pub max_pack_bytes: u64,
    /// Age of the oldest pending entry.
    pub max_age: Duration,
}

impl FlushPolicy {
    /// A backup's: by blobs, by a GiB of packs, or after five minutes.
    pub fn backup() -> FlushPolicy {
        FlushPolicy {
            max_blobs: BLOBS_PER_INDEX_FILE,
            max_pack_bytes: 1 << 30,
            max_age: Duration::from_secs(5 * 60),
        }
    }

    /// By blobs only: for index files written at once (prune, adopting packs).
    pub fn by_blobs() -> FlushPolicy {
        FlushPolicy {
            max_blobs: BLOBS_PER_INDEX_FILE,
            max_pack_bytes: u64::MAX,
            max_age: Duration::MAX,
        }
    }
}

/// Gathers index entries, live and marked, and writes them as index files of bounded
/// size. Shared by the threads that write packs: a file is written outside the lock, so
/// the others go on gathering meanwhile.
pub struct IndexWriter<'a> {
    repo: &'a Repository,
    policy: FlushPolicy,
    pending: Mutex<Pending>,
    written: Mutex<Vec<Id>>,
}

struct Pending {
    index: IndexFile,
    pack_bytes: u64,
    /// When the oldest entry came.
    since: Option<Instant>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            index: IndexFile::new(),
            pack_bytes: 0,
            since: None,
        }
    }

    fn due(&self, policy: &FlushPolicy, now: Instant) -> bool {
        self.index.blob_count() >= policy.max_blobs
            || self.pack_bytes >= policy.max_pack_bytes
            || self
                .since
                .is_some_and(|t| now.saturating_duration_since(t) >= policy.max_age)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the entries half-updated in a way that matters: the
    // command fails on that panic anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> IndexWriter<'a> {
    pub fn new(repo: &'a Repository, policy: FlushPolicy) -> IndexWriter<'a> {
        IndexWriter {
            repo,
            policy,
            pending: Mutex::new(Pending::new()),
            written: Mutex::new(Vec::new()),
        }
    }

    /// Adds the entry of a live pack.
    pub fn live(&self, pack: IndexedPack) -> Result<()> {
        self.add(|p| {
            p.pack_bytes += pack.size;
            p.index.packs.push(pack);
        })
    }

    /// Adds the entry of a pack marked for deletion.
    pub fn marked(&self, pack: MarkedPack) -> Result<()> {
        self.add(|p| p.index.delete.push(pack))
    }

    fn add(&self, put: impl FnOnce(&mut Pending)) -> Result<()> {
        let due = {
            let now = Instant::now();
            let mut p = lock(&self.pending);
            p.since.get_or_insert(now);
            put(&mut p);
            p.due(&self.policy, now)
        };
        if due { self.flush() } else { Ok(()) }
    }

    /// Writes the gathered entries as one index file (nothing when there are none).
    pub fn flush(&self) -> Result<()> {
        let pending = std::mem::replace(&mut *lock(&self.pending), Pending::new());
        if pending.index.is_empty() {
            return Ok(());
        }
        let id = self.repo.save_index(&pending.index)?;
        lock(&self.written).push(id);
        Ok(())
    }

    /// Writes what is gathered and returns the ids of every index file written.
    pub fn finish(self) -> Result<Vec<Id>> {
        self.flush()?;
        Ok(self.written.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{Compression, PackEntry};

    fn pending_with(blobs: usize, pack_bytes: u64, age: Duration, now: Instant) -> Pending {
        let mut p = Pending::new();
        p.index.packs.push(IndexedPack {
            id: Id::default(),
            size: pack_bytes,
            blobs: vec![
                PackEntry {
                    kind: BlobType::Data,
                    id: Id::default(),
                    offset: 0,
                    length: 1,
                    raw_length: 1,
                    compression: Compression::None
                };
                blobs
            ],
        });
        p.pack_bytes = pack_bytes;
        p.since = now.checked_sub(age);
        p
    }

    #[test]
    fn pending_entries_are_due_by_blobs_bytes_or_age() {
        let policy = FlushPolicy {
            max_blobs: 100,
            max_pack_bytes: 1000,
            max_age: Duration::from_secs(60),
        };
        let now = Instant::now();
        let young = Duration::from_secs(1);
        assert!(!pending_with(99, 999, young, now).due(&policy, now));
        assert!(pending_with(100, 1, young, now).due(&policy, now));
        assert!(pending_with(1, 1000, young, now).due(&policy, now));
        assert!(pending_with(1, 1, Duration::from_secs(60), now).due(&policy, now));
        assert!(!Pending::new().due(&policy, now), "nothing pending");
    }

    #[test]
    fn a_filler_hands_over_a_pack_once_it_reaches_its_target() {
        let mut filler = PackFiller::new(BlobType::Data, 100);
        let blob = [7u8; 40];
        let id = |i: u8| Id::of_stored(&[i]);
        assert!(
            filler
                .add(id(1), 40, Compression::None, &blob)
                .unwrap()
                .is_none()
        );
        assert!(
            filler
                .add(id(2), 40, Compression::None, &blob)
                .unwrap()
                .is_none()
        );
        // The third blob takes the pack past its target: it is handed over whole.
        let full = filler.add(id(3), 40, Compression::None, &blob).unwrap();
        assert_eq!(full.map(|b| b.size()), Some(120));
        assert!(filler.take().is_none(), "the next pack starts empty");
        filler.add(id(4), 40, Compression::None, &blob).unwrap();
        assert_eq!(filler.take().map(|b| b.size()), Some(40));
        assert!(filler.take().is_none());
    }

    #[test]
    fn a_filler_reuses_memory_only_for_data_and_only_once() {
        let mut data = PackFiller::new(BlobType::Data, 100);
        assert!(data.wants_memory());
        data.recycle(Vec::with_capacity(10));
        assert!(data.wants_memory(), "too small to hold a pack");
        data.recycle(Vec::with_capacity(200));
        assert!(!data.wants_memory());
        let trees = PackFiller::new(BlobType::Tree, 100);
        assert!(!trees.wants_memory());
    }
}
