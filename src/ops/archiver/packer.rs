//! Sealing blobs into the open packs, and the uploaders that write finished packs and
//! index them: the stages every thread that stores blobs (file workers, the walker's
//! trees) shares, with the run's counters and its first fatal error.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::format::blob::BlobSealer;
use crate::format::id::Id;
use crate::format::pack::{BlobType, FinishedPack, PackBuilder};
use crate::repo::Repository;
use crate::repo::writer::{self, IndexWriter, PackFiller};

/// Counters shared by all stages.
#[derive(Default)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub data_blobs: AtomicU64,
    pub tree_blobs: AtomicU64,
    pub data_added: AtomicU64,
    pub data_added_packed: AtomicU64,
}

impl Counters {
    /// Counts a blob this run stored: its plaintext and sealed sizes.
    fn stored(&self, kind: BlobType, plain: usize, sealed: usize) {
        let blobs = match kind {
            BlobType::Data => &self.data_blobs,
            BlobType::Tree => &self.tree_blobs,
        };
        blobs.fetch_add(1, Relaxed);
        self.data_added.fetch_add(plain as u64, Relaxed);
        self.data_added_packed.fetch_add(sealed as u64, Relaxed);
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

/// Seals blobs and adds them to the open packs: one per thread that stores blobs.
pub struct BlobStore<'a> {
    packer: &'a Packer<'a>,
    counters: &'a Counters,
    sealer: BlobSealer,
    /// Sealed bytes of the blob in hand; its memory is kept for the next one.
    sealed: Vec<u8>,
}

impl<'a> BlobStore<'a> {
    pub fn new(packer: &'a Packer<'a>, counters: &'a Counters) -> Result<BlobStore<'a>> {
        let repo = packer.repo;
        Ok(BlobStore {
            packer,
            counters,
            sealer: BlobSealer::new(repo.key(), repo.config().zstd_level)?,
            sealed: Vec::new(),
        })
    }

    /// Compresses, encrypts and packs a blob that the caller claimed.
    pub fn store(&mut self, kind: BlobType, id: Id, plaintext: &[u8]) -> Result<()> {
        self.sealed.clear();
        let (raw_length, compression) =
            self.sealer
                .seal_into(kind, id, plaintext, &mut self.sealed)?;
        self.counters
            .stored(kind, plaintext.len(), self.sealed.len());
        self.packer
            .add(kind, id, raw_length, compression, &self.sealed)
    }
}

/// The packs being filled, one per blob type, shared by every thread that stores blobs.
pub struct Packer<'a> {
    repo: &'a Repository,
    target: usize,
    data: Mutex<PackFiller>,
    trees: Mutex<PackFiller>,
    /// To the uploaders; taken out by [`Packer::close`] so that they stop.
    out: Mutex<Option<Sender<FinishedPack>>>,
    /// Set once packs can no longer leave: closed, or every uploader gone.
    closed: AtomicBool,
    /// Memory of uploaded data packs, back from the uploaders for the next ones.
    spare_tx: Sender<Vec<u8>>,
    spare_rx: Receiver<Vec<u8>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a builder half-updated in a way that matters: the
    // backup fails on that panic anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> Packer<'a> {
    /// The repository the packs go to.
    pub fn repo(&self) -> &'a Repository {
        self.repo
    }

    pub fn new(repo: &'a Repository, out: Sender<FinishedPack>, uploaders: usize) -> Packer<'a> {
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(uploaders + 1);
        Packer {
            repo,
            target: repo.config().pack_size as usize,
            data: Mutex::new(PackFiller::for_repo(repo, BlobType::Data)),
            trees: Mutex::new(PackFiller::for_repo(repo, BlobType::Tree)),
            out: Mutex::new(Some(out)),
            closed: AtomicBool::new(false),
            spare_tx,
            spare_rx,
        }
    }

    fn filler(&self, kind: BlobType) -> &Mutex<PackFiller> {
        match kind {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.trees,
        }
    }

    /// Adds a sealed blob; a pack that reaches its target size is finished and handed to
    /// an uploader (waiting for one to be free) by the thread that filled it.
    pub fn add(
        &self,
        kind: BlobType,
        id: Id,
        raw_length: u32,
        compression: crate::format::pack::Compression,
        sealed: &[u8],
    ) -> Result<()> {
        let full = {
            let mut filler = lock(self.filler(kind));
            if filler.wants_memory()
                && let Ok(buf) = self.spare_rx.try_recv()
            {
                filler.recycle(buf);
            }
            filler.add(id, raw_length, compression, sealed)?
        };
        match full {
            Some(b) => self.send(b),
            None => Ok(()),
        }
    }

    fn send(&self, b: PackBuilder) -> Result<()> {
        let pack = b.finish(self.repo.key())?;
        let out = lock(&self.out).clone();
        match out.map(|tx| tx.send(pack)) {
            Some(Ok(())) => Ok(()),
            _ => {
                self.closed.store(true, Relaxed);
                Err(Error::Stopped("pack upload"))
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Gives an uploaded data pack's memory back for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        if buf.capacity() >= self.target {
            let _ = self.spare_tx.try_send(buf);
        }
    }

    /// Finishes the packs still open, then lets the uploaders stop.
    pub fn finish(&self) -> Result<()> {
        let result = (|| {
            for kind in [BlobType::Data, BlobType::Tree] {
                let open = lock(self.filler(kind)).take();
                if let Some(b) = open {
                    self.send(b)?;
                }
            }
            Ok(())
        })();
        self.close();
        result
    }

    /// Lets the uploaders stop once the packs already handed over are written.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        lock(&self.out).take();
    }
}

pub fn run_uploader(
    packer: &Packer,
    packs: Receiver<FinishedPack>,
    index: &IndexWriter,
    dry_run: bool,
    failure: &Failure,
) {
    let repo = packer.repo;
    // The receiver outlives the error's recording: a worker that sees the channel closed
    // finds the cause already there.
    for pack in packs.iter() {
        let written = if dry_run {
            Ok(pack.bytes)
        } else {
            writer::write_pack(repo, pack).and_then(|(entry, memory)| {
                index.live(entry)?;
                Ok(memory)
            })
        };
        match written {
            Ok(memory) => packer.recycle(memory),
            Err(e) => return failure.set(e),
        }
    }
}

/// The counts of what this run stored, into the snapshot's summary.
pub fn counters_summary(c: &Counters, s: &mut crate::format::snapshot::Summary) {
    s.data_blobs = c.data_blobs.load(Relaxed);
    s.tree_blobs = c.tree_blobs.load(Relaxed);
    s.data_added = c.data_added.load(Relaxed);
    s.data_added_packed = c.data_added_packed.load(Relaxed);
}
