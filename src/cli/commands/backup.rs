use std::path::PathBuf;
use std::time::Duration;

use cairn::archiver::exclude::Excludes;
use cairn::archiver::{BackupOptions, SourcePath, backup, check_paths, find_parent};
use cairn::error::{EXIT_OK, EXIT_PARTIAL};
use cairn::repository::Repository;
use cairn::snapshot::resolve;
use cairn::{Error, Result};
use indicatif::HumanBytes;

use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Create the repository first if it does not exist yet
    #[arg(long)]
    init: bool,
    /// Tag for the new snapshot (repeatable)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    host: Option<String>,
    /// Compare with this snapshot instead of the latest of the same host and paths
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, ignoring any parent snapshot
    #[arg(long)]
    force: bool,
    /// Record this time for the snapshot instead of now ("YYYY-MM-DD HH:MM:SS", local
    /// time), e.g. when importing older copies
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Do everything but write to the repository
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Leave out paths matching this gitignore-style pattern (repeatable)
    #[arg(short = 'e', long = "exclude")]
    excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable)
    #[arg(long = "exclude-file")]
    exclude_files: Vec<PathBuf>,
    /// Leave out directories that contain a file of this name (repeatable)
    #[arg(long = "exclude-if-present")]
    exclude_if_present: Vec<String>,
    /// Do not cross into other file systems (mount points are kept as empty folders)
    #[arg(short = 'x', long)]
    one_file_system: bool,
    #[command(flatten)]
    init_options: super::init::NewRepoArgs,
    /// Files and directories to back up, recorded by the names given (a symlink given
    /// with a trailing slash is followed to the directory it points to)
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn open_or_init(g: &Global, args: &Args) -> Result<Repository> {
    match g.open() {
        Err(Error::RepositoryNotFound(_) | Error::BucketNotFound(_)) if args.init => {
            let backend = g.backend()?;
            let password = g.password().get(true)?;
            let config = Repository::init(
                backend.clone(),
                &password,
                &args.init_options.options(),
                &g.retry(),
            )?;
            g.info(format!(
                "created cairn repository {} at {}",
                config.id.short(),
                backend.location()
            ));
            Repository::open(backend, &password, g.cache_base().as_deref(), &g.retry())
        }
        other => other,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (or `YYYY-MM-DD`) in local time, as nanoseconds since the epoch.
fn parse_time(s: &str) -> Result<i64> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map_err(|_| {
            Error::Invalid(format!(
                "--time {s:?}: write it as \"YYYY-MM-DD HH:MM:SS\" (local time)"
            ))
        })?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "--time {s:?} does not exist in the local time zone"
            ))
        })
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let paths = args
        .paths
        .iter()
        .map(|p| SourcePath::new(p))
        .collect::<Result<Vec<_>>>()?;
    // Before the repository is opened (or created): with nothing to read, nothing is done.
    check_paths(&paths)?;
    let excludes = Excludes::new(
        &args.excludes,
        &args.exclude_files,
        &args.exclude_if_present,
    )?;
    let repo = open_or_init(g, args)?;
    let hostname = args.host.clone().unwrap_or_else(cairn::sysinfo::hostname);
    let parent = if args.force {
        None
    } else {
        let snapshots = repo.snapshots()?;
        match &args.parent {
            Some(wanted) => Some(resolve(&snapshots, wanted)?.clone()),
            None => find_parent(&snapshots, &hostname, &paths),
        }
    };
    match &parent {
        Some((id, _)) => g.info(format!("using parent snapshot {}", id.short())),
        None => g.info("no parent snapshot: reading all files"),
    }
    let opts = BackupOptions {
        paths,
        tags: args.tags.clone(),
        hostname,
        parent,
        excludes,
        one_file_system: args.one_file_system,
        dry_run: args.dry_run,
        time: args.time.as_deref().map(parse_time).transpose()?,
        own_dirs: g.own_dirs(),
    };
    let bar = cairn::progress::bytes_bar(g.progress(), "backup");
    let result = std::thread::scope(|s| {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        if g.json && !g.quiet {
            // Status lines once a second, as restic does.
            let bar = bar.clone();
            s.spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(Duration::from_secs(1))
                {
                    let _ = print_json(&serde_json::json!({
                        "message_type": "status",
                        "bytes_done": bar.position(),
                        "total_bytes": bar.length(),
                        "seconds_elapsed": bar.elapsed().as_secs(),
                    }));
                }
            });
        }
        let r = backup(&repo, &opts, &bar);
        drop(stop_tx);
        r
    })?;
    if !result.left_out.is_empty() {
        let names: Vec<_> = result
            .left_out
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        g.info(format!(
            "left out cairn's own repository and cache: {}",
            names.join(", ")
        ));
    }
    for (path, err) in &result.failed {
        eprintln!(
            "error: {}: {err} (left out of the snapshot)",
            path.display()
        );
        if g.json {
            print_json(&serde_json::json!({"message_type": "error", "path": path, "error": err}))?;
        }
    }
    let s = &result.summary;
    if g.json {
        print_json(&serde_json::json!({
            "message_type": "summary",
            "snapshot_id": result.snapshot_id.map(|i| i.to_hex()),
            "dry_run": args.dry_run,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unmodified": s.files_unmodified,
            "files_failed": s.files_failed,
            "dirs_new": s.dirs_new,
            "dirs_changed": s.dirs_changed,
            "dirs_unmodified": s.dirs_unmodified,
            "data_blobs": s.data_blobs,
            "tree_blobs": s.tree_blobs,
            "data_added": s.data_added,
            "data_added_packed": s.data_added_packed,
            "total_files_processed": s.total_files_processed,
            "total_bytes_processed": s.total_bytes_processed,
            "total_duration": result.duration_secs,
            "requests": result.requests,
        }))?;
    } else if !g.quiet {
        let r = &result.requests;
        println!(
            "Files:  {} new, {} changed, {} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:   {} new, {} changed, {} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        println!(
            "Added to the repository: {} ({} stored)",
            HumanBytes(s.data_added),
            HumanBytes(s.data_added_packed)
        );
        println!(
            "processed {} files, {} in {:.2}s",
            s.total_files_processed,
            HumanBytes(s.total_bytes_processed),
            result.duration_secs
        );
        println!(
            "requests: {} GET, {} PUT, {} HEAD, {} LIST, {} DELETE; {} up, {} down",
            r.get,
            r.put,
            r.head,
            r.list,
            r.delete,
            HumanBytes(r.bytes_up),
            HumanBytes(r.bytes_down)
        );
        match result.snapshot_id {
            Some(id) => println!("snapshot {} saved", id.short()),
            None => println!("dry run: nothing was written"),
        }
    }
    if result.failed.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "warning: {} files or folders could not be read and are missing from the snapshot",
            result.failed.len()
        );
        Ok(EXIT_PARTIAL)
    }
}
