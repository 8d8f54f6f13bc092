//! `repair`: bringing a damaged repository back, one kind of damage at a time, in the order
//! README's "When something is damaged" gives:
//! - [`config`]: writes a lost or damaged `config` again, from the copy the local cache
//!   keeps or anew, with a master key the password opens;
//! - [`index`]: rebuilds the index from what the packs hold, drops what is lost and
//!   salvages what still opens from damaged packs;
//! - [`snapshots`]: rewrites snapshots that need lost data so that they hold what is left.
//!
//! Each plans from what it reads, then writes new objects before it removes old ones, so
//! that an interrupted repair leaves a repository no worse than before, and the same
//! command run again finishes the job.

pub mod config;
pub mod index;
pub mod snapshots;
