//! A repository in an S3 bucket (AWS or any S3-compatible store).
//!
//! The SDK is asynchronous; cairn's pipeline is threads. Each call blocks its calling
//! thread on a small private tokio runtime, so several pipeline threads keep several
//! requests in flight without the rest of cairn knowing about async.
//!
//! The SDK's own retries are switched off: `Retrying` (one layer up) retries every backend
//! the same way, and this module only says which failures are worth retrying.
//!
//! Requests carry only what every store accepts: the SDK's default checksums (which come
//! as `x-amz-checksum-*` headers or aws-chunked trailers that R2, older MinIO, GCS, Ceph
//! and others refuse) are off in both directions; each object goes up in one PutObject
//! from memory with one integrity header, CRC32C or Content-MD5, and `If-None-Match: *`
//! only where the store honours it (see `capabilities`).

pub mod capabilities;
mod errors;
mod location;
mod options;
mod writes;

use std::sync::Mutex;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Region, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::types::{
    ArchiveStatus, GlacierJobParameters, ObjectStorageClass, RestoreRequest, StorageClass, Tier,
};

use super::{Availability, Backend, Kind, Listed, ObjectName, RetrievalTier};
use crate::error::{Error, Result};
use crate::format::config::{ObjectLockConfig, RetentionMode};
use capabilities::Capabilities;

use errors::{Failure, causes};
pub use location::S3Location;
use options::SLOWEST_UPLOAD_BYTES_PER_SEC;
pub use options::{DEFAULT_CONNECTIONS, DEFAULT_TIMEOUT, S3Options, parse_storage_class};

pub struct S3Backend {
    rt: tokio::runtime::Runtime,
    client: Client,
    loc: S3Location,
    /// The endpoint for messages ("AWS" when the SDK resolves it).
    endpoint: String,
    opts: S3Options,
    /// Resolved on the first write (reads need none of it, and a read-only key could not
    /// probe).
    /// A failed probe is remembered too: every upload waiting on it fails with it, and
    /// none probes again.
    capabilities: Mutex<Option<std::result::Result<Capabilities, Error>>>,
    /// The retention every object but locks is written with: the repository's, or a longer
    /// one the command line asked for. Set when the repository's config has been read.
    retention: Mutex<Option<ObjectLockConfig>>,
}

