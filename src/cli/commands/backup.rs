use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::exit::{EXIT_OK, EXIT_PARTIAL};
use cairn::format::snapshot::resolve;
use cairn::ops::archiver::exclude::{ExcludeRules, Excludes, parse_size};
use cairn::ops::archiver::{
    BackupOptions, BackupResult, SourcePath, StreamOptions, StreamSource, backup, backup_stream,
    check_paths, find_parent, stream_path,
};
use cairn::ops::patterns::PatternRules;
use cairn::repo::Repository;
use cairn::{Error, Result};
use indicatif::HumanBytes;

use super::parse_time;
use crate::cli::escape::escape_path;
use crate::cli::output::{errln, outln, regardless};
use crate::cli::progress::Meter;
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
    /// Like --exclude, without regard to case (repeatable)
    #[arg(long = "iexclude", value_name = "PATTERN")]
    iexcludes: Vec<String>,
    /// Like --exclude-file, without regard to case (repeatable)
    #[arg(long = "iexclude-file", value_name = "FILE")]
    iexclude_files: Vec<PathBuf>,
    /// Leave out directories that hold a valid CACHEDIR.TAG file
    #[arg(long)]
    exclude_caches: bool,
    /// Leave out files larger than SIZE (bytes, or with k, M, G, T)
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    exclude_larger_than: Option<u64>,
    /// Back up the paths listed in FILE, one per line (empty lines and lines starting
    /// with # are skipped; `-` reads standard input) (repeatable)
    #[arg(long = "files-from", value_name = "FILE")]
    files_from: Vec<PathBuf>,
    /// Back up the paths listed in FILE, separated by NUL bytes, as `find -print0`
    /// writes them (repeatable)
    #[arg(long = "files-from-raw", value_name = "FILE")]
    files_from_raw: Vec<PathBuf>,
    /// Do not cross into other file systems (mount points are kept as empty folders)
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Do not store extended attributes and POSIX ACLs (stored by default: every
    /// namespace the running user can read)
    #[arg(long)]
    no_xattrs: bool,
    /// Back up standard input as one file (named by --stdin-filename)
    #[arg(long, conflicts_with_all = FILES_ONLY)]
    stdin: bool,
    /// Back up the standard output of the command given after `--` (run without a
    /// shell); if it exits with another status than 0, no snapshot is saved
    #[arg(long, conflicts_with_all = FILES_ONLY, conflicts_with = "stdin")]
    stdin_from_command: bool,
    /// The stream's path in the snapshot, with --stdin or --stdin-from-command
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    stdin_filename: String,
    #[command(flatten)]
    init_options: super::init::NewRepoArgs,
    /// Files and directories to back up, recorded by the names given (a symlink given
    /// with a trailing slash is followed to the directory it points to); with
    /// --stdin-from-command, the command and its arguments
    #[arg(
        required_unless_present_any = ["stdin", "files_from", "files_from_raw"],
        value_name = "PATH"
    )]
    paths: Vec<PathBuf>,
}

/// Options that choose among files, which a stream does not have.
const FILES_ONLY: [&str; 12] = [
    "excludes",
    "exclude_files",
    "exclude_if_present",
    "iexcludes",
    "iexclude_files",
    "exclude_caches",
    "exclude_larger_than",
    "files_from",
    "files_from_raw",
    "one_file_system",
    "no_xattrs",
    "force",
];

fn parse_size_arg(s: &str) -> std::result::Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// The paths of `--files-from` (lines) and `--files-from-raw` (NUL-separated) lists.
fn listed_paths(args: &Args) -> Result<Vec<PathBuf>> {
    let read = |f: &Path| -> Result<Vec<u8>> {
        if f == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map_err(|e| {
                Error::Input(format!("reading the path list from standard input: {e}"))
            })?;
            Ok(bytes)
        } else {
            std::fs::read(f).map_err(|e| {
                Error::Invalid(format!(
                    "cannot read the path list {}: {e}; nothing was backed up",
                    f.display()
                ))
            })
        }
    };
    let mut paths = Vec::new();
    for f in &args.files_from {
        let bytes = read(f)?;
        for line in bytes.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            paths.push(PathBuf::from(std::ffi::OsStr::from_bytes(line)));
        }
    }
    for f in &args.files_from_raw {
        let bytes = read(f)?;
        for name in bytes.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            paths.push(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
        }
    }
    let lists = args.files_from.len() + args.files_from_raw.len();
    if lists > 0 && paths.is_empty() && args.paths.is_empty() {
        return Err(Error::Invalid(
            "the --files-from lists name no path: nothing to back up, no snapshot was written"
                .into(),
        ));
    }
    Ok(paths)
}

