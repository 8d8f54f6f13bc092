//! Ctrl-C (SIGINT) and SIGTERM for work that must clean up before it stops.
//!
//! Most commands need nothing: everything they write to a repository becomes visible
//! atomically, so the default action (the process ends) is safe. A restore writes into the
//! user's tree and must remove the files it had not finished, and `prune` and `repair
//! index` hold the repository's lock, which must not outlive them; they install this
//! handler, which only notes the signal, poll [`requested`] (or [`stop_if_requested`])
//! between steps and stop, and the command exits with code 130.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_: nix::libc::c_int) {
    // Only an atomic store: anything more is not async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM only set the flag [`requested`] reads.
pub fn install() -> std::io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler performs one atomic store, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// An `Interrupted` error saying what was stopped and what that leaves, when an interrupt
/// arrived.
pub fn stop_if_requested(what: &str) -> crate::Result<()> {
    if requested() {
        return Err(crate::Error::Interrupted(format!(
            "interrupted: {what} stopped; the repository is consistent, and running it again finishes the job"
        )));
    }
    Ok(())
}

/// Whether an interrupt arrived since [`install`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
