//! Exit codes: what a command's status tells a script. They follow restic's so that
//! users' scripts carry over; they are documented in README.md and must not change
//! meaning.

use cairn::Error;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a fatal error; nothing (or nothing more) was done.
pub const EXIT_FATAL: i32 = 1;
/// Exit code: the command line is wrong (an unknown option, a missing argument, a value
/// out of range); nothing was done.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: backup finished and wrote a snapshot, but some source files could not be read.
pub const EXIT_PARTIAL: i32 = 3;
/// Exit code: a restore needs data packs in an archive storage class (S3 GLACIER,
/// DEEP_ARCHIVE) that are not retrieved yet; with `--retrieve-cold` their retrieval was
/// requested. The same restore completes once they are available.
pub const EXIT_ARCHIVED: i32 = 4;
/// Exit code: the repository does not exist.
pub const EXIT_NO_REPOSITORY: i32 = 10;
/// Exit code: the repository is locked by another process.
pub const EXIT_LOCKED: i32 = 11;
/// Exit code: the password does not open any key of the repository (or opens only keys
/// whose master key does not open it: key files copied from another repository).
pub const EXIT_WRONG_PASSWORD: i32 = 12;
/// Exit code: interrupted by the user (SIGINT, or SIGTERM).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The documented process exit code for `e`.
pub fn code(e: &Error) -> i32 {
    match e {
        Error::RepositoryNotFound(_) | Error::BucketNotFound(_) => EXIT_NO_REPOSITORY,
        Error::WrongPassword(_) | Error::ForeignKey { .. } => EXIT_WRONG_PASSWORD,
        Error::Locked(_) => EXIT_LOCKED,
        Error::Usage(_) => EXIT_USAGE,
        Error::Interrupted(_) => EXIT_INTERRUPTED,
        Error::OutputClosed => EXIT_OK,
        Error::During { source, .. } => code(source),
        _ => EXIT_FATAL,
    }
}
