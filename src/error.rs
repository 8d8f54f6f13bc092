//! Errors that reach the user: what went wrong, naming the object or path, and what to do.
//! The command line maps them to exit codes (`cli/exit.rs`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "repository {0} does not exist (create it with `cairn init`, or `cairn backup --init`)"
    )]
    RepositoryNotFound(String),

    #[error("repository {0} already exists; refusing to initialise it again")]
    RepositoryExists(String),

    /// Repository objects but no `config`: damage, not an empty place. `init` there would
    /// make a second master key and hide every snapshot.
    #[error(
        "{location} holds a repository ({found}) but its `config` is missing: the repository is damaged, not absent. Do not run `cairn init` here (a new master key would hide every snapshot). The config holds no secret: `cairn repair config` writes it again with your password"
    )]
    ConfigMissing { location: String, found: String },

    /// The config does not open under a master key that opens the repository's other
    /// objects.
    #[error(
        "the `config` of {0} is damaged: your password opens a key whose master key opens the repository's snapshots and index, but not the config. `cairn repair config` writes it again"
    )]
    ConfigDamaged(String),

    /// No key file could be read, or there is none.
    #[error(
        "{location} has no usable key file ({why}): no password can open it. Restore `keys/` from a copy of the repository; a password is needed, and a key file of this repository is the only place its master key is kept"
    )]
    KeysDamaged { location: String, why: String },

    #[error(
        "wrong password: no key in {0} can be opened with it (if the password is right, its key file is damaged: a damaged key file cannot be told from a wrong password; another password of the repository still opens it)"
    )]
    WrongPassword(String),

    #[error(
        "the password opens key file {key}, but its master key does not open the config of {location}: the key file belongs to another repository, or the config is damaged (`cairn check` with another password tells which)"
    )]
    ForeignKey { key: String, location: String },

    #[error("repository is locked: {0}")]
    Locked(String),

    #[error(
        "no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD_COMMAND, or run on a terminal to be asked"
    )]
    NoPassword,

    #[error(
        "{what} uses format version {found}, but this cairn understands version {supported}; upgrade cairn"
    )]
    UnknownVersion {
        what: String,
        found: u64,
        supported: u64,
    },

    #[error("{0} is damaged: {1} (run `cairn check` to see what is affected)")]
    Corrupt(String, String),

    #[error("{0} not found in the repository")]
    ObjectNotFound(String),

    /// A path asked for is not in the snapshot.
    #[error("{} is not in the snapshot (see `cairn ls SNAPSHOT`)", .0.display())]
    PathNotInSnapshot(PathBuf),

    /// An object that must not be replaced (config, lock) exists with other bytes.
    #[error("{0} already exists")]
    AlreadyExists(String),

    /// An object in an S3 archive storage class, not retrieved: not damage, and not
    /// readable until `restore --retrieve-cold` (or `aws s3api restore-object`) brought
    /// it back.
    #[error(
        "{object} is in storage class {class} and must be retrieved before it can be read (`cairn restore … --retrieve-cold`)"
    )]
    Archived { object: String, class: String },

    /// An object under S3 object-lock retention, which cairn never tries to delete early.
    #[error("{object} is under object-lock retention until {until}")]
    Retained { object: String, until: String },

    #[error(
        "access denied to bucket {bucket} ({message}); check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they may use this bucket"
    )]
    AccessDenied { bucket: String, message: String },

    #[error(
        "bucket {0} does not exist; check the repository URL and the region or endpoint (`cairn init` creates a missing bucket)"
    )]
    BucketNotFound(String),

    /// A failure that may pass if the request is sent again (throttling, 5xx, timeouts,
    /// dropped connections). `Retrying` retries these and then reports `GaveUp`.
    #[error("{what}: {message}")]
    Transient { what: String, message: String },

    #[error(
        "{what}: gave up after {attempts} attempts: {message}; check the network and the storage service, then run the command again"
    )]
    GaveUp {
        what: String,
        attempts: u32,
        message: String,
    },

    #[error("backend error on {object}: {source}")]
    Backend {
        object: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),

    /// A value given on the command line (or in the environment) is not one the option
    /// takes; found before any work is done. The message names the option.
    #[error("{0}")]
    Usage(String),

    /// Stopped by Ctrl-C (or SIGTERM) after cleaning up; the message says what was left.
    #[error("{0}")]
    Interrupted(String),

    /// Standard output was closed by its reader (`cairn ls | head -1`): not a failure, the
    /// reader has what it wanted. Listings stop at it and exit 0.
    #[error("standard output was closed")]
    OutputClosed,

    /// What was being done when `source` happened, and what that means for the
    /// operation ("prune deletes nothing …"). Exits as `source` does.
    #[error("{doing}{source}{consequence}")]
    During {
        /// Ends with the separator before the source (`"repacking pack P: "`), or is empty.
        doing: String,
        source: Box<Error>,
        /// Starts with its separator, or is empty.
        consequence: String,
    },

    /// An operation refused to go on because going on could lose data; the message says
    /// why and what to do.
    #[error("{0}")]
    Unsafe(String),

    /// A restore stopped part way; the message says what was done and what to do.
    #[error("{0}")]
    Incomplete(String),

    /// `restore --verify` read back a file that differs from the snapshot.
    #[error("{}: verification failed: restored content differs from the snapshot", .0.display())]
    VerifyFailed(PathBuf),

    /// A file of the local index cache is damaged; the repository is not, and the cache
    /// is rebuilt from it (the message says when).
    #[error("{0}")]
    CacheDamaged(String),

    /// The store answered in a way no other kind covers.
    #[error("{0}")]
    Store(String),

    /// The store does not implement something a request uses (HTTP 501, NotImplemented).
    #[error("{0}")]
    Unsupported(String),

    /// No credentials for the store could be found.
    #[error("{0}")]
    NoCredentials(String),

    /// Standard output could not be written (other than closed by its reader).
    #[error("{0}")]
    Output(String),

    /// The operating system refused something cairn needs: a thread, its random
    /// generator, a signal handler.
    #[error("{0}")]
    System(String),

    /// A stage of a pipeline stopped because another failed or the user stopped it: the
    /// error that stopped it is what gets reported.
    #[error("{0} stopped")]
    Stopped(&'static str),

    /// The stream to back up (standard input, a command's output) could not be read or
    /// the command not run.
    #[error("{0}")]
    Input(String),

    /// The command whose output was to be backed up failed: no snapshot was saved.
    #[error("{0}")]
    CommandFailed(String),

    /// cairn itself went wrong (a worker panicked, an invariant broke): a bug to report.
    #[error("internal error: {0} (a bug in cairn; please report it)")]
    Internal(String),
}

