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

/// A moment as the repository's structures record it (snapshot, lock and prune-mark
/// times): nanoseconds since the Unix epoch, in 64 bits.
pub type Nanos = i64;

/// Now, as [`Nanos`]. A clock past 2262-04-11 (the end of 64-bit nanoseconds) reads as
/// the last moment they hold: later than everything recorded, as now is, so a lock taken
/// then is fresh and a prune mark made then is young, never the reverse.
pub fn now_nanos() -> Nanos {
    to_nanos(chrono::Utc::now())
}

/// `t` as [`Nanos`], the range's ends where it leaves them (see [`now_nanos`]).
pub fn to_nanos(t: chrono::DateTime<chrono::Utc>) -> Nanos {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        Nanos::MIN
    } else {
        Nanos::MAX
    })
}
