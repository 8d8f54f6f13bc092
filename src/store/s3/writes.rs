//! How objects are written: the PUT forms a store accepts, found by a probe on the first
//! write (and recorded), and the PUT itself.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockMode, StorageClass};

use super::capabilities::{self, Capabilities, Checksum, ConditionalWrites};
use super::errors::Failure;
use super::{S3Backend, causes};
use crate::error::{Error, Result};
use crate::format::config::{ObjectLockConfig, RetentionMode};
use crate::store::{Backend, Kind, ObjectName};

/// How one PUT is sent.
pub(super) struct PutForm {
    conditional: bool,
    checksum: Checksum,
    /// Test a store's checksum verification: send a CRC32C that does not match.
    wrong_checksum: bool,
    class: Option<StorageClass>,
    retention: Option<ObjectLockConfig>,
}

/// The integrity header value of `data`: base64 of the big-endian CRC32C, or of the MD5.
fn checksum_value(checksum: Checksum, data: &[u8]) -> String {
    use base64ct::Encoding;
    match checksum {
        Checksum::Crc32c => {
            let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
            base64ct::Base64::encode_string(&crc.to_be_bytes())
        }
        Checksum::Md5 => {
            use md5::Digest;
            base64ct::Base64::encode_string(&md5::Md5::digest(data))
        }
    }
}

/// How many times a probe request is sent before a passing failure ends the probe.
const PROBE_ATTEMPTS: u32 = 3;

impl S3Backend {
    /// Where this store's probe result is recorded, if anywhere.
    pub(super) fn record_path(&self) -> Option<PathBuf> {
        self.opts
            .record_dir
            .as_ref()
            .map(|d| capabilities::record_path(d, &self.endpoint, &self.loc.bucket))
    }

    /// Records a probe result for the next runs.
    pub(super) fn record(&self, caps: Capabilities) {
        if let Some(path) = self.record_path() {
            capabilities::save(&path, &self.endpoint, &self.loc.bucket, caps);
        }
    }

    /// What the store supports, from the user's overrides, the local record, or a probe.
    pub(super) fn capabilities(&self) -> Result<Capabilities> {
        let mut known = self
            .capabilities
            .lock()
            .map_err(|_| Error::Internal("S3 capability state poisoned".into()))?;
        match &*known {
            Some(Ok(c)) => return Ok(*c),
            Some(Err(e)) => return Err(e.again()),
            None => {}
        }
        let overrides = self.opts.overrides;
        let record = self.record_path();
        let recorded = match (&record, self.opts.fresh_probe || overrides.complete()) {
            (Some(path), false) => capabilities::load(path, &self.endpoint, &self.loc.bucket),
            _ => None,
        };
        let probed = match recorded {
            Some((caps, when)) => {
                tracing::info!(
                    "S3 store {} (bucket {}), as probed on {when}: {caps}",
                    self.endpoint,
                    self.loc.bucket
                );
                caps
            }
            None if overrides.complete() => overrides.apply(Capabilities {
                conditional_writes: ConditionalWrites::Honoured,
                checksum: Checksum::Md5,
            }),
            None => {
                let caps = match self.probe() {
                    Ok(caps) => caps,
                    Err(e) => {
                        // Every later upload fails with the same kind of error.
                        *known = Some(Err(e.again()));
                        return Err(e);
                    }
                };
                tracing::info!(
                    "S3 store {} (bucket {}), probed now: {caps}",
                    self.endpoint,
                    self.loc.bucket
                );
                self.record(caps);
                caps
            }
        };
        let caps = overrides.apply(probed);
        if caps != probed {
            tracing::info!("with the command line's settings: {caps}");
        }
        *known = Some(Ok(caps));
        Ok(caps)
    }

