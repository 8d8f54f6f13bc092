//! Counts every backend request by kind and the bytes moved each way, so that users see what
//! a run cost (on S3, requests are money) and tests can check that costs stay proportional
//! to bytes rather than files. At `-vvv` each request is logged as it completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::{Availability, Backend, Kind, Listed, ObjectName, RetrievalTier};
use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;

#[derive(Default)]
struct Counters {
    get: AtomicU64,
    put: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RequestStats {
    pub get: u64,
    pub put: u64,
    pub head: u64,
    pub list: u64,
    pub delete: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
}

impl std::ops::Add for RequestStats {
    type Output = RequestStats;

    fn add(self, o: RequestStats) -> RequestStats {
        RequestStats {
            get: self.get + o.get,
            put: self.put + o.put,
            head: self.head + o.head,
            list: self.list + o.list,
            delete: self.delete + o.delete,
            bytes_down: self.bytes_down + o.bytes_down,
            bytes_up: self.bytes_up + o.bytes_up,
        }
    }
}

/// Wraps any backend and counts what passes through it.
pub struct Counting {
    inner: Arc<dyn Backend>,
    counters: Counters,
}

impl Counting {
    pub fn new(inner: Arc<dyn Backend>) -> Counting {
        Counting {
            inner,
            counters: Counters::default(),
        }
    }

    pub fn stats(&self) -> RequestStats {
        let c = &self.counters;
        RequestStats {
            get: c.get.load(Relaxed),
            put: c.put.load(Relaxed),
            head: c.head.load(Relaxed),
            list: c.list.load(Relaxed),
            delete: c.delete.load(Relaxed),
            bytes_down: c.bytes_down.load(Relaxed),
            bytes_up: c.bytes_up.load(Relaxed),
        }
    }
}

impl Backend for Counting {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }

    fn atomic_create(&self) -> Result<bool> {
        self.inner.atomic_create()
    }

    fn atomic_create_now(&self) -> Result<bool> {
        self.inner.atomic_create_now()
    }

    fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()> {
        self.inner.require_object_lock(repo)
    }

    fn describe_store(&self) -> Result<Option<String>> {
        self.inner.describe_store()
    }

    /// A HEAD on S3.
    fn availability(&self, obj: &ObjectName) -> Result<Availability> {
        self.counters.head.fetch_add(1, Relaxed);
        self.inner.availability(obj)
    }

    /// A RestoreObject POST, billed as a PUT-class request.
    fn retrieve(&self, obj: &ObjectName, tier: RetrievalTier, days: u32) -> Result<()> {
        self.counters.put.fetch_add(1, Relaxed);
        self.inner.retrieve(obj, tier, days)
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        self.counters.get.fetch_add(1, Relaxed);
        let data = self.inner.read(obj)?;
        tracing::trace!("GET {}: {} bytes", obj.path(), data.len());
        self.counters
            .bytes_down
            .fetch_add(data.len() as u64, Relaxed);
        Ok(data)
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.counters.get.fetch_add(1, Relaxed);
        let data = self.inner.read_range(obj, offset, length)?;
        tracing::trace!("GET {} at {offset}: {} bytes", obj.path(), data.len());
        self.counters
            .bytes_down
            .fetch_add(data.len() as u64, Relaxed);
        Ok(data)
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.counters.put.fetch_add(1, Relaxed);
        self.inner.write(obj, data)?;
        tracing::trace!("PUT {}: {} bytes", obj.path(), data.len());
        self.counters.bytes_up.fetch_add(data.len() as u64, Relaxed);
        Ok(())
    }

    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.counters.put.fetch_add(1, Relaxed);
        self.inner.write_cold(obj, data)?;
        tracing::trace!("PUT {} (cold): {} bytes", obj.path(), data.len());
        self.counters.bytes_up.fetch_add(data.len() as u64, Relaxed);
        Ok(())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        self.counters.list.fetch_add(1, Relaxed);
        let listed = self.inner.list(kind)?;
        tracing::trace!("LIST {}: {} objects", kind.dir(), listed.len());
        Ok(listed)
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        self.counters.head.fetch_add(1, Relaxed);
        let size = self.inner.stat(obj)?;
        tracing::trace!("HEAD {}: {size:?}", obj.path());
        Ok(size)
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        if self.inner.remote() {
            // S3 looks at the object's retention (HEAD) before it deletes.
            self.counters.head.fetch_add(1, Relaxed);
        }
        let removed = self.inner.remove(obj);
        // An object under retention is left alone: no DELETE was sent.
        if !matches!(removed, Err(Error::Retained { .. })) {
            self.counters.delete.fetch_add(1, Relaxed);
        }
        removed?;
        tracing::trace!("DELETE {}", obj.path());
        Ok(())
    }

    fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64> {
        self.inner.remove_leftovers(age)
    }
}
