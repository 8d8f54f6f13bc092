//! What the repository's objects hold, byte for byte (format-spec.md): bytes in, values
//! out. Nothing here touches a store, a cache or the file system being backed up.

pub mod blob;
pub(crate) mod cbor;
pub mod chunker;
pub mod config;
pub mod crypto;
pub mod id;
pub mod index;
pub(crate) mod keyfile;
pub mod pack;
pub mod snapshot;
pub mod tree;
