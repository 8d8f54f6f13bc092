//! The repository's `config` object: its id and the parameters every writer must share.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::Id;

/// Repository format version written by this build. Bumped with every change to
/// format-spec.md.
pub const REPO_VERSION: u64 = 5;
/// Version 1 repositories differ only in having no prune marks in their index files,
/// version 2 ones in having no object-lock setting in their config, version 3 ones in
/// having only version 1 trees (no hard-link device, extended attributes or holes), and
/// version 4 ones in having no version 3 trees (times beyond 64-bit nanoseconds), so they
/// are read as they are.
pub const OLDEST_REPO_VERSION: u64 = 1;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

/// FastCDC's limits on the minimum, average and maximum chunk size (all must be even).
pub const CHUNK_MIN_LIMITS: RangeInclusive<u32> = 64..=1024 * 1024;
pub const CHUNK_AVG_LIMITS: RangeInclusive<u32> = 256..=4 * 1024 * 1024;
pub const CHUNK_MAX_LIMITS: RangeInclusive<u32> = 1024..=16 * 1024 * 1024;
/// The object-lock retention a repository may ask for (S3 allows up to 100 years).
pub const OBJECT_LOCK_DAYS: RangeInclusive<u32> = 1..=36500;
/// The zstd levels a repository may use.
pub const ZSTD_LEVELS: RangeInclusive<i32> = 1..=22;

impl ChunkerParams {
    /// FastCDC only `debug_assert!`s its limits; sizes read from a repository are checked
    /// here instead, so a hostile config cannot make the chunker misbehave.
    pub fn validate(&self) -> Result<()> {
        let ok = CHUNK_MIN_LIMITS.contains(&self.min)
            && CHUNK_AVG_LIMITS.contains(&self.avg)
            && CHUNK_MAX_LIMITS.contains(&self.max)
            && self.min.is_multiple_of(2)
            && self.avg.is_multiple_of(2)
            && self.max.is_multiple_of(2)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "chunker sizes {}/{}/{} are outside FastCDC's limits (min 64 B–1 MiB, avg 256 B–4 MiB, max 1 KiB–16 MiB, even, min ≤ avg ≤ max)",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// S3 object-lock mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// Users with s3:BypassGovernanceRetention may still delete.
    Governance,
    /// Nobody can delete or shorten it, not even the root account.
    Compliance,
}

/// The object-lock retention every object but locks is written with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLockConfig {
    pub mode: RetentionMode,
    pub days: u32,
}

impl ObjectLockConfig {
    /// Whether this protects at least as long and as strictly as `other`.
    pub fn at_least(&self, other: &ObjectLockConfig) -> bool {
        self.days >= other.days && self.mode >= other.mode
    }
}

impl std::fmt::Display for ObjectLockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            RetentionMode::Governance => "governance",
            RetentionMode::Compliance => "compliance",
        };
        let days = if self.days == 1 { "day" } else { "days" };
        write!(f, "{} {days}, {mode} mode", self.days)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub v: u64,
    /// Random repository id; names the local cache.
    pub id: Id,
    pub chunker: ChunkerParams,
    /// zstd level for blobs and metadata.
    pub zstd_level: i32,
    /// Target size of a pack in bytes.
    pub pack_size: u32,
    /// Object-lock retention of every object written (version 3; S3 only). Absent in
    /// older versions and when not asked for at `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLockConfig>,
}

crate::format::cbor::versioned!(
    Config,
    "repository config",
    REPO_VERSION,
    OLDEST_REPO_VERSION
);

impl Config {
    pub fn new(
        chunker: ChunkerParams,
        zstd_level: i32,
        object_lock: Option<ObjectLockConfig>,
    ) -> Result<Config> {
        let mut id = [0u8; 32];
        crate::format::crypto::random_bytes(&mut id)?;
        let cfg = Config {
            v: REPO_VERSION,
            id: Id(id),
            chunker,
            zstd_level,
            pack_size: 16 * 1024 * 1024,
            object_lock,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if let Some(lock) = &self.object_lock
            && !OBJECT_LOCK_DAYS.contains(&lock.days)
        {
            return Err(Error::Invalid(format!(
                "object-lock retention of {} days is outside {}..={} days",
                lock.days,
                OBJECT_LOCK_DAYS.start(),
                OBJECT_LOCK_DAYS.end()
            )));
        }
        if !ZSTD_LEVELS.contains(&self.zstd_level) {
            return Err(Error::Invalid(format!(
                "zstd level {} is outside 1..=22",
                self.zstd_level
            )));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&self.pack_size) {
            return Err(Error::Invalid(format!(
                "pack size {} is outside 1 MiB..1 GiB",
                self.pack_size
            )));
        }
        Ok(())
    }
}
