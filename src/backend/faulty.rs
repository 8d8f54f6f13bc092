//! A backend wrapper that fails or delays a chosen share of calls, on purpose.
//!
//! It exists for fault-injection tests and drills: it proves that `Retrying` carries a
//! backup through a flaky network and that no failure leaves the repository inconsistent.
//! Half of the injected write failures happen *after* the write reached the store (the
//! answer was lost), the case that makes a retried write meet its own earlier copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{Backend, Kind, Listed, ObjectName};
use crate::error::{Error, Result};

pub struct Faulty {
    inner: Arc<dyn Backend>,
    /// Share of calls that fail, in parts per million.
    fail_ppm: AtomicU64,
    /// Pause added to a failing call, to look like a timeout.
    delay: Duration,
    state: AtomicU64,
    injected: AtomicU64,
}

fn ppm(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * 1e6) as u64
}

impl Faulty {
    /// Fails `fail_share` (0.0 to 1.0) of calls, each after `delay`.
    pub fn new(inner: Arc<dyn Backend>, fail_share: f64, delay: Duration, seed: u64) -> Faulty {
        Faulty {
            inner,
            fail_ppm: AtomicU64::new(ppm(fail_share)),
            delay,
            state: AtomicU64::new(seed | 1),
            injected: AtomicU64::new(0),
        }
    }

    /// Changes the share of calls that fail from now on (for example to open a repository
    /// cleanly, then fail everything).
    pub fn set_fail_share(&self, fail_share: f64) {
        self.fail_ppm.store(ppm(fail_share), Relaxed);
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Relaxed)
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

    fn fault(&self, op: &str, what: &str) -> Result<()> {
        if self.roll() % 1_000_000 < self.fail_ppm.load(Relaxed) {
            self.injected.fetch_add(1, Relaxed);
            std::thread::sleep(self.delay);
            return Err(Error::Transient {
                what: format!("{op} {what}"),
                message: "injected failure".into(),
            });
        }
        Ok(())
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

    fn create(&self) -> Result<()> {
        self.inner.create()
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        self.fault("GET", &obj.path())?;
        self.inner.read(obj)
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.fault("GET", &obj.path())?;
        self.inner.read_range(obj, offset, length)
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
