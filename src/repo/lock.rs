//! The exclusive repository lock that keeps two prunes from running at once.
//!
//! Backups never lock: prune is safe beside them by design (see `prune`). Only operations
//! that rewrite the index and delete take the lock. A lock object names host, user,
//! process and time, and is deleted when the operation ends. A lock left by a killed
//! process of this host is taken over; one from another host is reported, and `cairn
//! unlock` removes it once it is older than `STALE_AFTER` (or at once with `--force`).
//!
//! Two ways to take it, by what the store can do (format-spec.md, section 10.2):
//! - where a create is atomic (a local directory; S3 stores that honour `If-None-Match:
//!   *`), the object `locks/exclusive`, which exactly one of two racing writers creates;
//! - elsewhere, a uniquely named `locks/<random>`: write it, wait `SETTLE`, list `locks/`,
//!   and hold the lock only if no other lock object is there, else withdraw. Of two
//!   writers, the one that lists last sees the other's object (every listing follows its
//!   own write, and S3 listings are consistent after a write), so at most one holds it;
//!   both may withdraw, and then both report the other.
//!
//! Both ways end with the listing, so a prune of either kind sees a lock of the other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::cbor::Versioned;
use crate::format::crypto::Aad;
use crate::repo::Repository;
use crate::store::counting::RequestStats;
use crate::store::{Backend, Kind, ObjectName};

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

crate::format::cbor::versioned!(LockInfo, "lock", 1);

impl crate::repo::RepoFile for LockInfo {
    const KIND: Kind = Kind::Lock;
    const AAD: Aad = Aad::Lock;
}

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

/// The lock object of the atomic way, and of cairns before format version 3.
const EXCLUSIVE: &str = "exclusive";

/// How long the listing way waits between writing its lock object and listing, for
/// stores whose listings lag a moment behind writes.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

fn lock_object(name: &str) -> ObjectName {
    ObjectName {
        kind: Kind::Lock,
        name: name.to_string(),
    }
}

/// A held lock; released (deleted) on drop.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    object: ObjectName,
    released: bool,
}

impl RepoLock {
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.backend.remove(&self.object)
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if !self.released
            && let Err(e) = self.backend.remove(&self.object)
        {
            tracing::warn!("could not remove the repository lock: {e}; run `cairn unlock`");
        }
    }
}

/// One lock object found in `locks/`: its name, and what it says (or why it cannot be
/// read).
pub struct Held {
    pub object: ObjectName,
    pub info: Result<LockInfo>,
}

/// Every lock object of the repository.
pub fn current(repo: &Repository) -> Result<Vec<Held>> {
    others(repo, None)
}

/// Every lock object but `own`, read.
fn others(repo: &Repository, own: Option<&ObjectName>) -> Result<Vec<Held>> {
    let mut names: Vec<String> = repo
        .backend()
        .list(Kind::Lock)?
        .into_iter()
        .map(|l| l.name)
        .filter(|n| is_lock_name(n) && own.is_none_or(|o| &o.name != n))
        .collect();
    names.sort();
    let mut held = Vec::new();
    for name in names {
        let object = lock_object(&name);
        let info = match repo.backend().read(&object) {
            Ok(bytes) => repo.open_meta(&bytes, &object.path()),
            // Released between the listing and the read.
            Err(Error::ObjectNotFound(_)) => continue,
            Err(e) => Err(e),
        };
        held.push(Held { object, info });
    }
    Ok(held)
}

/// Removes one lock object whatever it holds.
pub fn remove(repo: &Repository, object: &ObjectName) -> Result<()> {
    repo.backend().remove(object)
}

