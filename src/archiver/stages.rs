//! The stages behind the walker, each on its own threads, joined by bounded queues:
//!
//! ```text
//! walker ─FileJob→ file workers ─RawBlob→ sealers ─SealedBlob→ packer ─FinishedPack→ uploaders
//!    ↑                 │ (read, chunk, hash,     (zstd + AES,     (one pack per       (write pack,
//!    └──FileResult─────┘  claim new ids)          per thread)      blob type)          index it)
//! ```
//! Queues are bounded so memory stays bounded whatever the file sizes and counts; the
//! results queue is not, but it never holds more than the jobs in flight.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender};

use crate::blob::BlobSealer;
use crate::cache::IndexCache;
use crate::chunker::{ChunkError, Chunker};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BLOBS_PER_INDEX_FILE, IndexFile, IndexedPack};
use crate::pack::{BlobType, FinishedPack, PackBuilder, SealedBlob};
use crate::repository::Repository;

pub struct FileJob {
    pub dir: u64,
    pub idx: usize,
    pub path: PathBuf,
}

pub enum FileOutcome {
    Done { content: Vec<Id>, size: u64 },
    Failed(String),
}

pub struct FileResult {
    pub dir: u64,
    pub idx: usize,
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

pub struct RawBlob {
    pub kind: BlobType,
    pub id: Id,
    pub data: Vec<u8>,
}

/// Counters shared by all stages.
#[derive(Default)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    pub data_added: AtomicU64,
    pub data_added_packed: AtomicU64,
}

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

/// The first fatal error of any stage; the others stop when they see their queue closed.
#[derive(Default)]
pub struct Failure(Mutex<Option<Error>>);

impl Failure {
    pub fn set(&self, e: Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    pub fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

pub struct FileWorker<'a> {
    pub repo: &'a Repository,
    pub known: &'a Known<'a>,
    pub counters: &'a Counters,
    pub progress: &'a indicatif::ProgressBar,
}

impl FileWorker<'_> {
    pub fn run(&self, jobs: Receiver<FileJob>, results: Sender<FileResult>, raw: Sender<RawBlob>) {
        let chunker = Chunker::new(self.repo.config().chunker, self.repo.key().chunker_seed);
        for job in jobs {
            let outcome = match self.process(&chunker, &job, &raw) {
                Ok((content, size)) => FileOutcome::Done { content, size },
                Err(ChunkError::Io(e)) => FileOutcome::Failed(e.to_string()),
                // The sealers are gone: the backup is failing; stop quietly.
                Err(ChunkError::Sink(_)) => return,
            };
            let r = FileResult {
                dir: job.dir,
                idx: job.idx,
                path: job.path,
                outcome,
            };
            if results.send(r).is_err() {
                return;
            }
        }
    }

    fn process(
        &self,
        chunker: &Chunker,
        job: &FileJob,
        raw: &Sender<RawBlob>,
    ) -> Result<(Vec<Id>, u64), ChunkError> {
        let mut file = File::open(&job.path).map_err(ChunkError::Io)?;
        let mut content = Vec::new();
        let mut size = 0u64;
        let mut emit = |data: Vec<u8>| -> Result<()> {
            let id = self.repo.key().blob_id(&data);
            let len = data.len() as u64;
            size += len;
            content.push(id);
            self.counters.bytes_read.fetch_add(len, Relaxed);
            self.progress.inc(len);
            if self.known.claim(BlobType::Data, &id)? {
                raw.send(RawBlob {
                    kind: BlobType::Data,
                    id,
                    data,
                })
                .map_err(|_| Error::Other("backup pipeline stopped".into()))?;
            }
            Ok(())
        };
        // Read up to `min + 1` bytes: a file that fits in `min` is one chunk and needs no
        // chunker; the bytes already read are chained in front of the rest otherwise.
        let min = chunker.min_size();
        let mut head = Vec::new();
        (&mut file)
            .take(min + 1)
            .read_to_end(&mut head)
            .map_err(ChunkError::Io)?;
        if head.len() as u64 <= min {
            if !head.is_empty() {
                emit(head).map_err(ChunkError::Sink)?;
            }
        } else {
            chunker.chunks(std::io::Cursor::new(head).chain(file), &mut emit)?;
        }
        Ok((content, size))
    }
}

