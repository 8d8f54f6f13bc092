//! Backup: walk the source, store what is new, write index files and then the snapshot.
//!
//! Write order is packs → index → snapshot: a snapshot is written only once every blob it
//! names is in an index file, so an interrupted backup never leaves a snapshot that points
//! at missing data. Packs an interrupted run uploaded but did not index are adopted by the
//! next backup (see [`adopt`]), so their blobs are not uploaded again.

pub(crate) mod adopt;
pub mod exclude;
mod file_worker;
mod known;
mod leave_out;
mod packer;
mod parent_trees;
mod path_trie;
pub(crate) mod source_walk;
mod sparse;
mod stream;
mod totals;
mod unread;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::{Snapshot, Summary};
use crate::ops::long_path::reachable;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::writer::{FlushPolicy, IndexWriter};
use crate::store::counting::RequestStats;
use exclude::Excludes;
use known::Known;
use leave_out::LeaveOut;
use packer::{BlobStore, Counters, Failure, Packer};
use parent_trees::ParentTrees;
use path_trie::PathTrie;
use source_walk::Walker;

pub use stream::{StreamOptions, StreamSource, backup_stream, stream_path};
pub use unread::{Kept, Unread};

pub struct BackupOptions {
    pub paths: Vec<SourcePath>,
    pub tags: Vec<String>,
    pub hostname: String,
    /// The parent snapshot, already chosen.
    pub parent: Option<(Id, Snapshot)>,
    pub excludes: Excludes,
    pub one_file_system: bool,
    /// Store extended attributes and POSIX ACLs (`--no-xattrs` turns it off).
    pub xattrs: bool,
    pub dry_run: bool,
    /// The snapshot's time, when not now (nanoseconds since the Unix epoch).
    pub time: Option<i64>,
    /// Folders of cairn's own (a local repository, the cache folder), left out wherever
    /// the walk meets them. The repository's index cache is always left out.
    pub own_dirs: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct BackupResult {
    /// None on a dry run.
    pub snapshot_id: Option<Id>,
    pub summary: Summary,
    pub duration_secs: f64,
    pub requests: RequestStats,
    #[serde(skip)]
    pub failed: Vec<Unread>,
    /// Files whose size, mtime or ctime changed while they were read: saved as read,
    /// which may mix old and new content.
    #[serde(skip)]
    pub changed: Vec<PathBuf>,
    /// Folders of cairn's own that the walk met and left out.
    #[serde(skip)]
    pub left_out: Vec<PathBuf>,
    /// What else the user should hear (a command's messages on its standard error).
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// A path to back up, absolute and lexically clean, as the snapshot records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePath {
    pub path: PathBuf,
    /// The path was spelled as a directory (`link/`, `link/.`): a symlink there is
    /// followed, as POSIX resolves a trailing slash, and what it points to is stored
    /// under the link's name. Otherwise a symlink is stored as the link.
    pub follow: bool,
}

impl SourcePath {
    /// The path as the user gave it, made absolute with [`absolute_path`].
    pub fn new(given: &Path) -> Result<SourcePath> {
        Ok(SourcePath {
            path: absolute_path(given)?,
            follow: spelled_as_directory(given),
        })
    }

    /// A path whose final symlink, if any, is stored as the link.
    pub fn as_given(path: impl Into<PathBuf>) -> SourcePath {
        SourcePath {
            path: path.into(),
            follow: false,
        }
    }

    /// Whether the path is a symlink to a folder that is stored as the link (it was not
    /// spelled `PATH/`): then the snapshot holds the link only, which is rarely what was
    /// meant.
    pub fn links_to_folder(&self) -> bool {
        !self.follow
            && std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink())
            && std::fs::metadata(&self.path).is_ok_and(|m| m.is_dir())
    }

    /// What the backup stores at the path: `lstat`, or `stat` when following, which
    /// must then find a directory (POSIX: a trailing slash on a file is ENOTDIR).
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        let path = reachable(&self.path)?;
        if !self.follow {
            return std::fs::symlink_metadata(&*path);
        }
        let meta = std::fs::metadata(&*path)?;
        if meta.is_dir() {
            Ok(meta)
        } else {
            Err(std::io::Error::from_raw_os_error(nix::libc::ENOTDIR))
        }
    }
}

