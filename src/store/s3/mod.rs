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

use std::path::PathBuf;
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
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ArchiveStatus, GlacierJobParameters, ObjectLockMode, ObjectStorageClass, RestoreRequest,
    StorageClass, Tier,
};

use super::{Availability, Backend, Kind, Listed, ObjectName, RetrievalTier};
use crate::error::{Error, Result};
use crate::format::config::{ObjectLockConfig, RetentionMode};
use capabilities::{Capabilities, Checksum, ConditionalWrites, Overrides};

/// Where the repository is: `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn parse(url: &str) -> Result<S3Location> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "repository URL {url:?} {why}; write it as s3://BUCKET or s3://BUCKET/PREFIX"
            ))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("names no bucket"));
        }
        // S3 bucket names: 3-63 of lowercase letters, digits, '.', '-'.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid_bucket {
            return Err(bad(&format!(
                "has an invalid bucket name {bucket:?} (3 to 63 lowercase letters, digits, '.' or '-')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|c| c == "." || c == "..")
            || prefix.contains("//")
            || prefix.chars().any(char::is_control)
        {
            return Err(bad("has a prefix with empty, '.' or '..' parts"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.prefix, path)
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

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
const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 256 * 1024;

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
    capabilities: Mutex<Option<std::result::Result<Capabilities, String>>>,
    /// The retention every object but locks is written with: the repository's, or a longer
    /// one the command line asked for. Set when the repository's config has been read.
    retention: Mutex<Option<ObjectLockConfig>>,
}

/// An error and its sources as one line of their messages (the SDK's own rendering adds
/// a debug dump that is no use to a user).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let msg = e.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = e.source();
    }
    out
}

/// The credential chain's failure among an error's sources, if that is what it was.
fn credentials_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a aws_credential_types::provider::error::CredentialsError> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref() {
            return Some(c);
        }
        source = e.source();
    }
    None
}

/// What went wrong with one request, as far as callers care.
enum Failure {
    NotFound,
    /// `If-None-Match: *` refused the write: the object exists.
    Exists,
    /// The store does not implement something the request asked for (501, or 400
    /// NotImplemented): sending it again cannot help. Holds the store's words.
    Refused(String),
    /// A body that does not match its integrity header (400 BadDigest and kin).
    BadDigest(String),
    /// 400 InvalidRequest: the request is not valid for this bucket (retention asked of
    /// a bucket without object lock, among others).
    InvalidRequest(String),
    Other(Error),
}

impl Failure {
    /// The error for an answer that means nothing special to the caller.
    fn into_error(self, loc: &S3Location, op: &str, what: &str) -> Error {
        match self {
            Failure::NotFound => Error::ObjectNotFound(what.to_string()),
            Failure::Exists => Error::Store(format!(
                "{loc}: {op} {what}: unexpected answer 412 Precondition Failed"
            )),
            Failure::Refused(detail) => Error::Unsupported(format!(
                "{loc}: {op} {what}: the store does not implement something this request uses ({detail}); \
                 README's \"S3 stores\" section lists what each store needs"
            )),
            // Bytes damaged on the way: sending them again is the cure.
            Failure::BadDigest(detail) => Error::Transient {
                what: format!("{op} {what}"),
                message: format!("the store found the upload damaged ({detail})"),
            },
            Failure::InvalidRequest(detail) => {
                Error::Store(format!("{loc} {op} {what}: {detail} (HTTP 400)"))
            }
            Failure::Other(e) => e,
        }
    }
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

