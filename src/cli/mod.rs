//! Argument parsing, global options, and turning errors into messages and exit codes.

mod commands;
mod escape;
mod exit;
mod file_time;
mod output;
mod password;
mod progress;

use output::errln;

use std::path::PathBuf;
use std::sync::Arc;

use cairn::format::config::{OBJECT_LOCK_DAYS, ObjectLockConfig, RetentionMode};
use cairn::repo::{Repository, default_cache_base};
use cairn::store::local::LocalBackend;
use cairn::store::retry::RetryPolicy;
use cairn::store::s3::capabilities::{Checksum, Overrides};
use cairn::store::s3::{self, S3Backend, S3Options};
use cairn::store::{Backend, Location};
use cairn::{Error, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use output::print_json;
use password::{Password, PasswordSource};

#[derive(Parser)]
#[command(name = "cairn", version, about = "Deduplicating, compressed, encrypted backups", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options that have an environment variable read it in `Global`'s methods, not through
/// clap's `env`: clap shows an option set by the environment in every usage message as if
/// it had been typed, and cannot tell a flag from the variable (see `password`).
#[derive(clap::Args)]
pub struct Global {
    /// Repository: a local directory path, or s3://BUCKET/PREFIX [env: CAIRN_REPOSITORY]
    #[arg(short = 'r', long = "repo", global = true)]
    repo: Option<String>,
    /// Read the password from this file; beats CAIRN_PASSWORD, which beats
    /// CAIRN_PASSWORD_FILE and CAIRN_PASSWORD_COMMAND
    #[arg(long, global = true)]
    password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password (same precedence as
    /// --password-file)
    #[arg(long, global = true)]
    password_command: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    json: bool,
    /// No progress and no informational output
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Folder for local caches (default $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    /// [env: CAIRN_CACHE_DIR]
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Retries of a request that failed for a passing reason (throttling, 5xx, timeout,
    /// dropped connection), with growing pauses between them
    #[arg(long, default_value_t = 6, global = true)]
    retries: u32,
    #[command(flatten)]
    s3: S3Args,
}

/// Options of `s3://` repositories. Credentials and region come from the standard AWS
/// chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and
/// ~/.aws/config and ~/.aws/credentials, AWS_REGION (default us-east-1).
#[derive(clap::Args)]
#[command(next_help_heading = "S3 options")]
struct S3Args {
    /// Endpoint of an S3-compatible store (MinIO, Garage, Ceph, R2, B2, Wasabi…);
    /// AWS_ENDPOINT_URL works too
    #[arg(long = "s3-endpoint", global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Path-style addressing (http://host/bucket/key); on by default when an endpoint is
    /// given. `--s3-path-style=false` turns it off
    #[arg(long = "s3-path-style", global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    path_style: Option<bool>,
    /// Uploads in flight at once (each holds one pack of up to 16 MiB in memory)
    #[arg(long = "s3-connections", global = true, default_value_t = s3::DEFAULT_CONNECTIONS, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: usize,
    /// Storage class of data packs (e.g. STANDARD_IA, GLACIER_IR); metadata and tree packs
    /// stay STANDARD. See README for what each class means for restores
    #[arg(long = "s3-storage-class", global = true, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Put an object-lock retention of N days on every object written. Given to `init`,
    /// it is recorded in the repository and applies to every later write without the
    /// option; later, only a longer retention may be asked for
    #[arg(long = "s3-object-lock-days", global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(i64::from(*OBJECT_LOCK_DAYS.start())..=i64::from(*OBJECT_LOCK_DAYS.end())))]
    object_lock_days: Option<u32>,
    /// Object-lock mode for --s3-object-lock-days (default: the repository's, or
    /// governance for a new one)
    #[arg(
        long = "s3-object-lock-mode",
        global = true,
        value_enum,
        requires = "object_lock_days"
    )]
    object_lock_mode: Option<LockMode>,
    /// Whether to rely on the store refusing to replace an object (`If-None-Match: *`):
    /// `auto` asks the store once and records its answer, `on` relies on it, `off` never
    /// sends it and checks instead
    #[arg(long = "s3-conditional-writes", global = true, value_enum, default_value_t = Switch::Auto, value_name = "WHEN")]
    conditional_writes: Switch,
    /// The integrity header of uploads: `auto` uses CRC32C where the store checks it,
    /// else Content-MD5
    #[arg(long = "s3-checksum", global = true, value_enum, default_value_t = ChecksumArg::Auto, value_name = "KIND")]
    checksum: ChecksumArg,
    /// Seconds an attempt waits for an answer (plus time for large uploads at 256 KiB/s),
    /// or for progress in a transfer, before it counts as failed
    #[arg(long = "s3-timeout", global = true, default_value_t = s3::DEFAULT_TIMEOUT.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Switch {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ChecksumArg {
    Auto,
    Crc32c,
    Md5,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LockMode {
    /// Users with s3:BypassGovernanceRetention may still delete
    Governance,
    /// Nobody can delete or shorten the retention, not even the root account
    Compliance,
}

impl S3Args {
    /// The retention `--s3-object-lock-days` asks for, if given.
    fn object_lock(&self) -> Result<Option<ObjectLockConfig>> {
        let Some(days) = self.object_lock_days else {
            return Ok(None);
        };
        if !OBJECT_LOCK_DAYS.contains(&days) {
            return Err(Error::Usage(format!(
                "--s3-object-lock-days must be {} to {}",
                OBJECT_LOCK_DAYS.start(),
                OBJECT_LOCK_DAYS.end()
            )));
        }
        Ok(Some(ObjectLockConfig {
            mode: self.retention_mode().unwrap_or(RetentionMode::Governance),
            days,
        }))
    }

    fn retention_mode(&self) -> Option<RetentionMode> {
        self.object_lock_mode.map(|m| match m {
            LockMode::Governance => RetentionMode::Governance,
            LockMode::Compliance => RetentionMode::Compliance,
        })
    }

    fn options(&self, cache_base: Option<&std::path::Path>) -> Result<S3Options> {
        if self.connections == 0 {
            return Err(Error::Usage("--s3-connections must be at least 1".into()));
        }
        Ok(S3Options {
            endpoint: self.endpoint.clone(),
            path_style: self.path_style,
            connections: self.connections,
            storage_class: self
                .storage_class
                .as_deref()
                .map(s3::parse_storage_class)
                .transpose()?,
            object_lock_days: self.object_lock()?.map(|l| l.days),
            object_lock_mode: self.retention_mode(),
            overrides: Overrides {
                conditional_writes: match self.conditional_writes {
                    Switch::Auto => None,
                    Switch::On => Some(true),
                    Switch::Off => Some(false),
                },
                checksum: match self.checksum {
                    ChecksumArg::Auto => None,
                    ChecksumArg::Crc32c => Some(Checksum::Crc32c),
                    ChecksumArg::Md5 => Some(Checksum::Md5),
                },
            },
            timeout: std::time::Duration::from_secs(self.timeout),
            record_dir: cache_base.map(|b| b.join("stores")),
            fresh_probe: false,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository
    Init(commands::init::NewRepoArgs),
    /// Back up files and directories into a new snapshot
    Backup(commands::backup::Args),
    /// List snapshots
    Snapshots(commands::snapshots::Args),
    /// List the files of a snapshot
    Ls(commands::ls::Args),
    /// Restore a snapshot, or some paths of it
    Restore(commands::restore::Args),
    /// Write one file of a snapshot to stdout
    Dump(commands::dump::Args),
    /// Remove snapshots by a retention policy or by id (`prune` frees their data)
    Forget(commands::forget::Args),
    /// Delete data that no snapshot needs
    Prune(commands::prune::Args),
    /// Remove a lock left by a prune that is no longer running
    Unlock(commands::unlock::Args),
    /// Verify the repository's structure, and with --read-data its contents
    Check(commands::check::Args),
    /// Bring a damaged repository back: its config, its index, its snapshots
    Repair(commands::repair::Args),
    /// Manage the repository's passwords
    Key(commands::key::Args),
    /// Show which files differ between two snapshots
    Diff(commands::diff::Args),
    /// Show sizes before and after deduplication and compression
    Stats(commands::stats::Args),
    /// List the files and folders of a matching name in every snapshot
    Find(commands::find::Args),
}

impl Global {
    fn backend(&self) -> Result<Arc<dyn Backend>> {
        self.backend_for(false)
    }

    /// The backend of a repository about to be created: an S3 store is probed afresh.
    fn new_backend(&self) -> Result<Arc<dyn Backend>> {
        self.backend_for(true)
    }

    fn backend_for(&self, creating: bool) -> Result<Arc<dyn Backend>> {
        let repo = match &self.repo {
            Some(r) => r.clone(),
            None => match std::env::var("CAIRN_REPOSITORY") {
                Ok(r) => r,
                Err(std::env::VarError::NotPresent) => String::new(),
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::Invalid(
                        "CAIRN_REPOSITORY is not valid UTF-8; give the repository with -r".into(),
                    ));
                }
            },
        };
        match Location::parse(&repo)? {
            Location::S3(loc) => {
                let mut options = self.s3.options(self.cache_base().as_deref())?;
                options.fresh_probe = creating;
                Ok(Arc::new(S3Backend::new(loc, options)?))
            }
            Location::Local(path) => Ok(Arc::new(LocalBackend::new(path))),
        }
    }

    fn object_lock(&self) -> Result<Option<ObjectLockConfig>> {
        self.s3.object_lock()
    }

    fn password(&self) -> PasswordSource {
        PasswordSource {
            file: self.password_file.clone(),
            command: self.password_command.clone(),
        }
    }

    fn cache_base(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| std::env::var_os("CAIRN_CACHE_DIR").map(PathBuf::from))
            .or_else(default_cache_base)
    }

    /// Folders cairn itself uses on this machine, which a backup leaves out: a local
    /// repository and the cache folder.
    fn own_dirs(&self) -> Vec<PathBuf> {
        let repo = Location::parse(self.repo.as_deref().unwrap_or_default());
        let local = match repo {
            Ok(Location::Local(path)) => Some(path),
            _ => None,
        };
        local.into_iter().chain(self.cache_base()).collect()
    }

    /// Opens the repository, asking for the password.
    fn open(&self) -> Result<Repository> {
        self.open_with(&self.password().get()?)
    }

    /// Opens the repository with a password already got.
    fn open_with(&self, password: &Password) -> Result<Repository> {
        Repository::open(
            self.backend()?,
            &password.bytes,
            self.cache_base().as_deref(),
            &self.retry(),
        )
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.retries.saturating_add(1),
            ..RetryPolicy::default()
        }
    }

    fn progress(&self) -> bool {
        progress::bar_wanted(self.quiet, self.json)
    }

    /// Prints an informational line on stderr unless quiet or JSON.
    fn info(&self, msg: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            errln!("{msg}");
        }
    }
}

/// Parses arguments, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let level = match cli.global.verbose {
        0 if cli.global.quiet => tracing::Level::ERROR,
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    // Libraries (the AWS SDK above all) log what cairn reports itself, in their words,
    // and a lot of it (over a hundred lines for one `snapshots`); only -vvvv shows them.
    let libraries = if cli.global.verbose >= 4 {
        tracing::Level::TRACE
    } else {
        tracing::Level::ERROR
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("cairn", level)
        .with_default(libraries);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| progress::LogWriter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .init();
    let g = &cli.global;
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(g, a),
        Command::Backup(a) => commands::backup::run(g, a),
        Command::Snapshots(a) => commands::snapshots::run(g, a),
        Command::Ls(a) => commands::ls::run(g, a),
        Command::Restore(a) => commands::restore::run(g, a),
        Command::Dump(a) => commands::dump::run(g, a),
        Command::Forget(a) => commands::forget::run(g, a),
        Command::Prune(a) => commands::prune::run(g, a),
        Command::Unlock(a) => commands::unlock::run(g, a),
        Command::Check(a) => commands::check::run(g, a),
        Command::Repair(a) => commands::repair::run(g, a),
        Command::Key(a) => commands::key::run(g, a),
        Command::Diff(a) => commands::diff::run(g, a),
        Command::Stats(a) => commands::stats::run(g, a),
        Command::Find(a) => commands::find::run(g, a),
    };
    match result {
        Ok(code) => code,
        Err(Error::OutputClosed) => exit::code(&Error::OutputClosed),
        Err(e) => {
            // `dump` writes the file's bytes to stdout: a JSON line there would end up in
            // the user's file.
            if g.json && !matches!(cli.command, Command::Dump(_)) {
                // The error is on stderr too; a closed stdout cannot make it worse.
                let _ = print_json(
                    &serde_json::json!({"message_type": "error", "error": e.to_string(), "exit_code": exit::code(&e)}),
                );
            }
            errln!("error: {e}");
            exit::code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