/// Whether a path ends in `/`, `.` or `..`: names a directory rather than what is there.
fn spelled_as_directory(p: &Path) -> bool {
    let bytes = p.as_os_str().as_bytes();
    let last = bytes.rsplit(|b| *b == b'/').next().unwrap_or_default();
    bytes.ends_with(b"/") || last == b"." || last == b".."
}

/// The one rule for every path a user gives (backup paths, `--path` filters, paths inside
/// snapshots): lexically absolute, as restic makes them (Go's `filepath.Abs` and
/// `Clean`). A relative path is joined to the working directory; `.` and repeated slashes
/// go, and `..` removes the name before it, all without looking at the file system, so a
/// symlink on the way keeps its name (`deploy/current/public` stays that, wherever
/// `current` points today).
pub fn absolute_path(p: &Path) -> Result<PathBuf> {
    if p.as_os_str().is_empty() {
        return Err(Error::Invalid(
            "an empty path was given; name a file or folder (`.` for the working directory)".into(),
        ));
    }
    if p.is_absolute() {
        return Ok(clean(p));
    }
    Ok(clean(&working_dir(p)?.join(p)))
}

/// An absolute path without `.`, `..` and repeated slashes; `..` at `/` stays at `/`.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The working directory by the name the shell shows: `$PWD` when it is absolute and is
/// the same directory as getcwd's (as Go's `os.Getwd` does), so that `.` in a folder
/// reached through a symlink keeps the link's name; otherwise getcwd's.
fn working_dir(for_path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| {
        Error::Invalid(format!(
            "{}: cannot make this relative path absolute, the working directory is unavailable ({e}); give an absolute path",
            for_path.display()
        ))
    })?;
    let pwd = std::env::var_os("PWD").map(PathBuf::from);
    match pwd {
        Some(pwd) if pwd.is_absolute() && same_file(&pwd, &cwd) => Ok(pwd),
        _ => Ok(cwd),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Fails, naming each path and why, when none of the paths can be backed up; a backup
/// of some of them saves those and reports the others.
pub fn check_paths(paths: &[SourcePath]) -> Result<()> {
    let mut problems = Vec::new();
    for p in paths {
        match p.metadata() {
            Ok(_) => return Ok(()),
            Err(e) => problems.push(format!("{}: {e}", p.path.display())),
        }
    }
    Err(Error::Invalid(format!(
        "nothing to back up, no snapshot was written: {}",
        problems.join("; ")
    )))
}

/// The snapshot's record of the paths: sorted, each once.
fn recorded_paths(paths: &[SourcePath]) -> Vec<String> {
    let mut out: Vec<String> = paths
        .iter()
        .map(|p| p.path.to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Queue depths: small multiples of the worker count keep every stage busy while bounding
/// memory to a few chunks per thread.
const JOB_QUEUE: usize = 64;

pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    check_paths(&opts.paths)?;
    let started = Instant::now();
    let start_time = chrono::Utc::now();
    // Before anything is stored, so that the blobs of packs an interrupted run left are
    // reused. A dry run writes nothing, so it adopts nothing either.
    if !opts.dry_run {
        adopt::adopt_unlisted_packs(repo)?;
    }
    let threads = crate::threads();
    let known = Known::new(repo.index()?);
    let counters = Counters::default();
    let failure = Failure::default();
    let index = IndexWriter::new(repo, FlushPolicy::backup());
    let trie = PathTrie::new(&opts.paths);
    let mut own_dirs = opts.own_dirs.clone();
    own_dirs.push(repo.index()?.dir().to_path_buf());
    let leave_out = LeaveOut::new(&opts.excludes, &own_dirs);
    let uploaders = repo.backend().write_concurrency().max(1);

    // Rendezvous: a finished pack waits in the thread that filled it until an uploader
    // takes it, so at most one pack per uploader plus the open ones are held in memory.
    let (pack_tx, pack_rx) = crossbeam_channel::bounded(0);
    let packer = Packer::new(repo, pack_tx, uploaders);
    let parent_trees = ParentTrees::default();

    let walk_result = std::thread::scope(|s| {
        // However this ends, the tree loaders must stop for the scope to end.
        let _stop_loaders = CloseOnDrop(&parent_trees);
        if progress.watched() {
            let (trie, leave_out) = (&trie, &leave_out);
            s.spawn(move || totals::scan_totals(trie, leave_out, opts.one_file_system, progress));
        }
        for _ in 0..uploaders {
            let rx = pack_rx.clone();
            let (packer, index, failure) = (&packer, &index, &failure);
            s.spawn(move || packer::run_uploader(packer, rx, index, opts.dry_run, failure));
        }
        drop(pack_rx);
        if opts.parent.is_some() {
            for _ in 0..threads {
                let trees = &parent_trees;
                s.spawn(move || trees.run_loader(repo));
            }
        }
        let (job_tx, res_rx) = file_worker::spawn_file_workers(
            s, threads, JOB_QUEUE, &known, &counters, &packer, progress, &failure,
        );
        let (packer, known, counters, trees) = (&packer, &known, &counters, &parent_trees);
        let (trie, leave_out) = (&trie, &leave_out);
        let walk = move || -> Result<source_walk::WalkOutcome> {
            let walker = Walker::new(
                repo,
                leave_out,
                source_walk::WalkRules {
                    one_file_system: opts.one_file_system,
                    xattrs: opts.xattrs,
                },
                known,
                progress,
                trees,
                job_tx,
                res_rx,
                BlobStore::new(packer, counters)?,
            );
            let parent_root = opts.parent.as_ref().map(|(_, s)| s.tree);
            let outcome = walker.run(trie, parent_root);
            // Every file's blobs are in a pack once the walker has all results: the open
            // packs can be finished. On failure, only let the uploaders stop.
            match outcome {
                Ok(o) => packer.finish().map(|()| o),
                Err(e) => {
                    packer.close();
                    Err(e)
                }
            }
        };
        // The walker recurses once per directory level; give it room for deep trees.
        std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn_scoped(s, walk)
            .map_err(|e| Error::System(format!("cannot start the walker thread: {e}")))?
            .join()
            .map_err(|_| Error::Internal("the walker thread panicked".into()))?
    });
    // All stages have stopped here (the scope joined them). A stage's error explains a
    // walker that merely saw its queue close, so it comes first.
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let outcome = walk_result?;
    index.finish()?;
    progress.finish();

    let mut summary = outcome.summary;
    packer::counters_summary(&counters, &mut summary);
    let record = SnapshotRecord {
        paths: recorded_paths(&opts.paths),
        tags: &opts.tags,
        hostname: &opts.hostname,
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        time: opts.time,
        dry_run: opts.dry_run,
    };
    let snapshot_id = save_snapshot(repo, record, outcome.root, &mut summary, start_time)?;
    Ok(BackupResult {
        snapshot_id,
        summary,
        duration_secs: started.elapsed().as_secs_f64(),
        requests: repo.request_stats(),
        failed: outcome.failed,
        changed: outcome.changed,
        left_out: outcome.left_out,
        notes: Vec::new(),
    })
}

/// What a snapshot records besides its tree and figures, whatever the source.
struct SnapshotRecord<'a> {
    paths: Vec<String>,
    tags: &'a [String],
    hostname: &'a str,
    parent: Option<Id>,
    /// When not now (nanoseconds since the Unix epoch).
    time: Option<i64>,
    dry_run: bool,
}

/// Writes the snapshot once every blob it names is indexed (the caller finished the index
/// writer); `None` on a dry run.
fn save_snapshot(
    repo: &Repository,
    record: SnapshotRecord,
    root: Id,
    summary: &mut Summary,
    start_time: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Id>> {
    summary.backup_start = crate::format::to_nanos(start_time);
    summary.backup_end = crate::format::now_nanos();
    let snapshot = Snapshot {
        v: 1,
        time: record.time.unwrap_or(summary.backup_start),
        tree: root,
        paths: record.paths,
        hostname: record.hostname.to_string(),
        username: crate::sysinfo::username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        tags: record.tags.to_vec(),
        parent: record.parent,
        summary: Some(summary.clone()),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot_id = if record.dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snapshot)?)
    };
    repo.index()?.flush()?;
    Ok(snapshot_id)
}

struct CloseOnDrop<'a>(&'a ParentTrees);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The parent for a new backup: the latest snapshot of the same host and the same paths.
pub fn find_parent(
    snapshots: &[(Id, Snapshot)],
    hostname: &str,
    paths: &[SourcePath],
) -> Option<(Id, Snapshot)> {
    let wanted = recorded_paths(paths);
    snapshots
        .iter()
        .filter(|(_, s)| s.hostname == hostname && s.paths == wanted)
        .max_by_key(|(_, s)| s.time)
        .cloned()
}
