//! What a failed S3 request means: the error kinds callers act on, and the SDK's errors
//! turned into what cairn reports.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::{S3Backend, S3Location};
use crate::error::Error;

/// An error and its sources as one line of their messages (the SDK's own rendering adds
/// a debug dump that is no use to a user).
pub(super) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
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
pub(super) fn credentials_error<'a>(
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
pub(super) enum Failure {
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
    pub(super) fn into_error(self, loc: &S3Location, op: &str, what: &str) -> Error {
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
    /// Turns an SDK error into what cairn reports: access and bucket problems name the
    /// bucket; throttling, server errors, timeouts and dropped connections are transient.
    pub(super) fn classify<E>(
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
}