pub fn run_sealer(
    repo: &Repository,
    counters: &Counters,
    raw: Receiver<RawBlob>,
    sealed: Sender<SealedBlob>,
    failure: &Failure,
) {
    let mut sealer = match BlobSealer::new(repo.key(), repo.config().zstd_level) {
        Ok(s) => s,
        Err(e) => return failure.set(e),
    };
    for blob in raw {
        match sealer.seal(blob.kind, blob.id, &blob.data) {
            Ok(sb) => {
                let counter = match blob.kind {
                    BlobType::Data => &counters.data_blobs,
                    BlobType::Tree => &counters.tree_blobs,
                };
                counter.fetch_add(1, Relaxed);
                counters
                    .data_added
                    .fetch_add(blob.data.len() as u64, Relaxed);
                counters
                    .data_added_packed
                    .fetch_add(sb.bytes.len() as u64, Relaxed);
                if sealed.send(sb).is_err() {
                    return;
                }
            }
            Err(e) => return failure.set(e),
        }
    }
}

pub fn run_packer(
    repo: &Repository,
    sealed: Receiver<SealedBlob>,
    packs: Sender<FinishedPack>,
    failure: &Failure,
) {
    let target = repo.config().pack_size as usize;
    // Data and tree blobs go to separate packs, so that reading trees (ls, restore
    // planning, the next backup's parent) never pulls file data along.
    let mut data = PackBuilder::new(target + target / 8);
    let mut trees = PackBuilder::new(0);
    let finish = |b: PackBuilder| -> Result<()> {
        let p = b.finish(repo.key())?;
        packs
            .send(p)
            .map_err(|_| Error::Other("pack upload stopped".into()))
    };
    let result = (|| -> Result<()> {
        for blob in sealed {
            let kind = blob.kind;
            let builder = match kind {
                BlobType::Data => &mut data,
                BlobType::Tree => &mut trees,
            };
            builder.add(blob)?;
            if builder.size() >= target {
                let cap = if kind == BlobType::Data {
                    target + target / 8
                } else {
                    0
                };
                finish(std::mem::replace(builder, PackBuilder::new(cap)))?;
            }
        }
        for b in [data, trees] {
            if !b.is_empty() {
                finish(b)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        failure.set(e);
    }
}

/// Index entries of packs written but not yet in an index file.
pub struct PendingIndex(Mutex<IndexFile>);

impl Default for PendingIndex {
    fn default() -> Self {
        PendingIndex(Mutex::new(IndexFile::new()))
    }
}

impl PendingIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexFile> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the pending entries as one index file (nothing when there are none).
    pub fn flush(&self, repo: &Repository, dry_run: bool) -> Result<()> {
        let index = std::mem::replace(&mut *self.lock(), IndexFile::new());
        if index.packs.is_empty() || dry_run {
            return Ok(());
        }
        repo.save_index(&index)?;
        Ok(())
    }
}

pub fn run_uploader(
    repo: &Repository,
    packs: Receiver<FinishedPack>,
    pending: &PendingIndex,
    dry_run: bool,
    failure: &Failure,
) {
    let result = (|| -> Result<()> {
        for pack in packs {
            if !dry_run {
                repo.upload_pack(&pack)?;
            }
            let full = {
                let mut idx = pending.lock();
                idx.packs.push(IndexedPack {
                    id: pack.id,
                    size: pack.bytes.len() as u64,
                    blobs: pack.entries,
                });
                idx.blob_count() >= BLOBS_PER_INDEX_FILE
            };
            if full {
                pending.flush(repo, dry_run)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        failure.set(e);
    }
}
