//! How cairn talks to an S3 store: the options the command line sets, and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::types::StorageClass;

use super::capabilities::Overrides;
use crate::error::{Error, Result};
use crate::format::config::RetentionMode;

#[derive(Clone, Debug)]
pub struct S3Options {
    /// `--s3-endpoint`; `AWS_ENDPOINT_URL` is read by the SDK when this is unset.
    pub endpoint: Option<String>,
    /// Path-style addressing; `None` means "on when an endpoint is given".
    pub path_style: Option<bool>,
    /// Uploads in flight at once.
    pub connections: usize,
    /// Storage class of data packs; everything else stays STANDARD.
    pub storage_class: Option<StorageClass>,
    /// Retention asked for on the command line (`--s3-object-lock-days`, and the mode if
    /// given); the repository's own (in its config) applies without it, and what is not
    /// given comes from it, see `Backend::require_object_lock`.
    pub object_lock_days: Option<u32>,
    pub object_lock_mode: Option<RetentionMode>,
    /// `--s3-conditional-writes` and `--s3-checksum`, beating the probe.
    pub overrides: Overrides,
    /// How long an attempt may wait for the store's first byte of answer (scaled up for
    /// large uploads) or see no progress in a transfer before it fails.
    pub timeout: Duration,
    /// Where probe results are recorded (the cache base's `stores/`); `None` probes on
    /// every run.
    pub record_dir: Option<PathBuf>,
    /// Probe again even if a result is recorded (`init` does: a new repository is the
    /// moment to find out, and to show the user).
    pub fresh_probe: bool,
}

pub const DEFAULT_CONNECTIONS: usize = 4;
/// `--s3-timeout` when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            path_style: None,
            connections: DEFAULT_CONNECTIONS,
            storage_class: None,
            object_lock_days: None,
            object_lock_mode: None,
            overrides: Overrides::default(),
            timeout: DEFAULT_TIMEOUT,
            record_dir: None,
            fresh_probe: false,
        }
    }
}
/// The slowest upload rate an attempt is given time for, on top of the timeout: a 16 MiB
/// pack may take 64 s more than a small object before it counts as hung.
pub(super) const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 256 * 1024;

/// Parses a `--s3-storage-class` value.
pub fn parse_storage_class(s: &str) -> Result<StorageClass> {
    let upper = s.to_ascii_uppercase();
    let known = StorageClass::values();
    if known.contains(&upper.as_str()) {
        Ok(StorageClass::from(upper.as_str()))
    } else {
        Err(Error::Invalid(format!(
            "unknown S3 storage class {s:?}; one of: {}",
            known.join(", ")
        )))
    }
}
