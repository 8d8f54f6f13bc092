//! cairn: content-defined-chunking, deduplicating, compressed and encrypted backups.
//!
//! The library holds everything; the `cairn` binary is a thin command line over it.
//! Layers, bottom up: `backend` stores opaque objects; `crypto`, `blob`, `pack`, `index`,
//! `tree`, `snapshot` and `config` define what the objects hold (see format-spec.md);
//! `repository` opens a repository and reads and writes its objects; `archiver` and
//! `restorer` do backups and restores.

pub mod archiver;
pub mod backend;
pub mod blob;
pub mod cache;
pub mod cbor;
pub mod check;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod error;
pub mod fsmeta;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod index;
pub mod interrupt;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod pack_cache;
pub mod progress;
pub mod prune;
pub mod repository;
pub mod restorer;
pub mod retention;
pub mod snapshot;
pub mod stats;
pub mod sysinfo;
pub mod tree;

pub use error::{Error, Result};

/// Worker threads per CPU-bound stage: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
}
