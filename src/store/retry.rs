//! Retries of transient backend failures, for every backend alike.
//!
//! A backend reports throttling, 5xx answers, timeouts and dropped connections as
//! `Error::Transient`; this wrapper sends such a request again after an exponentially
//! growing, jittered pause, and after the last attempt reports `Error::GaveUp`, which names
//! the object and says what to do. Every other error passes through at once.
//!
//! Retrying a write is safe because objects are never replaced: a PUT whose answer was lost
//! but which did land is refused by `If-None-Match` on the retry, and the backend treats
//! that as done.

use std::sync::Arc;
use std::time::Duration;

use super::{Availability, Backend, Kind, Listed, ObjectName, RetrievalTier};
use crate::error::{Error, Result};
use crate::format::config::ObjectLockConfig;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Upper bound of the first pause; each further pause doubles it, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts once this long has passed since the first: a store that hangs
    /// instead of refusing costs each attempt its whole timeout, and this bounds the sum.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// Seven attempts over about 16 s of pauses at most: long enough to ride out throttling
    /// and a restarting server, short enough that an unreachable endpoint is reported soon.
    /// A store that takes every request and never answers fails each attempt after its
    /// timeout (30 s by default), so attempts stop after two minutes.
    fn default() -> Self {
        RetryPolicy {
            attempts: 7,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` ("equal jitter": half fixed, half random, so
    /// that many threads that failed together do not retry together).
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let random = getrandom::u64().unwrap_or(0);
        let jitter_ns = if half.as_nanos() == 0 {
            0
        } else {
            random % half.as_nanos() as u64
        };
        half + Duration::from_nanos(jitter_ns)
    }
}

pub struct Retrying {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl Retrying {
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> Retrying {
        Retrying { inner, policy }
    }

    fn run<T>(&self, mut call: impl FnMut() -> Result<T>) -> Result<T> {
        let attempts = self.policy.attempts.max(1);
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            match call() {
                Err(Error::Transient { what, message }) => {
                    let pause = self.policy.delay(attempt);
                    if attempt >= attempts || started.elapsed() + pause > self.policy.give_up_after
                    {
                        return Err(Error::GaveUp {
                            what,
                            attempts: attempt,
                            message,
                        });
                    }
                    tracing::info!(
                        "{what}: {message}; attempt {} of {attempts} in {:.1} s",
                        attempt + 1,
                        pause.as_secs_f64()
                    );
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl Backend for Retrying {
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
        self.run(|| self.inner.availability(obj))
    }

    fn retrieve(&self, obj: &ObjectName, tier: RetrievalTier, days: u32) -> Result<()> {
        self.run(|| self.inner.retrieve(obj, tier, days))
    }

    fn create(&self) -> Result<()> {
        self.run(|| self.inner.create())
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        self.run(|| self.inner.read(obj))
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        self.run(|| self.inner.read_range(obj, offset, length))
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.run(|| self.inner.write(obj, data))
    }

    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.run(|| self.inner.write_cold(obj, data))
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        self.run(|| self.inner.list(kind))
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        self.run(|| self.inner.stat(obj))
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        self.run(|| self.inner.remove(obj))
    }

    fn remove_leftovers(&self, age: std::time::Duration) -> Result<u64> {
        self.inner.remove_leftovers(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 1..12 {
            let d = p.delay(attempt);
            let exp = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
    }
}
