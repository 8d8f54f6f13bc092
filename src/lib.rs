//! cairn: content-defined-chunking, deduplicating, compressed and encrypted backups.
//!
//! The library holds everything; the `cairn` binary is a thin command line over it.
//! Layers, bottom up; each imports only from the layers below it:
//! - `format`: what the repository's objects hold, byte for byte (format-spec.md): ids,
//!   CBOR, encryption, key file, config, chunker, blobs, packs, index files, trees,
//!   snapshots. Bytes in, values out.
//! - `store`: where objects live: the `Backend` trait, the local and S3 stores, and the
//!   decorators that retry, count and inject faults.
//! - `repo`: an open repository: keys, config, the index and pack caches, the lock, the
//!   tree walks and the blobs that snapshots need.
//! - `ops`: what commands do (backup, restore, prune, check, retention, diff, stats).
//! - `cli` (in the binary): arguments in, text or JSON out.
//!
//! Each layer shows what the binary, the tests and the benches use; the machinery inside
//! it (CBOR, the key file, the counting store, the archiver's walker and stages, the
//! restorer's fetcher and target, the pack writer, the worker pool, the pack cache) is
//! private to the crate, so it can change without touching a caller.
//!
//! Beneath them all: `error`, `interrupt` (the Ctrl-C flag), `progress` and `sysinfo`
//! (host and user names).

pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod interrupt;
pub mod ops;
pub mod progress;
pub mod repo;
pub mod store;
pub mod sysinfo;

pub use error::{Error, Result};

/// Worker threads per CPU-bound stage: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
}
