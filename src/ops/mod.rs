//! What the commands do: backup, restore, prune, check, forget's retention, diff and
//! stats. Each takes an open repository and options and returns a report; none parses
//! arguments or prints (that is the command line's job).

pub mod archiver;
pub mod check;
pub mod diff;
pub mod fsmeta;
pub mod prune;
pub mod restorer;
pub mod retention;
pub mod stats;
