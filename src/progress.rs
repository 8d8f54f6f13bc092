//! How operations tell their progress: a small trait that the command line implements (a
//! bar on a terminal, status lines with `--json`). The library never draws anything.
//!
//! Units are what the phase counts: bytes for backup and restore, items (snapshots, packs)
//! for prune, check and stats.

pub trait Progress: Send + Sync {
    /// Whether anyone looks: work done only to show progress (backup counting its total
    /// beside the backup) is skipped otherwise.
    fn watched(&self) -> bool {
        false
    }

    /// A new phase, counting `total` units from zero.
    fn start(&self, _phase: &str, _total: u64) {}

    /// What is being done now: a phase's name, or how far it got ("1024 files").
    fn message(&self, _message: &str) {}

    /// The number of units of the current phase, once it is known.
    fn total(&self, _total: u64) {}

    /// `units` more done.
    fn advance(&self, _units: u64) {}

    /// The operation stops telling: a bar is cleared before the results are printed.
    fn finish(&self) {}
}

/// No one looks: what library users and tests pass.
pub struct Silent;

impl Progress for Silent {}