impl S3Backend {
    pub fn new(loc: S3Location, opts: S3Options) -> Result<S3Backend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::System(format!("cannot start the S3 client runtime: {e}")))?;
        // AWS_REGION, then the profile, then us-east-1. The default chain's last step asks
        // the EC2 instance metadata service, which off EC2 costs seconds and a warning;
        // on EC2, set AWS_REGION.
        let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new())
            .or_else(Region::new("us-east-1"));
        let shared = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .load(),
        );
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| shared.endpoint_url().map(str::to_string));
        let path_style = opts.path_style.unwrap_or(endpoint.is_some());
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .retry_config(RetryConfig::disabled())
            .timeout_config(Self::timeouts(opts.timeout, 0))
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(opts.timeout)
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = &opts.endpoint {
            conf = conf.endpoint_url(ep);
        }
        Ok(S3Backend {
            rt,
            client: Client::from_conf(conf.build()),
            endpoint: endpoint.unwrap_or_else(|| "AWS".into()),
            loc,
            retention: Mutex::new(opts.object_lock_days.map(|days| ObjectLockConfig {
                days,
                mode: opts.object_lock_mode.unwrap_or(RetentionMode::Governance),
            })),
            opts,
            capabilities: Mutex::new(None),
        })
    }

    /// The timeouts of one attempt that sends `upload` bytes: the first byte of the answer
    /// is awaited for the timeout plus the time the body takes at the slowest rate allowed.
    fn timeouts(timeout: Duration, upload: u64) -> TimeoutConfig {
        let transfer = Duration::from_secs(upload / SLOWEST_UPLOAD_BYTES_PER_SEC);
        TimeoutConfig::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .read_timeout(timeout + transfer)
            .build()
    }

    fn key(&self, obj: &ObjectName) -> String {
        self.loc.key(&obj.path())
    }

    /// `Error::BucketNotFound` unless the bucket exists.
    fn check_bucket(&self) -> Result<()> {
        let bucket = &self.loc.bucket;
        let found = self
            .rt
            .block_on(self.client.head_bucket().bucket(bucket).send());
        match found {
            Ok(_) => Ok(()),
            Err(e) => match self.classify("HEAD", &format!("bucket {bucket}"), e) {
                Failure::NotFound => Err(Error::BucketNotFound(bucket.clone())),
                other => Err(other.into_error(&self.loc, "HEAD", &format!("bucket {bucket}"))),
            },
        }
    }

    /// Reads an object or a range of it. Responses are not checked against the store's
    /// checksums (`ResponseChecksumValidation::WhenRequired`: stores differ in what they
    /// return for ranges); every object is authenticated by its encryption one layer up,
    /// which catches any damage.
    fn get(&self, obj: &ObjectName, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let key = self.key(obj);
        let what = obj.path();
        self.rt.block_on(async {
            let mut req = self.client.get_object().bucket(&self.loc.bucket).key(&key);
            if let Some((offset, length)) = range {
                if length == 0 {
                    return Ok(Vec::new());
                }
                req = req.range(format!("bytes={}-{}", offset, offset + length - 1));
            }
            let resp = req.send().await.map_err(|e| {
                if let Some(GetObjectError::InvalidObjectState(cold)) = e.as_service_error() {
                    return Error::Archived {
                        object: what.clone(),
                        class: cold
                            .storage_class()
                            .map_or("GLACIER or DEEP_ARCHIVE", |c| c.as_str())
                            .to_string(),
                    };
                }
                self.classify("GET", &what, e)
                    .into_error(&self.loc, "GET", &what)
            })?;
            let body = resp.body.collect().await.map_err(|e| Error::Transient {
                what: format!("GET {what}"),
                message: format!("the download broke off: {}", causes(&e)),
            })?;
            Ok(body.into_bytes().to_vec())
        })
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn write_concurrency(&self) -> usize {
        self.opts.connections.max(1)
    }

    fn remote(&self) -> bool {
        true
    }

    fn atomic_create(&self) -> Result<bool> {
        Ok(self.capabilities()?.atomic_create())
    }

    /// Probes again (unless the user decided) and records the answer: a store that
    /// honoured `If-None-Match` when it was recorded and ignores it now would otherwise
    /// let two prunes take `locks/exclusive`.
    fn atomic_create_now(&self) -> Result<bool> {
        if self.opts.overrides.conditional_writes.is_some() {
            return self.atomic_create();
        }
        let probed = self.probe()?;
        self.record(probed);
        let caps = self.opts.overrides.apply(probed);
        *self
            .capabilities
            .lock()
            .map_err(|_| Error::Internal("S3 capability state poisoned".into()))? = Some(Ok(caps));
        Ok(caps.atomic_create())
    }

    fn require_object_lock(&self, repo: Option<&ObjectLockConfig>) -> Result<()> {
        let Some(repo) = repo else { return Ok(()) };
        // What the command line leaves out comes from the repository.
        let effective = ObjectLockConfig {
            days: self.opts.object_lock_days.unwrap_or(repo.days),
            mode: self.opts.object_lock_mode.unwrap_or(repo.mode),
        };
        if !effective.at_least(repo) {
            return Err(Error::Invalid(format!(
                "--s3-object-lock-days/--s3-object-lock-mode ask for {effective}, less than the repository's object-lock retention ({repo}); leave them out to apply the repository's"
            )));
        }
        *self
            .retention
            .lock()
            .map_err(|_| Error::Internal("S3 retention state poisoned".into()))? = Some(effective);
        Ok(())
    }

    fn describe_store(&self) -> Result<Option<String>> {
        Ok(Some(self.capabilities()?.to_string()))
    }

    /// Makes the bucket if it is missing (as restic does); a bucket that exists is used as is.
    fn create(&self) -> Result<()> {
        let bucket = &self.loc.bucket;
        match self.check_bucket() {
            Ok(()) => return Ok(()),
            Err(Error::BucketNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.rt.block_on(async {
            let mut req = self.client.create_bucket().bucket(bucket);
            if self.opts.object_lock_days.is_some() {
                req = req.object_lock_enabled_for_bucket(true);
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
                Err(e) => Err(self
                    .classify("CREATE", &format!("bucket {bucket}"), e)
                    .into_error(&self.loc, "CREATE", &format!("bucket {bucket}"))),
            }
        })
    }

    fn read(&self, obj: &ObjectName) -> Result<Vec<u8>> {
        match self.get(obj, None) {
            // Some stores answer NoSuchKey for a missing bucket too; a missing config is
            // where users meet that first, so tell the two apart there.
            Err(Error::ObjectNotFound(what)) if obj.kind == Kind::Config => {
                self.check_bucket()?;
                Err(Error::ObjectNotFound(what))
            }
            other => other,
        }
    }

    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> Result<Vec<u8>> {
        let data = self.get(obj, Some((offset, length)))?;
        if data.len() as u64 != length {
            return Err(Error::corrupt(
                obj.path(),
                format!(
                    "asked for {length} bytes at offset {offset}, the store returned {}",
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    fn write(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.put(obj, data, None)
    }

    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> Result<()> {
        self.put(obj, data, self.opts.storage_class.clone())
    }

    fn list(&self, kind: Kind) -> Result<Vec<Listed>> {
        let dir = self.loc.key(&format!("{}/", kind.dir()));
        let what = format!("{}/", kind.dir());
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.loc.bucket)
                .prefix(&dir)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    self.classify("LIST", &what, e)
                        .into_error(&self.loc, "LIST", &what)
                })?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let name = key.rsplit('/').next().unwrap_or(key);
                    out.push(Listed {
                        name: name.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        archived: o
                            .storage_class()
                            .filter(|c| {
                                matches!(
                                    c,
                                    ObjectStorageClass::Glacier | ObjectStorageClass::DeepArchive
                                )
                            })
                            .map(|c| c.as_str().to_string()),
                    });
                }
            }
            Ok(out)
        })
    }

    /// A HEAD: the storage class (and Intelligent-Tiering archive status) says whether
    /// the object is archived, `x-amz-restore` whether a retrieval is under way or done.
    fn availability(&self, obj: &ObjectName) -> Result<Availability> {
        let key = self.key(obj);
        let what = obj.path();
        let head = self.rt.block_on(
            self.client
                .head_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .send(),
        );
        let h = head.map_err(|e| {
            self.classify("HEAD", &what, e)
                .into_error(&self.loc, "HEAD", &what)
        })?;
        let class = match (h.storage_class(), h.archive_status()) {
            (_, Some(ArchiveStatus::ArchiveAccess | ArchiveStatus::DeepArchiveAccess)) => {
                "INTELLIGENT_TIERING (archive tier)".to_string()
            }
            (Some(c @ (StorageClass::Glacier | StorageClass::DeepArchive)), _) => {
                c.as_str().to_string()
            }
            _ => return Ok(Availability::Ready),
        };
        Ok(match h.restore() {
            None => Availability::Archived { class },
            Some(r) if r.contains("ongoing-request=\"true\"") => Availability::Retrieving { class },
            Some(_) => Availability::Ready,
        })
    }

    fn retrieve(&self, obj: &ObjectName, tier: RetrievalTier, days: u32) -> Result<()> {
        let key = self.key(obj);
        let what = obj.path();
        let tier = match tier {
            RetrievalTier::Expedited => Tier::Expedited,
            RetrievalTier::Standard => Tier::Standard,
            RetrievalTier::Bulk => Tier::Bulk,
        };
        let job = GlacierJobParameters::builder()
            .tier(tier)
            .build()
            .map_err(|e| Error::Internal(format!("RestoreObject {what}: {e}")))?;
        let request = RestoreRequest::builder()
            .days(i32::try_from(days).unwrap_or(i32::MAX))
            .glacier_job_parameters(job)
            .build();
        let sent = self.rt.block_on(
            self.client
                .restore_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .restore_request(request)
                .send(),
        );
        match sent {
            Ok(_) => Ok(()),
            // Asked for before and still under way: that is what was wanted.
            Err(e) if e.code() == Some("RestoreAlreadyInProgress") => Ok(()),
            Err(e) => Err(self
                .classify("RESTORE", &what, e)
                .into_error(&self.loc, "RESTORE", &what)),
        }
    }

    fn stat(&self, obj: &ObjectName) -> Result<Option<u64>> {
        let key = self.key(obj);
        let what = obj.path();
        self.rt.block_on(async {
            match self
                .client
                .head_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(h) => Ok(Some(
                    h.content_length()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                )),
                Err(e) => match self.classify("HEAD", &what, e) {
                    Failure::NotFound => Ok(None),
                    other => Err(other.into_error(&self.loc, "HEAD", &what)),
                },
            }
        })
    }

    fn remove(&self, obj: &ObjectName) -> Result<()> {
        let key = self.key(obj);
        let what = obj.path();
        self.rt.block_on(async {
            // On a bucket with object lock, a plain DELETE would only hide a protected
            // object behind a delete marker while it keeps costing money; look first.
            let head = self
                .client
                .head_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .send()
                .await;
            match head {
                Ok(h) => {
                    if let Some(until) = h.object_lock_retain_until_date()
                        && until.secs() > chrono::Utc::now().timestamp()
                    {
                        let until = chrono::DateTime::from_timestamp(until.secs(), 0)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| until.secs().to_string());
                        return Err(Error::Retained {
                            object: what.clone(),
                            until,
                        });
                    }
                }
                Err(e) => match self.classify("HEAD", &what, e) {
                    Failure::NotFound => return Ok(()),
                    other => return Err(other.into_error(&self.loc, "HEAD", &what)),
                },
            }
            match self
                .client
                .delete_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match self.classify("DELETE", &what, e) {
                    Failure::NotFound => Ok(()),
                    other => Err(other.into_error(&self.loc, "DELETE", &what)),
                },
            }
        })
    }

    /// Every object is written by one PutObject, which stores all of it or nothing: an
    /// interrupted write leaves nothing behind.
    fn remove_leftovers(&self, _age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let l = S3Location::parse("s3://my-bucket").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", ""));
        assert_eq!(l.key("config"), "config");
        let l = S3Location::parse("s3://my.bucket/a/b/").unwrap();
        assert_eq!(l.prefix, "a/b");
        assert_eq!(l.key("keys/x"), "a/b/keys/x");
        assert_eq!(l.to_string(), "s3://my.bucket/a/b");
        for bad in [
            "s3://",
            "s3:///x",
            "s3://Upper",
            "s3://ab",
            "s3://b_b/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "http://bucket",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn storage_classes() {
        assert_eq!(
            parse_storage_class("standard_ia").unwrap(),
            StorageClass::StandardIa
        );
        assert!(parse_storage_class("COLDEST").is_err());
    }
}