/// Whether a name in `locks/` is one a lock is written under: anything else there (a
/// folder marker an S3 console made, a stray file) is no lock and blocks nothing.
fn is_lock_name(name: &str) -> bool {
    name == EXCLUSIVE
        || (name.len() == 64
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Removes the lock object of a holder that is known to be gone, saying so.
fn remove_dead(repo: &Repository, object: &ObjectName, held: &LockInfo) -> Result<()> {
    tracing::warn!(
        "removing the lock left by a {} that is no longer running",
        held.describe()
    );
    match remove(repo, object) {
        // The holder removed it itself as it ended (its process is gone by now): so much
        // the better. (S3 asks for the object's retention before a delete, and that
        // request finds nothing.)
        Err(Error::ObjectNotFound(_)) => Ok(()),
        other => other,
    }
}

fn random_name() -> Result<String> {
    let mut bytes = [0u8; 32];
    crate::format::crypto::random_bytes(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Why the lock cannot be had: the holder, and what to do.
fn held_by(info: &LockInfo) -> Error {
    Error::Locked(format!(
        "{}; wait for it to finish, or if it is no longer running, run `cairn unlock` (locks from other hosts count as abandoned after {} hours; `cairn unlock --force` removes any lock)",
        info.describe(),
        STALE_AFTER.num_hours()
    ))
}

fn unreadable(object: &ObjectName, e: &Error) -> Error {
    Error::Locked(format!(
        "lock object {object} exists but cannot be read ({e}); if no prune is running, run `cairn unlock --force`"
    ))
}

/// The requests that taking and releasing the lock cost, for a dry run's estimate: the
/// write, the listing, the read-back of an atomic create, and the delete (which S3
/// precedes with a HEAD for the object's retention), when no one else holds it.
pub fn requests(backend: &dyn Backend) -> Result<RequestStats> {
    let atomic = backend.atomic_create()?;
    Ok(RequestStats {
        put: 1,
        list: 1,
        get: u64::from(atomic),
        delete: 1,
        head: u64::from(backend.remote()),
        ..RequestStats::default()
    })
}

/// Takes the exclusive lock for `operation`.
pub fn acquire(repo: &Repository, operation: &str) -> Result<RepoLock> {
    let info = LockInfo {
        v: LockInfo::VERSION,
        operation: operation.to_string(),
        hostname: crate::sysinfo::hostname(),
        username: crate::sysinfo::username(),
        pid: std::process::id(),
        time: crate::format::now_nanos(),
    };
    let (_, bytes) = repo.seal_meta(&info)?;
    let backend = repo.backend();
    let atomic = backend.atomic_create_now()?;
    let own = lock_object(&if atomic {
        EXCLUSIVE.to_string()
    } else {
        random_name()?
    });
    // A few rounds: each one after removing the locks of dead local holders.
    for _ in 0..3 {
        match backend.write(&own, &bytes) {
            Ok(()) => {}
            Err(Error::AlreadyExists(_)) => {
                // Only `exclusive` can exist already: another prune holds it.
                match current(repo)?.into_iter().find(|h| h.object == own) {
                    None => continue,
                    Some(Held { info: Ok(held), .. }) if held.holder_is_dead() => {
                        remove_dead(repo, &own, &held)?;
                        continue;
                    }
                    Some(Held { info: Ok(held), .. }) => return Err(held_by(&held)),
                    Some(Held {
                        object,
                        info: Err(e),
                    }) => return Err(unreadable(&object, &e)),
                }
            }
            Err(e) => return Err(e),
        }
        if !atomic {
            std::thread::sleep(SETTLE);
        }
        let others = others(repo, Some(&own))?;
        // A store that honours `If-None-Match` but not atomically under concurrent
        // writers (s3s-fs) could let a second create replace ours: the object must still
        // hold our bytes. If it is gone, the writer that replaced it has finished and
        // released it: take another round.
        if atomic && others.is_empty() {
            match backend.read(&own) {
                Ok(read) if read == bytes => {}
                Ok(_) => {
                    return match current(repo)?.into_iter().find(|h| h.object == own) {
                        Some(Held { info: Ok(held), .. }) => Err(held_by(&held)),
                        _ => Err(Error::Locked(
                            "another prune took the lock at the same moment; try again".into(),
                        )),
                    };
                }
                Err(Error::ObjectNotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        if others.is_empty() {
            return Ok(RepoLock {
                backend: backend.clone(),
                object: own,
                released: false,
            });
        }
        // Someone else is taking or holds it: withdraw, then see who.
        backend.remove(&own)?;
        let mut live = None;
        for other in others {
            match other.info {
                Ok(held) if held.holder_is_dead() => remove_dead(repo, &other.object, &held)?,
                Ok(held) => live = live.or(Some(Ok(held))),
                Err(e) => live = live.or(Some(Err(unreadable(&other.object, &e)))),
            }
        }
        match live {
            None => continue,
            Some(Ok(held)) => return Err(held_by(&held)),
            Some(Err(e)) => return Err(e),
        }
    }
    Err(Error::Locked(
        "the lock changed hands several times while taking it; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::format::config::ObjectLockConfig;
    use crate::repo::InitOptions;
    use crate::store::memory::MemoryBackend;
    use crate::store::retry::RetryPolicy;
    use crate::store::{Kind, Listed};

    const PASSWORD: &[u8] = b"lock test";

    /// A memory store on which, the first time a lock is read back, another prune has
    /// just replaced it (a store whose `If-None-Match` is not atomic under racing
    /// writers), finished, and released it: the object is gone.
    struct ReleasedBeforeReadBack {
        inner: MemoryBackend,
        raced: AtomicBool,
    }

    impl Backend for ReleasedBeforeReadBack {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn create(&self) -> Result<()> {
            self.inner.create()
        }
        fn atomic_create(&self) -> Result<bool> {
            self.inner.atomic_create()
        }
        fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()> {
            self.inner.require_object_lock(repo)
        }
        fn describe_store(&self) -> Result<Option<String>> {
            self.inner.describe_store()
        }
        fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
            if obj.kind == Kind::Lock && !self.raced.swap(true, Ordering::SeqCst) {
                self.inner.remove(obj)?;
            }
            self.inner.read(obj)
        }
        fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
            self.inner.read_range(obj, offset, length)
        }
        fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
            self.inner.write(obj, data)
        }
        fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
            self.inner.list(kind)
        }
        fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
            self.inner.stat(obj)
        }
        fn remove(&self, obj: &ObjectName) -> Result<()> {
            self.inner.remove(obj)
        }
        fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64> {
            self.inner.remove_leftovers(age)
        }
    }

    fn repository(store: Arc<dyn Backend>) -> Repository {
        let retry = RetryPolicy::default();
        Repository::init(store.clone(), PASSWORD, &InitOptions::default(), &retry).unwrap();
        Repository::open(store, PASSWORD, None, &retry).unwrap()
    }

    #[test]
    fn a_lock_released_before_its_read_back_is_taken_again() {
        let store = Arc::new(ReleasedBeforeReadBack {
            inner: MemoryBackend::new(),
            raced: AtomicBool::new(false),
        });
        let repo = repository(store.clone());
        let lock = acquire(&repo, "prune").unwrap();
        assert!(store.raced.load(Ordering::SeqCst));
        assert_eq!(
            current(&repo).unwrap().len(),
            1,
            "held after a second round"
        );
        lock.release().unwrap();
        assert!(current(&repo).unwrap().is_empty());
    }

    #[test]
    fn a_second_taker_is_refused_naming_the_holder_on_either_kind_of_store() {
        for store in [
            MemoryBackend::new(),
            MemoryBackend::new().without_atomic_create(),
        ] {
            let repo = repository(Arc::new(store));
            let held = acquire(&repo, "prune").unwrap();
            // The holder runs on this host and lives (it is this test), so it is not
            // taken over.
            match acquire(&repo, "prune") {
                Err(Error::Locked(why)) => assert!(why.contains("prune by"), "{why}"),
                Err(e) => panic!("refused for another reason: {e}"),
                Ok(_) => panic!("a second taker got the lock"),
            }
            held.release().unwrap();
            acquire(&repo, "prune").unwrap().release().unwrap();
        }
    }
}
