//! What an S3 store does with the request features cairn relies on, found out once per
//! endpoint and bucket by a probe and recorded in the local cache.
//!
//! Stores differ exactly where cairn leans on them: `If-None-Match: *` on PutObject is
//! honoured by AWS, MinIO, R2 and Ceph (412 when the key exists), refused by Backblaze B2
//! (501 NotImplemented on any PUT that carries it) and silently ignored by GCS's XML API,
//! Garage and older SeaweedFS. Integrity headers differ likewise: some stores refuse
//! `x-amz-checksum-*` headers, some accept and ignore them, while Content-MD5 is verified
//! everywhere. The probe asks the store itself instead of guessing from its name.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the store does with `If-None-Match: *` on a PUT of an existing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConditionalWrites {
    /// Answers 412: a create never replaces an object.
    Honoured,
    /// Answers 501 / NotImplemented: the header must not be sent at all.
    Refused,
    /// Stores the second PUT over the first.
    Ignored,
    /// Not relied on, by the user's choice (`--s3-conditional-writes=off`); never recorded.
    Off,
}

/// The integrity header each PUT carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checksum {
    /// `x-amz-checksum-crc32c` as a plain header: the store verified it in the probe.
    Crc32c,
    /// `Content-MD5`, which every S3 store verifies.
    Md5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub conditional_writes: ConditionalWrites,
    pub checksum: Checksum,
}

impl Capabilities {
    /// Whether a PUT may carry `If-None-Match: *` and rely on it.
    pub fn atomic_create(&self) -> bool {
        self.conditional_writes == ConditionalWrites::Honoured
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conditional = match self.conditional_writes {
            ConditionalWrites::Honoured => "honoured",
            ConditionalWrites::Refused => "refused (501 NotImplemented); not sent",
            ConditionalWrites::Ignored => {
                "ignored (a second PUT replaces); creates are checked instead"
            }
            ConditionalWrites::Off => {
                "not used (--s3-conditional-writes=off); creates are checked instead"
            }
        };
        let checksum = match self.checksum {
            Checksum::Crc32c => "CRC32C (x-amz-checksum-crc32c)",
            Checksum::Md5 => "Content-MD5",
        };
        write!(
            f,
            "conditional creates (If-None-Match: *) {conditional}; upload checksums {checksum}"
        )
    }
}

/// A user's choice that beats the probe (`--s3-conditional-writes`, `--s3-checksum`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `Some(true)`: send `If-None-Match` and trust it; `Some(false)`: never send it.
    pub conditional_writes: Option<bool>,
    pub checksum: Option<Checksum>,
}

impl Overrides {
    /// Whether the probe has nothing left to find out.
    pub fn complete(&self) -> bool {
        self.conditional_writes.is_some() && self.checksum.is_some()
    }

    pub fn apply(&self, mut caps: Capabilities) -> Capabilities {
        match self.conditional_writes {
            Some(true) => caps.conditional_writes = ConditionalWrites::Honoured,
            // "off" means "do not rely on it": the header is never sent.
            Some(false) => caps.conditional_writes = ConditionalWrites::Off,
            None => {}
        }
        if let Some(c) = self.checksum {
            caps.checksum = c;
        }
        caps
    }
}

/// One probe result as recorded on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    endpoint: String,
    bucket: String,
    /// RFC 3339 time of the probe.
    probed: String,
    #[serde(flatten)]
    capabilities: Capabilities,
}

/// Where the result for `endpoint` and `bucket` is kept below `dir`: one small JSON file
/// per store, named by a hash so that any endpoint string makes a valid file name.
pub fn record_path(dir: &Path, endpoint: &str, bucket: &str) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(endpoint.as_bytes());
    h.update(b"\n");
    h.update(bucket.as_bytes());
    let hex = h.finalize().to_hex();
    dir.join(format!("{}.json", &hex[..16]))
}

/// The recorded result, with when it was probed; `None` if there is none or it cannot be
/// read (then the store is simply probed again).
pub fn load(path: &Path, endpoint: &str, bucket: &str) -> Option<(Capabilities, String)> {
    let bytes = std::fs::read(path).ok()?;
    let rec: Record = serde_json::from_slice(&bytes).ok()?;
    (rec.endpoint == endpoint && rec.bucket == bucket).then_some((rec.capabilities, rec.probed))
}

/// Records a probe result. The record is a cache: failing to write it costs a probe on
/// the next run, so the error is only reported.
pub fn save(path: &Path, endpoint: &str, bucket: &str, capabilities: Capabilities) {
    let rec = Record {
        endpoint: endpoint.to_string(),
        bucket: bucket.to_string(),
        probed: chrono::Utc::now().to_rfc3339(),
        capabilities,
    };
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        // Private like the rest of the cache: it names the endpoints and buckets used.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, &rec)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(
            "could not record what the store supports in {}: {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_beat_the_probe() {
        let probed = Capabilities {
            conditional_writes: ConditionalWrites::Honoured,
            checksum: Checksum::Crc32c,
        };
        let off = Overrides {
            conditional_writes: Some(false),
            checksum: Some(Checksum::Md5),
        };
        assert!(off.complete());
        let c = off.apply(probed);
        assert!(!c.atomic_create());
        assert_eq!(c.checksum, Checksum::Md5);
        let ignored = Capabilities {
            conditional_writes: ConditionalWrites::Ignored,
            ..probed
        };
        assert_eq!(
            off.apply(ignored).conditional_writes,
            ConditionalWrites::Off
        );
        let on = Overrides {
            conditional_writes: Some(true),
            checksum: None,
        };
        assert!(!on.complete());
        assert!(on.apply(ignored).atomic_create());
        assert_eq!(Overrides::default().apply(ignored), ignored);
    }

    #[test]
    fn records_round_trip_per_store() {
        let dir = tempfile::tempdir().unwrap();
        let caps = Capabilities {
            conditional_writes: ConditionalWrites::Refused,
            checksum: Checksum::Md5,
        };
        let a = record_path(dir.path(), "http://127.0.0.1:9000", "bucket");
        let b = record_path(dir.path(), "http://127.0.0.1:9000", "other");
        assert_ne!(a, b);
        assert!(load(&a, "http://127.0.0.1:9000", "bucket").is_none());
        save(&a, "http://127.0.0.1:9000", "bucket", caps);
        assert_eq!(
            load(&a, "http://127.0.0.1:9000", "bucket").map(|(c, _)| c),
            Some(caps)
        );
        std::fs::write(&a, b"{ garbled").unwrap();
        assert!(load(&a, "http://127.0.0.1:9000", "bucket").is_none());
    }
}
