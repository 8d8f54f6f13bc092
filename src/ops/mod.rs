//! What the commands do: backup, restore, prune, check, forget and its retention, key
//! management, diff and stats. Each takes an open repository and options and returns a report; none parses
//! arguments or prints (that is the command line's job).

pub mod archiver;
pub mod check;
pub mod diff;
pub mod find;
pub mod forget;
pub(crate) mod fsmeta;
pub mod keys;
pub(crate) mod long_path;
pub mod patterns;
pub mod prune;
pub mod repair;
pub mod restorer;
pub mod retention;
pub mod stats;
