//! The file workers behind the walker, and the stages after them, each on its own threads:
//!
//! ```text
//! walker ─FileJob→ file workers ───────────────────→ Packer ─FinishedPack→ uploaders
//!    ↑                 │ (read, chunk, hash, claim,   (one open pack      (write pack,
//!    └──FileResult─────┘  compress, encrypt)           per blob type)      index it)
//! ```
//! A worker takes a file from reading to sealed bytes itself, so chunk data never crosses
//! a thread and every buffer on the way (read buffer, sealed bytes, pack) is reused: a
//! profile of the earlier design, with a queue and a fresh `Vec` per stage, spent a quarter
//! of its CPU time in page faults and copies. The walker seals its trees the same way.
//! Queues are bounded so memory stays bounded whatever the file sizes and counts; the
//! results queue is not, but it never holds more than the jobs in flight.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use crossbeam_channel::{Receiver, Sender};

use crate::error::Result;
use crate::format::chunker::{ChunkError, Chunker};
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::Hole;
use crate::ops::long_path::reachable;
use crate::progress::Progress;

use super::known::Known;
use super::packer::{BlobStore, Counters, Failure, Packer};
use super::sparse::{self, SparseReader};

pub struct FileJob {
    pub dir: u64,
    pub idx: usize,
    pub path: PathBuf,
    /// A stream to read instead of the file at `path` (`backup --stdin`).
    pub stream: Option<Box<dyn Read + Send>>,
}

pub enum FileOutcome {
    Done {
        content: Vec<Id>,
        holes: Vec<Hole>,
        size: u64,
        /// The file's size, mtime or ctime changed while it was read: what was read may
        /// mix old and new content.
        changed: bool,
    },
    Failed(String),
}

pub struct FileResult {
    pub dir: u64,
    pub idx: usize,
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

pub struct FileWorker<'a> {
    pub known: &'a Known<'a>,
    pub counters: &'a Counters,
    pub packer: &'a Packer<'a>,
    pub progress: &'a dyn Progress,
    /// Chunks that other workers offer while this one is idle.
    pub handoffs: Receiver<Handoff>,
}

/// Starts `threads` file workers in scope `s`; returns where to send them files (a queue
/// of `queue`) and where their results come back. The workers stop once the sender is
/// dropped and every file is done; a stage's fatal error goes to `failure`.
#[allow(clippy::too_many_arguments)]
pub fn spawn_file_workers<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    threads: usize,
    queue: usize,
    known: &'env Known<'env>,
    counters: &'env Counters,
    packer: &'env Packer<'env>,
    progress: &'env dyn Progress,
    failure: &'env Failure,
) -> (Sender<FileJob>, Receiver<FileResult>) {
    let (job_tx, job_rx) = crossbeam_channel::bounded(queue);
    let (res_tx, res_rx) = crossbeam_channel::unbounded();
    // One chunk may wait for an idle worker (see `Handoff`).
    let (handoff_tx, handoff_rx) = crossbeam_channel::bounded(1);
    for _ in 0..threads {
        let (jobs, results) = (job_rx.clone(), res_tx.clone());
        let worker = FileWorker {
            known,
            counters,
            packer,
            progress,
            handoffs: handoff_rx.clone(),
        };
        let handoff = handoff_tx.clone();
        s.spawn(move || worker.run(jobs, handoff, results, failure));
    }
    (job_tx, res_rx)
}

/// A chunk of a file that one worker cuts and another, idle one stores: hashing and
/// sealing, nearly all of the work, then run on every core even when one big file is
/// left. The chunk is copied once for this (a memcpy against milliseconds of zstd). The
/// queue holds one chunk, so a helper finds the next one waiting when it is done; a chunk
/// nobody took is stored by its owner before the file counts as done.
pub struct Handoff {
    /// The chunk's place in its file's content list.
    index: usize,
    data: Vec<u8>,
    reply: Sender<Receipt>,
}

/// Chunks smaller than this are stored by the worker that cut them.
const HANDOFF_MIN: usize = 256 * 1024;

struct Receipt {
    index: usize,
    id: Result<Id>,
    /// The chunk's buffer, back for the next handoff.
    data: Vec<u8>,
}

