//! A repository in an S3 bucket (AWS or any S3-compatible store).
//!
//! The SDK is asynchronous; cairn's pipeline is threads. Each call blocks its calling
//! thread on a small private tokio runtime, so several pipeline threads keep several
//! requests in flight without the rest of cairn knowing about async.
//!
//! The SDK's own retries are switched off: `Retrying` (one layer up) retries every backend
//! the same way, and this module only says which failures are worth retrying.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode, StorageClass};

use super::{Backend, Kind, Listed, ObjectName};
use crate::error::{Error, Result};

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
            Error::Invalid(format!(
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

/// Object lock retention set on every object written.
#[derive(Clone, Debug)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    pub days: u32,
}

#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// `--s3-endpoint`; `AWS_ENDPOINT_URL` is read by the SDK when this is unset.
    pub endpoint: Option<String>,
    /// Path-style addressing; `None` means "on when an endpoint is given".
    pub path_style: Option<bool>,
    /// Uploads in flight at once.
    pub connections: usize,
    /// Storage class of data packs; everything else stays STANDARD.
    pub storage_class: Option<StorageClass>,
    pub object_lock: Option<ObjectLock>,
}

pub const DEFAULT_CONNECTIONS: usize = 4;

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

/// What went wrong with one request, as far as callers care.
enum Failure {
    NotFound,
    /// `If-None-Match: *` refused the write: the object exists.
    Exists,
    Other(Error),
}

impl S3Backend {
    pub fn new(loc: S3Location, opts: S3Options) -> Result<S3Backend> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("cannot start the S3 client runtime: {e}")))?;
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
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(ep) = &opts.endpoint {
            conf = conf.endpoint_url(ep);
        }
        Ok(S3Backend {
            rt,
            client: Client::from_conf(conf.build()),
            endpoint: endpoint.unwrap_or_else(|| "AWS".into()),
            loc,
            opts,
        })
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
        match &err {
            SdkError::TimeoutError(_) => {
                return transient(format!("timed out talking to {}", self.endpoint));
            }
            SdkError::DispatchFailure(d) => {
                let cause = causes(&err);
                if cause.contains("loading credentials") {
                    return Failure::Other(Error::Other(format!(
                        "no usable AWS credentials for {}: set AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials ({cause})",
                        self.loc
                    )));
                }
                // Refused, reset and half-answered connections and timeouts all pass;
                // only a request the client itself finds malformed does not.
                if !d.is_user() {
                    return transient(format!("cannot reach {}: {cause}", self.endpoint));
                }
                return Failure::Other(Error::Other(format!(
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
            (_, "InvalidObjectState") => Failure::Other(Error::Other(format!(
                "{op} {what}: the object is in an archive storage class and must be restored \
                 first (aws s3api restore-object), then run the command again"
            ))),
            _ => Failure::Other(Error::Other(format!(
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
                Failure::Other(e) => Err(e),
                Failure::Exists => Ok(()),
            },
        }
    }

    fn get(&self, obj: &ObjectName, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        // A body that fails the store's own checksum twice in a row was damaged at rest,
        // not on the way: that is damage to report, not a failure to retry.
        match self.get_once(obj, range) {
            Err(Error::Transient { message, .. }) if message.contains("checksum mismatch") => {
                match self.get_once(obj, range) {
                    Err(Error::Transient { message, .. })
                        if message.contains("checksum mismatch") =>
                    {
                        Err(Error::corrupt(
                            obj.path(),
                            format!("the store's checksum does not match its bytes ({message})"),
                        ))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    fn get_once(&self, obj: &ObjectName, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
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
            let resp = req
                .send()
                .await
                .map_err(|e| match self.classify("GET", &what, e) {
                    Failure::NotFound => Error::ObjectNotFound(what.clone()),
                    Failure::Exists => Error::Other(format!("GET {what}: unexpected 412")),
                    Failure::Other(e) => e,
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
            if self.opts.object_lock.is_some() {
                req = req.object_lock_enabled_for_bucket(true);
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou")) => Ok(()),
                Err(e) => match self.classify("CREATE", &format!("bucket {bucket}"), e) {
                    Failure::Other(e) => Err(e),
                    _ => Err(Error::Other(format!("cannot create bucket {bucket}"))),
                },
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
                let page = page.map_err(|e| match self.classify("LIST", &what, e) {
                    Failure::Other(e) => e,
                    _ => Error::Other(format!("LIST {what}: unexpected answer")),
                })?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let name = key.rsplit('/').next().unwrap_or(key);
                    out.push(Listed {
                        name: name.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    });
                }
            }
            Ok(out)
        })
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
                    Failure::Exists => Err(Error::Other(format!("HEAD {what}: unexpected 412"))),
                    Failure::Other(e) => Err(e),
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
                    Failure::Exists => {
                        return Err(Error::Other(format!("HEAD {what}: unexpected 412")));
                    }
                    Failure::Other(e) => return Err(e),
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
                    Failure::Exists => Err(Error::Other(format!("DELETE {what}: unexpected 412"))),
                    Failure::Other(e) => Err(e),
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

impl S3Backend {
    /// Creates an object, never replacing one: `If-None-Match: *` makes the store refuse a
    /// second write of the same name, and a CRC32C checksum lets it refuse a damaged upload.
    fn put(&self, obj: &ObjectName, data: &[u8], class: Option<StorageClass>) -> Result<()> {
        let key = self.key(obj);
        let what = obj.path();
        let body = ByteStream::from(data.to_vec());
        let sent = self.rt.block_on(async {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .body(body)
                .content_length(data.len() as i64)
                .if_none_match("*")
                .checksum_algorithm(ChecksumAlgorithm::Crc32C);
            if let Some(class) = class {
                req = req.storage_class(class);
            }
            if let Some(lock) = &self.opts.object_lock {
                let until = chrono::Utc::now() + chrono::Duration::days(i64::from(lock.days));
                req = req
                    .object_lock_mode(lock.mode.clone())
                    .object_lock_retain_until_date(DateTime::from_secs(until.timestamp()));
            }
            req.send()
                .await
                .map(|_| ())
                .map_err(|e| self.classify("PUT", &what, e))
        });
        match sent {
            Ok(()) => Ok(()),
            Err(Failure::Exists) => super::write_over_existing(self, obj, data),
            Err(Failure::NotFound) => Err(Error::BucketNotFound(self.loc.bucket.clone())),
            Err(Failure::Other(e)) => Err(e),
        }
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