    /// Finds out what the store does with conditional creates and checksum headers, with a
    /// few small objects `cairn-probe-<random>-*` under the repository prefix, removed
    /// afterwards (where the credentials may delete; a backup-only key leaves them).
    pub(super) fn probe(&self) -> Result<Capabilities> {
        let mut token = [0u8; 8];
        crate::format::crypto::random_bytes(&mut token)?;
        let name = |part: &str| format!("cairn-probe-{}-{part}", hex::encode(token));
        let (first, second) = (name("a"), name("b"));
        let body = b"cairn checks what this store supports\n";
        let plain = |conditional, checksum, wrong_checksum| PutForm {
            conditional,
            checksum,
            wrong_checksum,
            class: None,
            retention: None,
        };
        let result = (|| {
            self.probe_put(&first, body, &plain(false, Checksum::Md5, false))
                .and_then(|answer| answer.map_err(|f| f.into_error(&self.loc, "PUT", &first)))?;
            let conditional_writes =
                match self.probe_put(&first, body, &plain(true, Checksum::Md5, false))? {
                    Err(Failure::Exists) => ConditionalWrites::Honoured,
                    Err(Failure::Refused(_)) => ConditionalWrites::Refused,
                    Ok(()) => ConditionalWrites::Ignored,
                    // Credentials that may not write here: no answer about the header.
                    Err(Failure::Other(e @ Error::AccessDenied { .. })) => return Err(e),
                    // A store that fails a header it does not know in some other way
                    // (400 InvalidArgument, InvalidRequest) refuses it just the same.
                    Err(other) => {
                        tracing::debug!(
                            "conditional PUT probe: {}",
                            other.into_error(&self.loc, "PUT", &first)
                        );
                        ConditionalWrites::Refused
                    }
                };
            // A CRC32C header is worth sending only where the store checks it: a wrong
            // one must be refused, the right one accepted.
            let checks_crc = !matches!(
                self.probe_put(&second, body, &plain(false, Checksum::Crc32c, true))?,
                Ok(())
            );
            let checksum = if checks_crc
                && self
                    .probe_put(&second, body, &plain(false, Checksum::Crc32c, false))?
                    .is_ok()
            {
                Checksum::Crc32c
            } else {
                Checksum::Md5
            };
            Ok(Capabilities {
                conditional_writes,
                checksum,
            })
        })();
        // A store that stopped answering would make each removal wait out its timeout
        // as well; the probe objects are then left (they are a few bytes).
        let answering = !matches!(result, Err(Error::GaveUp { .. }));
        for key in [&first, &second].into_iter().filter(|_| answering) {
            let full = self.loc.key(key);
            let gone = self.rt.block_on(
                self.client
                    .delete_object()
                    .bucket(&self.loc.bucket)
                    .key(&full)
                    .send(),
            );
            if let Err(e) = gone {
                tracing::debug!("could not remove the probe object {full}: {}", causes(&e));
            }
        }
        result.map_err(|e| e.during("probing what the S3 store supports: ", ""))
    }

    /// One probe PUT of `key` (below the prefix): the store's answer, or an error once a
    /// passing failure has lasted `PROBE_ATTEMPTS` tries.
    pub(super) fn probe_put(
        &self,
        key: &str,
        data: &[u8],
        form: &PutForm,
    ) -> Result<std::result::Result<(), Failure>> {
        let mut attempt = 1;
        loop {
            match self.put_once(&self.loc.key(key), key, data, form) {
                Err(Failure::Other(Error::Transient { what, message })) => {
                    if attempt >= PROBE_ATTEMPTS {
                        return Err(Error::GaveUp {
                            what,
                            attempts: attempt,
                            message,
                        });
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
                answer => return Ok(answer),
            }
        }
    }

    /// Sends one PutObject of `data` to `key`, from memory, in the given form.
    pub(super) fn put_once(
        &self,
        key: &str,
        what: &str,
        data: &[u8],
        form: &PutForm,
    ) -> std::result::Result<(), Failure> {
        let mut checksum = checksum_value(form.checksum, data);
        if form.wrong_checksum {
            checksum = checksum_value(form.checksum, b"not the body");
        }
        self.rt.block_on(async {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.loc.bucket)
                .key(key)
                .body(ByteStream::from(data.to_vec()))
                .content_length(data.len() as i64);
            req = match form.checksum {
                Checksum::Crc32c => req.checksum_crc32_c(checksum),
                Checksum::Md5 => req.content_md5(checksum),
            };
            if form.conditional {
                req = req.if_none_match("*");
            }
            if let Some(class) = &form.class {
                req = req.storage_class(class.clone());
            }
            if let Some(lock) = &form.retention {
                let until = chrono::Utc::now() + chrono::Duration::days(i64::from(lock.days));
                req = req
                    .object_lock_mode(match lock.mode {
                        RetentionMode::Governance => ObjectLockMode::Governance,
                        RetentionMode::Compliance => ObjectLockMode::Compliance,
                    })
                    .object_lock_retain_until_date(DateTime::from_secs(until.timestamp()));
            }
            let timeouts = Self::timeouts(self.opts.timeout, data.len() as u64);
            req.customize()
                .config_override(aws_sdk_s3::config::Builder::new().timeout_config(timeouts))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.classify("PUT", what, e))
        })
    }