/// What a worker keeps between chunks of one file.
struct FileState<'w> {
    content: Vec<Id>,
    size: u64,
    /// Handed-off chunks not yet stored, and where their receipts come back.
    outstanding: usize,
    receipts: Option<(Sender<Receipt>, Receiver<Receipt>)>,
    spare: &'w mut Vec<Vec<u8>>,
}

impl FileState<'_> {
    fn settle(&mut self, r: Receipt) -> Result<()> {
        self.outstanding -= 1;
        self.spare.push(r.data);
        self.content[r.index] = r.id?;
        Ok(())
    }
}

impl FileWorker<'_> {
    /// Stores the files of `jobs`, offering chunks to idle workers through `handoff`, and
    /// takes others' chunks while idle. Once the walker has no more files, this worker
    /// drops its `handoff` and helps the others until every worker has dropped theirs.
    pub fn run(
        &self,
        jobs: Receiver<FileJob>,
        handoff: Sender<Handoff>,
        results: Sender<FileResult>,
        failure: &Failure,
    ) {
        let repo = self.packer.repo();
        let mut chunker = Chunker::new(repo.config().chunker, repo.key().chunker_seed);
        let mut store = match BlobStore::new(self.packer, self.counters) {
            Ok(s) => s,
            Err(e) => return failure.set(e),
        };
        let mut spare = Vec::new();
        loop {
            // Idle workers wait for files and for other workers' chunks alike.
            let job = crossbeam_channel::select! {
                recv(jobs) -> job => match job {
                    Ok(job) => job,
                    Err(_) => break,
                },
                recv(self.handoffs) -> h => {
                    if let Ok(h) = h {
                        self.store_handoff(&mut store, h);
                    }
                    continue;
                }
            };
            let mut job = job;
            let worked = self.process(
                &mut chunker,
                &mut store,
                &mut spare,
                &jobs,
                &handoff,
                &mut job,
            );
            let outcome = match worked {
                Ok((content, holes, size, changed)) => FileOutcome::Done {
                    content,
                    holes,
                    size,
                    changed,
                },
                Err(ChunkError::Io(e)) => FileOutcome::Failed(e.to_string()),
                Err(ChunkError::Sink(e)) => {
                    // When the packs' way out is closed, this error only echoes the one
                    // that closed it (an uploader's or the walker's), recorded there.
                    if !self.packer.is_closed() {
                        failure.set(e);
                    }
                    return;
                }
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
        // The walker may close the queue while others still read their last files: help
        // them until all have finished (and dropped their senders).
        drop(handoff);
        for h in self.handoffs.iter() {
            self.store_handoff(&mut store, h);
        }
    }

    /// Names a chunk and stores it unless the repository or this run already has it.
    fn store_chunk(&self, store: &mut BlobStore, data: &[u8]) -> Result<Id> {
        let id = self.packer.repo().key().blob_id(data);
        if self.known.claim(BlobType::Data, &id)? {
            store.store(BlobType::Data, id, data)?;
        }
        Ok(id)
    }

    fn store_handoff(&self, store: &mut BlobStore, h: Handoff) {
        let id = self.store_chunk(store, &h.data);
        // The owner waits for every receipt; it is gone only if its file failed.
        let _ = h.reply.send(Receipt {
            index: h.index,
            id,
            data: h.data,
        });
    }

    fn process(
        &self,
        chunker: &mut Chunker,
        store: &mut BlobStore,
        spare: &mut Vec<Vec<u8>>,
        jobs: &Receiver<FileJob>,
        handoff: &Sender<Handoff>,
        job: &mut FileJob,
    ) -> Result<(Vec<Id>, Vec<Hole>, u64, bool), ChunkError> {
        // A sparse file is read by its data regions; the reader then knows its holes.
        let (mut stream, mut plain, mut sparse) = (job.stream.take(), None, None);
        let mut opened = None;
        let file: &mut dyn Read = match &mut stream {
            Some(stream) => stream,
            None => {
                let (file, meta) = open_regular(&job.path).map_err(ChunkError::Io)?;
                opened = Some(meta.clone());
                if sparse::may_have_holes(&meta) {
                    sparse.insert(SparseReader::new(file, meta.len()))
                } else {
                    plain.insert(file)
                }
            }
        };
        let mut st = FileState {
            content: Vec::new(),
            size: 0,
            outstanding: 0,
            receipts: None,
            spare,
        };
        let cut = chunker.chunks(file, |data: &[u8]| -> Result<()> {
            let len = data.len() as u64;
            st.size += len;
            self.counters.bytes_read.fetch_add(len, Relaxed);
            self.progress.advance(len);
            // With files queued, every worker has one of its own: nobody to hand to. Small
            // chunks are not worth the copy.
            if jobs.is_empty() && data.len() >= HANDOFF_MIN {
                let index = st.content.len();
                st.content.push(Id::default());
                let mut copy = st.spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(data);
                let reply = st
                    .receipts
                    .get_or_insert_with(crossbeam_channel::unbounded)
                    .0
                    .clone();
                let h = Handoff {
                    index,
                    data: copy,
                    reply,
                };
                match handoff.try_send(h) {
                    Ok(()) => st.outstanding += 1,
                    Err(e) => {
                        st.spare.push(e.into_inner().data);
                        st.content[index] = self.store_chunk(store, data)?;
                    }
                }
                while let Some(r) = st.receipts.as_ref().and_then(|(_, rx)| rx.try_recv().ok()) {
                    st.settle(r)?;
                }
            } else {
                st.content.push(self.store_chunk(store, data)?);
            }
            Ok(())
        });
        // Even when reading failed: a chunk claimed for this file must be in a pack before
        // the walker hears of the file, since another file may already refer to it.
        let settled = self.await_handoffs(&mut st, store);
        // Buffers beyond one per other worker would only hold memory.
        st.spare.truncate(crate::threads());
        cut?;
        settled.map_err(ChunkError::Sink)?;
        let after = match (&plain, &sparse) {
            (Some(f), _) => f.metadata().ok(),
            (_, Some(r)) => r.file().metadata().ok(),
            _ => None,
        };
        let changed = opened
            .zip(after)
            .is_some_and(|(a, b)| changed_meanwhile(&a, &b));
        let holes = sparse.map_or_else(Vec::new, |r| r.holes().to_vec());
        let hole_bytes: u64 = holes.iter().map(|h| h.length).sum();
        self.progress.advance(hole_bytes);
        Ok((st.content, holes, st.size + hole_bytes, changed))
    }

    /// Waits until every chunk this file handed off is stored. A chunk may still wait in
    /// the queue: chunks are taken from it (this file's or another's) meanwhile, so a file
    /// never waits on a busy worker. Returns the first failure after all are settled.
    fn await_handoffs(&self, st: &mut FileState, store: &mut BlobStore) -> Result<()> {
        let mut first_error = Ok(());
        let receipts = st.receipts.as_ref().map(|(_, rx)| rx.clone());
        while let Some(rx) = receipts.as_ref().filter(|_| st.outstanding > 0) {
            crossbeam_channel::select! {
                // The file's own sender is in `st`: this channel cannot close here.
                recv(rx) -> r => if let Ok(r) = r {
                    let settled = st.settle(r);
                    if first_error.is_ok() {
                        first_error = settled;
                    }
                },
                recv(self.handoffs) -> h => if let Ok(h) = h {
                    self.store_handoff(store, h);
                },
            }
        }
        first_error
    }
}

/// Whether a file changed between two looks at it: its size, content time or change time
/// differ (as borg tells "file changed while we backed it up").
fn changed_meanwhile(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    before.len() != after.len()
        || (before.mtime(), before.mtime_nsec()) != (after.mtime(), after.mtime_nsec())
        || (before.ctime(), before.ctime_nsec()) != (after.ctime(), after.ctime_nsec())
}

/// Opens a file the walker saw as a regular file. It may have been replaced since: a
/// symlink is not followed (O_NOFOLLOW), a FIFO does not block the open (O_NONBLOCK), and
/// anything that is no longer a regular file is refused rather than read, so that a
/// device or a pipe swapped in during the backup can neither hang it nor feed it endless
/// bytes.
fn open_regular(path: &std::path::Path) -> std::io::Result<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&*reachable(path)?)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => {
                std::io::Error::other("replaced by a symlink during the backup; left out")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "no longer a regular file (replaced during the backup); left out",
        ));
    }
    Ok((file, meta))
}
