//! A backend wrapper that fails or delays a chosen share of calls, on purpose.
//!
//! It exists for fault-injection tests and drills: it proves that `Retrying` carries a
//! backup through a flaky network and that no failure leaves the repository inconsistent.
//! A failing call fails in one of the ways a network does (see [`Fault`]); half of the
//! injected write failures happen *after* the write reached the store (the answer was
//! lost), the case that makes a retried write meet its own earlier copy. As on a
//! congested network, the first call to succeed after each failure is slow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{Availability, Backend, Kind, Listed, ObjectName, RetrievalTier};
use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;

/// The ways an injected failure fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Refused at once, like a 503 or a reset connection.
    Error,
    /// No answer for the wrapper's delay, then an error: a timeout.
    Timeout,
    /// A read whose download broke off: the bytes were sent, part of them arrived.
    Truncated,
}

/// How many faults of each kind were injected, and how many calls were slowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub errors: u64,
    pub timeouts: u64,
    pub truncated: u64,
    pub slow: u64,
}

pub struct Faulty {
    inner: Arc<dyn Backend>,
    /// Share of calls that fail, in parts per million.
    fail_ppm: AtomicU64,
    /// How long a timeout or a slow answer takes.
    delay: Duration,
    state: AtomicU64,
    counts: [AtomicU64; 4],
    /// Failures so far of reads and of other calls: each kind of fault takes its turn,
    /// so that a few failures already include every kind.
    read_failures: AtomicU64,
    other_failures: AtomicU64,
    /// The next call that succeeds is slow.
    slow_next: AtomicBool,
}

fn ppm(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * 1e6) as u64
}

const ERRORS: usize = 0;
const TIMEOUTS: usize = 1;
const TRUNCATED: usize = 2;
const SLOW: usize = 3;

impl Faulty {
    /// Fails `fail_share` (0.0 to 1.0) of calls; timeouts and slow answers take `delay`.
    pub fn new(inner: Arc<dyn Backend>, fail_share: f64, delay: Duration, seed: u64) -> Faulty {
        Faulty {
            inner,
            fail_ppm: AtomicU64::new(ppm(fail_share)),
            delay,
            state: AtomicU64::new(seed | 1),
            counts: Default::default(),
            read_failures: AtomicU64::new(0),
            other_failures: AtomicU64::new(0),
            slow_next: AtomicBool::new(false),
        }
    }

    /// Changes the share of calls that fail from now on (for example to open a repository
    /// cleanly, then fail everything).
    pub fn set_fail_share(&self, fail_share: f64) {
        self.fail_ppm.store(ppm(fail_share), Relaxed);
    }

    /// How many failures were injected so far, of every kind.
    pub fn injected(&self) -> u64 {
        let c = self.counts();
        c.errors + c.timeouts + c.truncated
    }

    pub fn counts(&self) -> FaultCounts {
        let get = |i: usize| self.counts[i].load(Relaxed);
        FaultCounts {
            errors: get(ERRORS),
            timeouts: get(TIMEOUTS),
            truncated: get(TRUNCATED),
            slow: get(SLOW),
        }
    }

    /// A xorshift step shared by all threads; the sequence is reproducible per seed as
    /// long as calls arrive in the same order.
    fn roll(&self) -> u64 {
        let mut x = self.state.load(Relaxed);
        loop {
            let mut n = x;
            n ^= n << 13;
            n ^= n >> 7;
            n ^= n << 17;
            match self.state.compare_exchange_weak(x, n, Relaxed, Relaxed) {
                Ok(_) => return n,
                Err(cur) => x = cur,
            }
        }
    }

    /// Whether this call fails, and how; a call that does not fail may be slowed.
    fn draw(&self, read: bool) -> Option<Fault> {
        if self.roll() % 1_000_000 < self.fail_ppm.load(Relaxed) {
            self.slow_next.store(true, Relaxed);
            return Some(if read {
                let turn = self.read_failures.fetch_add(1, Relaxed);
                [Fault::Truncated, Fault::Timeout, Fault::Error][(turn % 3) as usize]
            } else {
                let turn = self.other_failures.fetch_add(1, Relaxed);
                [Fault::Timeout, Fault::Error][(turn % 2) as usize]
            });
        }
        if self.slow_next.swap(false, Relaxed) {
            self.counts[SLOW].fetch_add(1, Relaxed);
            std::thread::sleep(self.delay);
        }
        None
    }

    /// Counts an injected failure and makes its error; `detail` ends the message.
    fn failure(&self, fault: Fault, op: &str, what: &str, detail: &str) -> Error {
        let (slot, message) = match fault {
            Fault::Error => (ERRORS, "injected failure".to_string()),
            Fault::Timeout => {
                std::thread::sleep(self.delay);
                (TIMEOUTS, format!("injected timeout after {:?}", self.delay))
            }
            Fault::Truncated => (TRUNCATED, "injected: the download broke off".into()),
        };
        self.counts[slot].fetch_add(1, Relaxed);
        Error::Transient {
            what: format!("{op} {what}"),
            message: message + detail,
        }
    }

    /// A call that is not a read.
    fn fault(&self, op: &str, what: &str) -> Result<()> {
        match self.draw(false) {
            None => Ok(()),
            Some(f) => Err(self.failure(f, op, what, "")),
        }
    }

    fn read_with(
        &self,
        obj: &ObjectName,
        read: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let what = obj.path();
        match self.draw(true) {
            None => read(),
            Some(Fault::Truncated) => {
                // The store sent the bytes; only part of them arrived.
                let sent = read()?.len();
                let detail = format!(" after {} of {sent} bytes", sent / 2);
                Err(self.failure(Fault::Truncated, "GET", &what, &detail))
            }
            Some(f) => Err(self.failure(f, "GET", &what, "")),
        }
    }

    fn write_with(&self, obj: &ObjectName, write: impl FnOnce() -> Result<()>) -> Result<()> {
        let what = obj.path();
        if self.roll().is_multiple_of(2) {
            self.fault("PUT", &what)?;
            write()
        } else {
            write()?;
            self.fault("PUT (answer lost)", &what)
        }
    }
}

impl Backend for Faulty {
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

    fn availability(&self, obj: &ObjectName) -> Result<Availability> {
        self.inner.availability(obj)
    }

    fn retrieve(&self, obj: &ObjectName, tier: RetrievalTier, days: u32) -> Result<()> {
        self.inner.retrieve(obj, tier, days)
    }

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        self.read_with(obj, || self.inner.read(obj))
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.read_with(obj, || self.inner.read_range(obj, offset, length))
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.write_with(obj, || self.inner.write(obj, data))
    }

    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.write_with(obj, || self.inner.write_cold(obj, data))
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        self.fault("LIST", kind.dir())?;
        self.inner.list(kind)
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        self.fault("HEAD", &obj.path())?;
        self.inner.stat(obj)
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        self.fault("DELETE", &obj.path())?;
        self.inner.remove(obj)
    }

    fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64> {
        self.inner.remove_leftovers(age)
    }
}