/// Opens the repository, or with `--init` creates it; asks for the password once, and a
/// second time only to confirm it for a new repository.
fn open_or_init(g: &Global, args: &Args) -> Result<Repository> {
    let new_repo_option = args.init_options.first_given();
    if let Some(option) = new_repo_option
        && !args.init
    {
        return Err(Error::Invalid(format!(
            "{option} only applies when a repository is created: give it to `cairn init`, or to `cairn backup --init` of a repository that does not exist yet"
        )));
    }
    let options = args.init_options.options(g)?;
    let password = g.password().get()?;
    match (g.open_with(&password), new_repo_option) {
        (Ok(repo), Some(option)) => Err(Error::Invalid(format!(
            "{option}: repository {} exists, and its chunk sizes and compression level were fixed when it was created; leave the option out",
            repo.backend().location()
        ))),
        (Err(Error::RepositoryNotFound(_) | Error::BucketNotFound(_)), _) if args.init => {
            let backend = g.new_backend()?;
            let password = password.confirmed()?;
            let config = Repository::init(backend.clone(), &password, &options, &g.retry())?;
            g.info(format!(
                "created cairn repository {} at {}",
                config.id.short(),
                backend.location()
            ));
            Repository::open(backend, &password, g.cache_base().as_deref(), &g.retry())
        }
        (opened, _) => opened,
    }
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    // Values are checked before anything is read or stored.
    snapshot_time(args)?;
    if args.stdin || args.stdin_from_command {
        return run_stream(g, args);
    }
    let paths = args
        .paths
        .iter()
        .cloned()
        .chain(listed_paths(args)?)
        .map(|p| SourcePath::new(&p))
        .collect::<Result<Vec<_>>>()?;
    // Before the repository is opened (or created): with nothing to read, nothing is done.
    check_paths(&paths)?;
    for p in paths.iter().filter(|p| p.links_to_folder()) {
        let shown = p.path.display();
        warn(
            g,
            &format!(
                "{shown} is a symbolic link to a folder: the snapshot holds the link, not what the folder holds; give {shown}/ to back up the folder it points to"
            ),
        )?;
    }
    let excludes = Excludes::new(&ExcludeRules {
        patterns: PatternRules {
            patterns: args.excludes.clone(),
            pattern_files: args.exclude_files.clone(),
            ipatterns: args.iexcludes.clone(),
            ipattern_files: args.iexclude_files.clone(),
        },
        if_present: args.exclude_if_present.clone(),
        caches: args.exclude_caches,
        larger_than: args.exclude_larger_than,
    })?;
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
        xattrs: !args.no_xattrs,
        dry_run: args.dry_run,
        time: snapshot_time(args)?,
        own_dirs: g.own_dirs(),
    };
    let result = with_status_lines(g, |meter| backup(&repo, &opts, meter))?;
    report(g, args, &result)
}

/// `--stdin`, `--stdin-from-command`: one stream as one file.
fn run_stream(g: &Global, args: &Args) -> Result<i32> {
    stream_path(&args.stdin_filename)?;
    let source = if args.stdin_from_command {
        if args.paths.is_empty() {
            return Err(Error::Invalid(
                "--stdin-from-command: give the command after `--`, as in `cairn backup --stdin-from-command -- mysqldump mydb`".into(),
            ));
        }
        StreamSource::Command(
            args.paths
                .iter()
                .map(|p| p.clone().into_os_string())
                .collect(),
        )
    } else {
        if !args.paths.is_empty() {
            return Err(Error::Invalid(
                "--stdin backs up standard input only: leave out the paths, or back them up in another run".into(),
            ));
        }
        if std::io::stdin().is_terminal() {
            return Err(Error::Invalid(
                "--stdin: standard input is a terminal; pipe the data in, as in `pg_dump mydb | cairn backup --stdin --stdin-filename mydb.sql`".into(),
            ));
        }
        StreamSource::Stdin
    };
    let repo = open_or_init(g, args)?;
    let hostname = args.host.clone().unwrap_or_else(cairn::sysinfo::hostname);
    let recorded = format!("/{}", stream_path(&args.stdin_filename)?.join("/"));
    let snapshots = repo.snapshots()?;
    let parent = match &args.parent {
        Some(wanted) => Some(resolve(&snapshots, wanted)?.clone()),
        None => find_parent(&snapshots, &hostname, &[SourcePath::as_given(&recorded)]),
    };
    let opts = StreamOptions {
        name: args.stdin_filename.clone(),
        tags: args.tags.clone(),
        hostname,
        parent,
        dry_run: args.dry_run,
        time: snapshot_time(args)?,
    };
    let result = with_status_lines(g, |meter| backup_stream(&repo, &opts, source, meter))?;
    report(g, args, &result)
}