    /// Creates an object, never replacing one. Where the store honours `If-None-Match: *`
    /// it refuses a second write of the same name. Elsewhere the config and key files
    /// (the objects whose replacement would matter) are looked for first and read back
    /// after; content-named objects need neither, as the same name means the same bytes.
    pub(super) fn put(
        &self,
        obj: &ObjectName,
        data: &[u8],
        class: Option<StorageClass>,
    ) -> Result<()> {
        let caps = self.capabilities()?;
        let what = obj.path();
        let checked = !caps.atomic_create() && matches!(obj.kind, Kind::Config | Kind::Key);
        if checked && self.stat(obj)?.is_some() {
            return crate::store::write_over_existing(self, obj, data);
        }
        let retention = if obj.kind == Kind::Lock {
            // A lock must go when its operation ends.
            None
        } else {
            self.retention
                .lock()
                .map_err(|_| Error::Internal("S3 retention state poisoned".into()))?
                .clone()
        };
        let form = PutForm {
            conditional: caps.atomic_create(),
            checksum: caps.checksum,
            wrong_checksum: false,
            class,
            retention,
        };
        match self.put_once(&self.key(obj), &what, data, &form) {
            Ok(()) => {}
            Err(Failure::Exists) => return crate::store::write_over_existing(self, obj, data),
            Err(Failure::NotFound) => return Err(Error::BucketNotFound(self.loc.bucket.clone())),
            Err(Failure::Refused(detail)) => {
                return Err(Error::Unsupported(format!(
                    "{}: PUT {what}: the store does not implement something this request uses \
                     ({detail}); cairn sent {}; {}",
                    self.loc,
                    Self::describe_form(&form),
                    self.refusal_advice()
                )));
            }
            // Retention asked of a bucket created without object lock.
            Err(Failure::InvalidRequest(detail)) if form.retention.is_some() => {
                return Err(Error::Store(format!(
                    "{}: PUT {what} with object-lock retention: {detail}; if the bucket {} has \
                     no object lock (it can only be enabled when a bucket is created), use a \
                     new bucket: `cairn init --s3-object-lock-days N` creates it with object \
                     lock",
                    self.loc, self.loc.bucket
                )));
            }
            Err(other) => return Err(other.into_error(&self.loc, "PUT", &what)),
        }
        if checked && self.read(obj)? != data {
            // Another writer created it between our look and our write, and its write
            // landed last.
            return Err(Error::AlreadyExists(format!("{what} in {}", self.loc)));
        }
        Ok(())
    }

    /// What to do about a refused request, by where its form came from.
    pub(super) fn refusal_advice(&self) -> String {
        let o = self.opts.overrides;
        if o.conditional_writes == Some(true) || o.checksum == Some(Checksum::Crc32c) {
            return "the command line asked for that (--s3-conditional-writes=on or \
                    --s3-checksum=crc32c); leave it out and cairn uses what the store accepts"
                .into();
        }
        let record = self
            .record_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the cache's stores/ record".into());
        format!(
            "the store answered otherwise when it was probed: remove {record} so that it is \
             probed again, or set --s3-conditional-writes=off / --s3-checksum=md5"
        )
    }

    pub(super) fn describe_form(form: &PutForm) -> String {
        let mut parts = vec![match form.checksum {
            Checksum::Crc32c => "x-amz-checksum-crc32c",
            Checksum::Md5 => "Content-MD5",
        }];
        if form.conditional {
            parts.push("If-None-Match: *");
        }
        if form.retention.is_some() {
            parts.push("object-lock retention");
        }
        if form.class.is_some() {
            parts.push("a storage class");
        }
        parts.join(", ")
    }
}