    /// Turns an SDK error into what cairn reports: access and bucket problems name the
    /// bucket; throttling, server errors, timeouts and dropped connections are transient.
    fn classify<E>(
        &self,
        op: &str,
        what: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or("").to_string();
        let detail = match err.message() {
            Some(m) if !code.is_empty() => format!("{code}: {m}"),
            Some(m) => m.to_string(),
            None if !code.is_empty() => code.clone(),
            None => causes(&err),
        };
        let bucket = &self.loc.bucket;
        let transient = |message: String| {
            Failure::Other(Error::Transient {
                what: format!("{op} {what}"),
                message,
            })
        };
        let no_answer = format!(
            "no answer from {} within {} s (--s3-timeout; a large upload is given more)",
            self.endpoint,
            self.opts.timeout.as_secs()
        );
        match &err {
            SdkError::TimeoutError(_) => return transient(no_answer),
            SdkError::DispatchFailure(d) if d.is_timeout() => return transient(no_answer),
            SdkError::DispatchFailure(d) => {
                let cause = causes(&err);
                if let Some(why) = credentials_error(&err) {
                    // The chain's own account lists every provider it tried, one per
                    // line; the first line says what matters.
                    let why = why.to_string();
                    let why = why.lines().next().unwrap_or_default();
                    return Failure::Other(Error::NoCredentials(format!(
                        "no usable AWS credentials for {}: set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials ({why})",
                        self.loc
                    )));
                }
                // Refused, reset and half-answered connections and timeouts all pass;
                // only a request the client itself finds malformed does not.
                if !d.is_user() {
                    return transient(format!("cannot reach {}: {cause}", self.endpoint));
                }
                return Failure::Other(Error::Store(format!(
                    "{op} {what} on {}: {cause}",
                    self.endpoint
                )));
            }
            SdkError::ResponseError(_) => {
                return transient(format!(
                    "the connection to {} broke off: {}",
                    self.endpoint,
                    causes(&err)
                ));
            }
            _ => {}
        }
        match (status, code.as_str()) {
            (_, "NoSuchBucket") => Failure::Other(Error::BucketNotFound(bucket.clone())),
            (Some(404), "NoSuchKey" | "NotFound" | "") => Failure::NotFound,
            (Some(412), _) => Failure::Exists,
            // A 403 too, but no credential problem: the object is in GLACIER or
            // DEEP_ARCHIVE and must be restored before it can be read.
            (_, "InvalidObjectState") => Failure::Other(Error::Archived {
                object: what.to_string(),
                class: "GLACIER or DEEP_ARCHIVE".into(),
            }),
            (Some(501), _) | (_, "NotImplemented") => Failure::Refused(detail),
            (Some(400), "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch") => {
                Failure::BadDigest(detail)
            }
            (Some(400), "InvalidRequest") => Failure::InvalidRequest(detail),
            (Some(403), _)
            | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                Failure::Other(Error::AccessDenied {
                    bucket: bucket.clone(),
                    message: format!("{op} {what}: {detail}"),
                })
            }
            (Some(429 | 500..=599), _)
            | (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable") => {
                transient(detail)
            }
            _ => Failure::Other(Error::Store(format!(
                "{} {op} {what}: {detail}{}",
                self.loc,
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
            ))),
        }
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

/// How one PUT is sent.
struct PutForm {
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
    fn record_path(&self) -> Option<PathBuf> {
        self.opts
            .record_dir
            .as_ref()
            .map(|d| capabilities::record_path(d, &self.endpoint, &self.loc.bucket))
    }

    /// Records a probe result for the next runs.
    fn record(&self, caps: Capabilities) {
        if let Some(path) = self.record_path() {
            capabilities::save(&path, &self.endpoint, &self.loc.bucket, caps);
        }
    }

    /// What the store supports, from the user's overrides, the local record, or a probe.
    fn capabilities(&self) -> Result<Capabilities> {
        let mut known = self
            .capabilities
            .lock()
            .map_err(|_| Error::Internal("S3 capability state poisoned".into()))?;
        match &*known {
            Some(Ok(c)) => return Ok(*c),
            Some(Err(e)) => return Err(Error::Store(e.clone())),
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
                        *known = Some(Err(e.to_string()));
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
    fn probe(&self) -> Result<Capabilities> {
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
    fn probe_put(
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
    fn put_once(
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
    fn put(&self, obj: &ObjectName, data: &[u8], class: Option<StorageClass>) -> Result<()> {
        let caps = self.capabilities()?;
        let what = obj.path();
        let checked = !caps.atomic_create() && matches!(obj.kind, Kind::Config | Kind::Key);
        if checked && self.stat(obj)?.is_some() {
            return super::write_over_existing(self, obj, data);
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
            Err(Failure::Exists) => return super::write_over_existing(self, obj, data),
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
    fn refusal_advice(&self) -> String {
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

    fn describe_form(form: &PutForm) -> String {
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