impl Error {
    /// The same error again, for a failure remembered and told to every later caller (a
    /// failed S3 probe): its kind, and so its exit code and advice, kept. A passing
    /// failure becomes a lasting one (nothing is retried against a remembered answer), and
    /// an I/O error, whose source cannot be copied, becomes its message.
    pub fn again(&self) -> Error {
        match self {
            Error::BucketNotFound(b) => Error::BucketNotFound(b.clone()),
            Error::AccessDenied { bucket, message } => Error::AccessDenied {
                bucket: bucket.clone(),
                message: message.clone(),
            },
            Error::GaveUp {
                what,
                attempts,
                message,
            } => Error::GaveUp {
                what: what.clone(),
                attempts: *attempts,
                message: message.clone(),
            },
            Error::NoCredentials(m) => Error::NoCredentials(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::Retained { object, until } => Error::Retained {
                object: object.clone(),
                until: until.clone(),
            },
            Error::Interrupted(m) => Error::Interrupted(m.clone()),
            Error::Usage(m) => Error::Usage(m.clone()),
            Error::Invalid(m) => Error::Invalid(m.clone()),
            e => Error::Store(e.to_string()),
        }
    }

    /// What went wrong, for a report that names the object itself and gives its own
    /// advice (`check`): a damaged object's reason without its name and the advice to
    /// run `check`.
    pub fn detail(&self) -> String {
        match self {
            Error::Corrupt(_, why) => why.clone(),
            e => e.to_string(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Error::Corrupt(what.into(), why.to_string())
    }

    /// This error, said in the terms of what was being done and what it means.
    pub fn during(self, doing: impl Into<String>, consequence: impl Into<String>) -> Self {
        Error::During {
            doing: doing.into(),
            source: Box::new(self),
            consequence: consequence.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_told_again_keeps_its_kind_and_exit_code() {
        let first = Error::BucketNotFound("b".into());
        assert!(matches!(first.again(), Error::BucketNotFound(b) if b == "b"));
        assert_eq!(first.again().to_string(), first.to_string());
        let denied = Error::AccessDenied {
            bucket: "b".into(),
            message: "no".into(),
        };
        assert!(matches!(denied.again(), Error::AccessDenied { .. }));
        // A passing failure is remembered as a lasting one, with its words.
        let passing = Error::Transient {
            what: "PUT x".into(),
            message: "slow down".into(),
        };
        assert!(matches!(passing.again(), Error::Store(m) if m == passing.to_string()));
    }
}