/// Runs a backup with its meter, printing a JSON status line a second with `--json`.
fn with_status_lines(
    g: &Global,
    run: impl FnOnce(&Meter) -> Result<BackupResult>,
) -> Result<BackupResult> {
    let status_lines = g.json && !g.quiet;
    let meter = Meter::bytes(g.progress(), status_lines, "backup");
    std::thread::scope(|s| {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        if status_lines {
            // Status lines once a second, as restic does.
            let meter = &meter;
            s.spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(Duration::from_secs(1))
                {
                    let _ = print_json(&serde_json::json!({
                        "message_type": "status",
                        "bytes_done": meter.done(),
                        "total_bytes": meter.total_so_far(),
                        "seconds_elapsed": meter.elapsed().as_secs(),
                    }));
                }
            });
        }
        let r = run(&meter).map_err(|e| match e {
            // What a user most wants to hear when the store went away mid-backup.
            Error::GaveUp { .. } => e.during(
                "",
                " (the next backup carries on where this one stopped: what it stored is kept)",
            ),
            e => e,
        });
        drop(stop_tx);
        r
    })
}

/// `--time`, when given.
fn snapshot_time(args: &Args) -> Result<Option<i64>> {
    let Some(text) = args.time.as_deref() else {
        return Ok(None);
    };
    let time = parse_time("--time", text)?;
    // Snapshot times are 64-bit nanoseconds (format-spec §8), as restic's and borg's.
    i64::try_from(time).map(Some).map_err(|_| {
        Error::Usage(format!(
            "--time {text:?} is beyond what a snapshot time can hold (1677-09-21 00:12:44 to 2262-04-11 23:47:16 UTC)"
        ))
    })
}

/// Prints what the backup did; the exit code says whether everything was read.
fn report(g: &Global, args: &Args, result: &BackupResult) -> Result<i32> {
    for note in &result.notes {
        if g.json {
            regardless(print_json(
                &serde_json::json!({"message_type": "note", "message": note}),
            ))?;
        } else if !g.quiet {
            errln!("note: {note}");
        }
    }
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
    for u in &result.failed {
        errln!(
            "error: {}: {} ({})",
            u.path.display(),
            u.error,
            u.kept.describe()
        );
    }
    for path in &result.changed {
        warn(
            g,
            &format!(
                "{}: file changed while it was read; the snapshot holds what was read, which may mix old and new content (back it up again once it is still, or from a dump or a file system snapshot)",
                path.display()
            ),
        )?;
    }
    // The snapshot is saved: its exit code must not depend on whether anyone reads.
    regardless(print_result(g, args, result))?;
    if !result.failed.is_empty() {
        errln!(
            "warning: {} files or folders could not be read, or not wholly (listed above)",
            result.summary.files_failed
        );
    }
    if result.failed.is_empty() && result.changed.is_empty() {
        Ok(EXIT_OK)
    } else {
        Ok(EXIT_PARTIAL)
    }
}

/// A warning: a `warning` line with `--json`, else on stderr (unless quiet).
fn warn(g: &Global, message: &str) -> Result<()> {
    if g.json {
        regardless(print_json(
            &serde_json::json!({"message_type": "warning", "message": message}),
        ))
    } else {
        if !g.quiet {
            errln!("warning: {message}");
        }
        Ok(())
    }
}

fn print_result(g: &Global, args: &Args, result: &BackupResult) -> Result<()> {
    if g.json {
        for u in &result.failed {
            print_json(&serde_json::json!({
                "message_type": "error",
                "path": u.path.to_string_lossy(),
                "path_escaped": escape_path(&u.path),
                "error": u.error,
                "kept": u.kept.as_str(),
                "fate": u.kept.describe(),
            }))?;
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
        outln!(
            "Files:  {} new, {} changed, {} unmodified",
            s.files_new,
            s.files_changed,
            s.files_unmodified
        )?;
        outln!(
            "Dirs:   {} new, {} changed, {} unmodified",
            s.dirs_new,
            s.dirs_changed,
            s.dirs_unmodified
        )?;
        outln!(
            "Added to the repository: {} ({} stored)",
            HumanBytes(s.data_added),
            HumanBytes(s.data_added_packed)
        )?;
        outln!(
            "processed {} files, {} in {:.2}s",
            s.total_files_processed,
            HumanBytes(s.total_bytes_processed),
            result.duration_secs
        )?;
        outln!(
            "requests: {} GET, {} PUT, {} HEAD, {} LIST, {} DELETE; {} up, {} down",
            r.get,
            r.put,
            r.head,
            r.list,
            r.delete,
            HumanBytes(r.bytes_up),
            HumanBytes(r.bytes_down)
        )?;
        match result.snapshot_id {
            Some(id) => outln!("snapshot {} saved", id.short())?,
            None => outln!("dry run: nothing was written")?,
        }
    }
    Ok(())
}
