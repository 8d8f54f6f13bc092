//! A store held in memory: the layers above the store (repository, prune, check) are
//! tested on it without a disk or a server, and the store contract suite holds the local
//! and S3 stores to the same answers it gives.
//!
//! It keeps the rules every store keeps (objects never replaced, fixed names created
//! atomically, missing objects reported as such) and can play the two store behaviours
//! that the layers above must cope with: object-lock retention, which refuses deletes
//! until a date, and creates that are not atomic (an S3 store that ignores
//! `If-None-Match`), where the lock falls back to its listing protocol.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, Kind, Listed, ObjectName};
use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;

struct Stored {
    bytes: Vec<u8>,
    /// Under retention until then: removing it before is refused.
    retained_until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(KindKey, String), Stored>,
    /// The retention applied to every write but locks, once a repository asked for it.
    retention: Option<ObjectLockConfig>,
}

/// `Kind` as a map key, in folder order.
type KindKey = &'static str;

fn key(obj: &ObjectName) -> (KindKey, String) {
    (kind_key(obj.kind), obj.name.clone())
}

fn kind_key(kind: Kind) -> KindKey {
    match kind {
        Kind::Config => "config",
        other => other.dir(),
    }
}

pub struct MemoryBackend {
    state: Mutex<State>,
    atomic_create: bool,
    object_lock: bool,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// A store with atomic creates and without object lock, as a local directory.
    pub fn new() -> MemoryBackend {
        MemoryBackend {
            state: Mutex::new(State::default()),
            atomic_create: true,
            object_lock: false,
        }
    }

    /// A store whose creates of fixed names are not atomic: a second create of a lock or
    /// the config is still refused here when it sees the first, but `atomic_create` says
    /// no, so callers use the protocol that does not rely on it.
    pub fn without_atomic_create(mut self) -> MemoryBackend {
        self.atomic_create = false;
        self
    }

    /// A store that can keep objects under retention, as an S3 bucket with object lock.
    pub fn with_object_lock(mut self) -> MemoryBackend {
        self.object_lock = true;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map whole (every change is one
        // insert or remove), so a poisoned lock is still good to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn missing(obj: &ObjectName) -> Error {
        Error::ObjectNotFound(obj.path())
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".into()
    }

    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn atomic_create(&self) -> Result<bool> {
        Ok(self.atomic_create)
    }

    fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()> {
        let Some(lock) = repo else {
            return Ok(());
        };
        if !self.object_lock {
            return Err(Error::Invalid(format!(
                "object-lock retention ({lock}) was asked for, and this memory store was made without object lock"
            )));
        }
        self.state().retention = Some(lock.clone());
        Ok(())
    }

    fn describe_store(&self) -> Result<Option<String>> {
        Ok(None)
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        let state = self.state();
        let stored = state
            .objects
            .get(&key(obj))
            .ok_or_else(|| Self::missing(obj))?;
        Ok(stored.bytes.clone())
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        let state = self.state();
        let stored = state
            .objects
            .get(&key(obj))
            .ok_or_else(|| Self::missing(obj))?;
        let len = stored.bytes.len() as u64;
        match offset.checked_add(length) {
            Some(end) if end <= len => Ok(stored.bytes[offset as usize..end as usize].to_vec()),
            _ => Err(Error::corrupt(
                obj.path(),
                format!("wanted {length} bytes at offset {offset}, the object has only {len}"),
            )),
        }
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        let mut state = self.state();
        if state.objects.contains_key(&key(obj)) {
            drop(state);
            return super::write_over_existing(self, obj, data);
        }
        let retained_until = state
            .retention
            .as_ref()
            .filter(|_| obj.kind != Kind::Lock)
            .map(|lock| chrono::Utc::now() + chrono::Duration::days(i64::from(lock.days)));
        state.objects.insert(
            key(obj),
            Stored {
                bytes: data.to_vec(),
                retained_until,
            },
        );
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        let state = self.state();
        let k = kind_key(kind);
        Ok(state
            .objects
            .range((k, String::new())..)
            .take_while(|((kk, _), _)| *kk == k)
            .map(|((_, name), stored)| Listed {
                name: name.clone(),
                size: stored.bytes.len() as u64,
                archived: None,
            })
            .collect())
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        Ok(self
            .state()
            .objects
            .get(&key(obj))
            .map(|s| s.bytes.len() as u64))
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        let mut state = self.state();
        if let Some(until) = state
            .objects
            .get(&key(obj))
            .and_then(|s| s.retained_until)
            .filter(|until| *until > chrono::Utc::now())
        {
            return Err(Error::Retained {
                object: obj.path(),
                until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        state.objects.remove(&key(obj));
        Ok(())
    }

    fn remove_leftovers(&self, _age: std::time::Duration) -> Result<u64> {
        // Every write lands whole or not at all: nothing is ever left over.
        Ok(0)
    }
}
