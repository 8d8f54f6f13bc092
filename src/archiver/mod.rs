//! Backup: walk the source, store what is new, write index files and then the snapshot.
//!
//! Write order is packs → index → snapshot: a snapshot is written only once every blob it
//! names is in an index file, so an interrupted backup never leaves a snapshot that points
//! at missing data. Packs an interrupted run uploaded but did not index are adopted by the
//! next backup (see [`adopt`]), so their blobs are not uploaded again.

pub mod adopt;
pub mod exclude;
mod parent_trees;
pub mod stages;
pub mod walk;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::backend::counting::RequestStats;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::{Snapshot, Summary};
use exclude::Excludes;
use parent_trees::ParentTrees;
use stages::{BlobStore, Counters, Failure, FileWorker, Known, Packer, PendingIndex};
use walk::{PathTrie, Walker};

pub struct BackupOptions {
    /// Absolute, normalised paths.
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub hostname: String,
    /// The parent snapshot, already chosen.
    pub parent: Option<(Id, Snapshot)>,
    pub excludes: Excludes,
    pub one_file_system: bool,
    pub dry_run: bool,
    /// The snapshot's time, when not now (nanoseconds since the Unix epoch).
    pub time: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct BackupResult {
    /// None on a dry run.
    pub snapshot_id: Option<Id>,
    pub summary: Summary,
    pub duration_secs: f64,
    pub requests: RequestStats,
    #[serde(skip)]
    pub failed: Vec<(PathBuf, String)>,
}

/// Absolute form of a path the user gave, without following a final symlink: the parent
/// folder is canonicalised, the last name kept as given.
pub fn absolute_path(p: &std::path::Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = parent.canonicalize().map_err(|e| Error::io(parent, e))?;
            Ok(parent.join(name))
        }
        // `/` itself, or a path ending in `..`.
        _ => abs.canonicalize().map_err(|e| Error::io(&abs, e)),
    }
}

/// Queue depths: small multiples of the worker count keep every stage busy while bounding
/// memory to a few chunks per thread.
const JOB_QUEUE: usize = 64;

pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &indicatif::ProgressBar,
) -> Result<BackupResult> {
    let started = Instant::now();
    let start_time = chrono::Utc::now();
    // Before anything is stored, so that the blobs of packs an interrupted run left are
    // reused. A dry run writes nothing, so it adopts nothing either.
    if !opts.dry_run {
        adopt::adopt_unlisted_packs(repo)?;
    }
    let threads = crate::threads();
    let known = Known::new(repo.index());
    let counters = Counters::default();
    let failure = Failure::default();
    let pending = PendingIndex::default();
    let trie = PathTrie::new(&opts.paths);
    let uploaders = repo.backend().write_concurrency().max(1);

    let (job_tx, job_rx) = crossbeam_channel::bounded(JOB_QUEUE);
    let (res_tx, res_rx) = crossbeam_channel::unbounded();
    // Rendezvous: a finished pack waits in the thread that filled it until an uploader
    // takes it, so at most one pack per uploader plus the open ones are held in memory.
    let (pack_tx, pack_rx) = crossbeam_channel::bounded(0);
    let packer = Packer::new(repo, pack_tx, uploaders);
    let parent_trees = ParentTrees::default();

    let walk_result = std::thread::scope(|s| {
        // However this ends, the tree loaders must stop for the scope to end.
        let _stop_loaders = CloseOnDrop(&parent_trees);
        if !progress.is_hidden() {
            let bar = progress.clone();
            let (paths, excludes) = (&opts.paths, &opts.excludes);
            s.spawn(move || walk::scan_totals(paths, excludes, &bar));
        }
        for _ in 0..uploaders {
            let rx = pack_rx.clone();
            let (packer, pending, failure) = (&packer, &pending, &failure);
            s.spawn(move || stages::run_uploader(packer, rx, pending, opts.dry_run, failure));
        }
        drop(pack_rx);
        if opts.parent.is_some() {
            for _ in 0..threads {
                let trees = &parent_trees;
                s.spawn(move || trees.run_loader(repo));
            }
        }
        // One chunk may wait for an idle worker (see `stages::Handoff`).
        let (handoff_tx, handoff_rx) = crossbeam_channel::bounded(1);
        for _ in 0..threads {
            let (jobs, results) = (job_rx.clone(), res_tx.clone());
            let worker = FileWorker {
                known: &known,
                counters: &counters,
                packer: &packer,
                progress,
                handoffs: handoff_rx.clone(),
            };
            let (failure, handoff) = (&failure, handoff_tx.clone());
            s.spawn(move || worker.run(jobs, handoff, results, failure));
        }
        drop((job_rx, res_tx, handoff_tx, handoff_rx));
        let (packer, known, counters, trees) = (&packer, &known, &counters, &parent_trees);
        let walk = move || -> Result<walk::WalkOutcome> {
            let walker = Walker::new(
                repo,
                &opts.excludes,
                opts.one_file_system,
                known,
                counters,
                progress,
                trees,
                job_tx,
                res_rx,
                BlobStore::new(packer, counters)?,
            );
            let parent_root = opts.parent.as_ref().map(|(_, s)| s.tree);
            let outcome = walker.run(&trie, parent_root);
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
            .map_err(|e| Error::Other(format!("cannot start the walker thread: {e}")))?
            .join()
            .map_err(|_| Error::Other("the walker thread panicked".into()))?
    });
    // All stages have stopped here (the scope joined them). A stage's error explains a
    // walker that merely saw its queue close, so it comes first.
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let outcome = walk_result?;
    pending.flush(repo, opts.dry_run)?;
    progress.finish_and_clear();

    let mut summary = outcome.summary;
    walk::counters_summary(&counters, &mut summary);
    summary.backup_start = start_time.timestamp_nanos_opt().unwrap_or(0);
    summary.backup_end = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let mut paths: Vec<String> = opts
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    paths.sort();
    let snapshot = Snapshot {
        v: 1,
        time: opts.time.unwrap_or(summary.backup_start),
        tree: outcome.root,
        paths,
        hostname: opts.hostname.clone(),
        username: crate::sysinfo::username(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        tags: opts.tags.clone(),
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        summary: Some(summary.clone()),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let snapshot_id = if opts.dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snapshot)?)
    };
    repo.index().flush()?;
    Ok(BackupResult {
        snapshot_id,
        summary,
        duration_secs: started.elapsed().as_secs_f64(),
        requests: repo.request_stats(),
        failed: outcome.failed,
    })
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
    paths: &[PathBuf],
) -> Option<(Id, Snapshot)> {
    let mut wanted: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    wanted.sort();
    snapshots
        .iter()
        .filter(|(_, s)| s.hostname == hostname && s.paths == wanted)
        .max_by_key(|(_, s)| s.time)
        .cloned()
}
