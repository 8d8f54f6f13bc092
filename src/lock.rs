//! The exclusive repository lock that keeps two prunes from running at once.
//!
//! Backups never lock: prune is safe beside them by design (see `prune`). Only operations
//! that rewrite the index and delete take the lock: one object `locks/exclusive`, created
//! with create-if-absent semantics (`If-None-Match: *` on S3, a hard link locally), so
//! exactly one of two racing processes gets it. It names host, user, process and time, and
//! is deleted when the operation ends. A lock left by a killed process of this host is
//! taken over; one from another host is reported, and `cairn unlock` removes it once it
//! is older than `STALE_AFTER` (or at once with `--force`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Kind, ObjectName};
use crate::cbor::Versioned;
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::repository::Repository;

/// A lock from another host is presumed abandoned after this long.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(24);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub v: u64,
    /// What holds it ("prune").
    pub operation: String,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
}

crate::cbor::versioned!(LockInfo, "lock", 1);

impl LockInfo {
    fn age(&self) -> chrono::Duration {
        chrono::Utc::now() - chrono::DateTime::from_timestamp_nanos(self.time)
    }

    /// Whether the process that took the lock is known to be gone: it ran on this host
    /// and no process has its id any more.
    pub fn holder_is_dead(&self) -> bool {
        self.hostname == crate::sysinfo::hostname() && !process_exists(self.pid)
    }

    /// Whether `cairn unlock` may remove it without `--force`.
    pub fn is_stale(&self) -> bool {
        self.holder_is_dead() || self.age() > STALE_AFTER
    }

    pub fn describe(&self) -> String {
        format!(
            "{} by {}@{} (pid {}) since {}",
            self.operation,
            self.username,
            self.hostname,
            self.pid,
            chrono::DateTime::from_timestamp_nanos(self.time)
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
        )
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; EPERM means it exists under another user.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn lock_name() -> ObjectName {
    ObjectName {
        kind: Kind::Lock,
        name: "exclusive".into(),
    }
}

/// A held lock; released (deleted) on drop.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    released: bool,
}

impl RepoLock {
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.backend.remove(&lock_name())
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = self.backend.remove(&lock_name())
        {
            tracing::warn!("could not remove the repository lock: {e}; run `cairn unlock`");
        }
    }
}

/// Reads the current lock, if any. An unreadable lock object is reported as such.
pub fn current(repo: &Repository) -> Result<Option<LockInfo>> {
    let bytes = match repo.backend().read(&lock_name()) {
        Ok(b) => b,
        Err(Error::ObjectNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    repo.open_meta(Aad::Lock, &bytes, &lock_name().path())
        .map(Some)
}

/// Removes the lock object whatever it holds.
pub fn remove(repo: &Repository) -> Result<()> {
    repo.backend().remove(&lock_name())
}

/// Takes the exclusive lock for `operation`.
pub fn acquire(repo: &Repository, operation: &str) -> Result<RepoLock> {
    let info = LockInfo {
        v: LockInfo::VERSION,
        operation: operation.to_string(),
        hostname: crate::sysinfo::hostname(),
        username: crate::sysinfo::username(),
        pid: std::process::id(),
        time: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
    };
    let (_, bytes) = repo.seal_meta(Aad::Lock, &info)?;
    // Two rounds: the second follows the removal of a dead local holder's lock.
    for _ in 0..2 {
        match repo.backend().write(&lock_name(), &bytes) {
            Ok(()) => {
                return Ok(RepoLock {
                    backend: repo.backend().clone(),
                    released: false,
                });
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        let held = match current(repo) {
            Ok(Some(held)) => held,
            // Released between our write and our read: try again.
            Ok(None) => continue,
            Err(e) => {
                return Err(Error::Locked(format!(
                    "a lock object exists but cannot be read ({e}); if no prune is running, run `cairn unlock --force`"
                )));
            }
        };
        if held.holder_is_dead() {
            tracing::warn!(
                "removing the lock left by a {} that is no longer running",
                held.describe()
            );
            remove(repo)?;
            continue;
        }
        return Err(Error::Locked(format!(
            "{}; wait for it to finish, or if it is no longer running, run `cairn unlock` (locks from other hosts count as abandoned after {} hours; `cairn unlock --force` removes any lock)",
            held.describe(),
            STALE_AFTER.num_hours()
        )));
    }
    Err(Error::Locked(
        "the lock changed hands twice while taking it; try again".into(),
    ))
}
