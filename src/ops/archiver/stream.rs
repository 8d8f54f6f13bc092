//! Backing up a stream: standard input, or the output of a command (a database dump), as
//! one file of a snapshot. The bytes go through the same chunker, deduplication, sealing
//! and packs as files do, as they arrive: nothing is held in memory beyond a chunk or
//! written to a temporary file.
//!
//! A command's output is a backup only if the command says it finished: one that exits
//! non-zero, or is killed, leaves no snapshot (its blobs are indexed, so a rerun uploads
//! nothing twice, and prune removes them if no snapshot ever names them).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, Read};
use std::path::{Component, Path};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::cbor;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Node, NodeKind, Tree, file_time};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::tree_walk::find_node;
use crate::repo::writer::{FlushPolicy, IndexWriter};
use crate::sysinfo::NameCache;

use super::file_worker::{self, FileJob, FileOutcome, FileResult};
use super::known::Known;
use super::packer::{self, BlobStore, Counters, Failure, Packer};
use super::{BackupResult, SnapshotRecord, adopt, save_snapshot};

/// Where the bytes come from.
pub enum StreamSource {
    /// This process's standard input.
    Stdin,
    /// The standard output of a command, run without a shell: program and arguments.
    Command(Vec<OsString>),
}

pub struct StreamOptions {
    /// The file's path in the snapshot (`db.sql`, `mysql/all.sql`); folders on the way
    /// are made.
    pub name: String,
    pub tags: Vec<String>,
    pub hostname: String,
    /// The parent snapshot, already chosen: only to count the file as changed or not.
    pub parent: Option<(Id, Snapshot)>,
    pub dry_run: bool,
    /// The snapshot's time, when not now (nanoseconds since the Unix epoch).
    pub time: Option<i64>,
}

/// How many lines of a command's standard error are kept to show.
const STDERR_LINES: usize = 20;

/// The components of a stream's path in the snapshot, or why the name cannot be one.
pub fn stream_path(name: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::Invalid(format!("--stdin-filename {name:?}: {why}"));
    let mut parts = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(bad("`..` cannot name a place in a snapshot")),
            Component::Prefix(_) => return Err(bad("not a path")),
        }
    }
    if parts.is_empty() {
        return Err(bad("give a file name, such as db.sql"));
    }
    Ok(parts)
}

pub fn backup_stream(
    repo: &Repository,
    opts: &StreamOptions,
    source: StreamSource,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let parts = stream_path(&opts.name)?;
    let recorded = format!("/{}", parts.join("/"));
    let started = Instant::now();
    let start_time = chrono::Utc::now();
    if !opts.dry_run {
        adopt::adopt_unlisted_packs(repo)?;
    }
    let mut input = match &source {
        StreamSource::Stdin => Input::Stdin,
        StreamSource::Command(argv) => Input::Command(RunningCommand::start(argv)?),
    };
    let known = Known::new(repo.index()?);
    let counters = Counters::default();
    let failure = Failure::default();
    let index = IndexWriter::new(repo, FlushPolicy::backup());
    let uploaders = repo.backend().write_concurrency().max(1);
    let (pack_tx, pack_rx) = crossbeam_channel::bounded(0);
    let packer = Packer::new(repo, pack_tx, uploaders);

    // No total: a stream's length is known once it ends.
    progress.message(&recorded);
    let threads = crate::threads();
    let stored = std::thread::scope(|s| {
        for _ in 0..uploaders {
            let rx = pack_rx.clone();
            let (packer, index, failure) = (&packer, &index, &failure);
            s.spawn(move || packer::run_uploader(packer, rx, index, opts.dry_run, failure));
        }
        drop(pack_rx);
        // The stream is one file to the file workers: one reads and cuts it, and hands
        // chunks to the others, so hashing and sealing run on every core.
        let (job_tx, res_rx) = file_worker::spawn_file_workers(
            s, threads, 1, &known, &counters, &packer, progress, &failure,
        );
        let job = FileJob {
            dir: 0,
            idx: 0,
            path: recorded.clone().into(),
            stream: Some(input.take_reader()),
        };
        let content = match job_tx.send(job) {
            Ok(()) => {
                drop(job_tx);
                stream_content(res_rx.recv(), &recorded)
            }
            Err(_) => Err(Error::Stopped("the file workers")),
        };
        let stored = content.and_then(|(content, size)| {
            let file = stream_node(parts.last().map_or("", String::as_str), size, content);
            let mut store = BlobStore::new(&packer, &counters)?;
            store_path(repo, &mut store, &known, &parts, file)
        });
        match stored {
            Ok(root) => packer.finish().map(|()| root),
            Err(e) => {
                packer.close();
                Err(e)
            }
        }
    });
    match &stored {
        // All of the output is stored: whether it is a backup is the command's to say.
        Ok(_) => input.finish()?,
        // Stored only in part: the command is stopped, and the failure is what went wrong.
        Err(_) => input.abandon(),
    }
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let (root, file) = stored?;
    index.finish()?;
    progress.finish();

    let mut summary = Summary::default();
    packer::counters_summary(&counters, &mut summary);
    count_against_parent(repo, opts, &recorded, &file, parts.len(), &mut summary);
    summary.total_files_processed = 1;
    summary.total_bytes_processed = file.size;
    let record = SnapshotRecord {
        paths: vec![recorded],
        tags: &opts.tags,
        hostname: &opts.hostname,
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        time: opts.time,
        dry_run: opts.dry_run,
    };
    let snapshot_id = save_snapshot(repo, record, root, &mut summary, start_time)?;
    Ok(BackupResult {
        snapshot_id,
        summary,
        duration_secs: started.elapsed().as_secs_f64(),
        requests: repo.request_stats(),
        failed: Vec::new(),
        changed: Vec::new(),
        left_out: Vec::new(),
        notes: input.notes(),
    })
}

/// The stream's content list and size from the worker's result.
fn stream_content(
    result: std::result::Result<FileResult, crossbeam_channel::RecvError>,
    what: &str,
) -> Result<(Vec<Id>, u64)> {
    match result.map(|r| r.outcome) {
        Ok(FileOutcome::Done { content, size, .. }) => Ok((content, size)),
        Ok(FileOutcome::Failed(e)) => Err(Error::Input(format!("reading {what}: {e}"))),
        // The workers stopped: the failure they recorded says why.
        Err(_) => Err(Error::Stopped("the file workers")),
    }
}

/// The stream's file node: mode 0644 and owner the user running the backup, as restic
/// records a stream; its time is now.
fn stream_node(name: &str, size: u64, content: Vec<Id>) -> Node {
    let now = chrono::Utc::now();
    let now = file_time(now.timestamp(), i64::from(now.timestamp_subsec_nanos()));
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let mut names = NameCache::default();
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        uid,
        gid,
        user: names.user(uid),
        group: names.group(gid),
        mtime: now,
        ctime: now,
        inode: 0,
        links: 1,
        size,
        content,
        subtree: None,
        target: Vec::new(),
        rdev: 0,
        dev: None,
        xattrs: Vec::new(),
        holes: Vec::new(),
    }
}

/// Stores the trees from the file's folder up to the root; returns the root tree and
/// the file node.
fn store_path(
    repo: &Repository,
    store: &mut BlobStore,
    known: &Known,
    parts: &[String],
    file: Node,
) -> Result<(Id, Node)> {
    let mut node = file.clone();
    for dir in parts[..parts.len() - 1].iter().rev() {
        let sub = store_tree(repo, store, known, Tree::new(vec![node]))?;
        let mut d = stream_node(dir, 0, Vec::new());
        d.kind = NodeKind::Dir;
        d.mode = 0o755;
        d.links = 2;
        d.subtree = Some(sub);
        node = d;
    }
    let root = store_tree(repo, store, known, Tree::new(vec![node]))?;
    Ok((root, file))
}

fn store_tree(repo: &Repository, store: &mut BlobStore, known: &Known, tree: Tree) -> Result<Id> {
    let bytes = cbor::encode(&tree);
    let id = repo.key().blob_id(&bytes);
    if known.claim(BlobType::Tree, &id)? {
        store.store(BlobType::Tree, id, &bytes)?;
    }
    Ok(id)
}

/// The file and its folders as new, changed or unmodified against the parent snapshot.
fn count_against_parent(
    repo: &Repository,
    opts: &StreamOptions,
    recorded: &str,
    file: &Node,
    depth: usize,
    summary: &mut Summary,
) {
    let before = opts
        .parent
        .as_ref()
        .and_then(|(_, p)| find_node(repo, p.tree, Path::new(recorded)).ok());
    let dirs = depth as u64 - 1;
    match before {
        None => {
            summary.files_new = 1;
            summary.dirs_new = dirs;
        }
        Some(b) if b.content == file.content => {
            summary.files_unmodified = 1;
            summary.dirs_unmodified = dirs;
        }
        Some(_) => {
            summary.files_changed = 1;
            summary.dirs_changed = dirs;
        }
    }
}

enum Input {
    Stdin,
    Command(RunningCommand),
}

impl Input {
    /// The bytes to back up, for a file worker to read.
    fn take_reader(&mut self) -> Box<dyn Read + Send> {
        match self {
            Input::Stdin => Box::new(StdinReader),
            Input::Command(c) => match c.stdout.take() {
                Some(out) => Box::new(out),
                None => Box::new(std::io::empty()),
            },
        }
    }

    /// Waits for the command; an error when it did not exit with status 0.
    fn finish(&mut self) -> Result<()> {
        match self {
            Input::Stdin => Ok(()),
            Input::Command(c) => c.wait(),
        }
    }

    fn abandon(&mut self) {
        if let Input::Command(c) = self {
            c.stop();
        }
    }

    fn notes(&self) -> Vec<String> {
        match self {
            Input::Command(c) if !c.stderr_tail().is_empty() => vec![format!(
                "{} wrote on its standard error:\n{}",
                c.shown,
                c.stderr_tail()
            )],
            _ => Vec::new(),
        }
    }
}

/// Standard input, read through the process's one handle.
struct StdinReader;

impl Read for StdinReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::stdin().lock().read(buf)
    }
}

/// A command whose standard output is being backed up; its standard error is read on a
/// thread of its own (so a chatty command never blocks on a full pipe) and its last lines
/// kept.
struct RunningCommand {
    child: Child,
    /// Until a worker takes it.
    stdout: Option<std::process::ChildStdout>,
    /// The command as the user would type it, for messages.
    shown: String,
    stderr: Option<std::thread::JoinHandle<VecDeque<String>>>,
    tail: VecDeque<String>,
    waited: bool,
}

impl RunningCommand {
    fn start(argv: &[OsString]) -> Result<RunningCommand> {
        let (program, args) = argv.split_first().ok_or_else(|| {
            Error::Invalid("--stdin-from-command: give the command after `--`".into())
        })?;
        let shown = argv
            .iter()
            .map(|a| shell_quoted(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Input(format!("cannot run `{shown}`: {e}; no snapshot was saved"))
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Internal("a piped command has no pipes".into()));
        };
        let stderr = std::thread::spawn(move || {
            let mut tail = VecDeque::with_capacity(STDERR_LINES);
            for line in std::io::BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(String::from_utf8_lossy(&line).into_owned());
            }
            tail
        });
        Ok(RunningCommand {
            child,
            stdout: Some(stdout),
            shown,
            stderr: Some(stderr),
            tail: VecDeque::new(),
            waited: false,
        })
    }

    fn stderr_tail(&self) -> String {
        self.tail
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait(&mut self) -> Result<()> {
        if self.waited {
            return Ok(());
        }
        self.waited = true;
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Input(format!("waiting for `{}`: {e}", self.shown)))?;
        if let Some(t) = self.stderr.take() {
            self.tail = t.join().unwrap_or_default();
        }
        if status.success() {
            return Ok(());
        }
        let how = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => format!("ended with {status}"),
        };
        let tail = if self.tail.is_empty() {
            String::from(" It wrote nothing on its standard error.")
        } else {
            format!(
                " The last lines of its standard error:\n{}",
                self.stderr_tail()
            )
        };
        Err(Error::CommandFailed(format!(
            "`{}` {how}: its output is not a backup, no snapshot was saved.{tail}",
            self.shown
        )))
    }
}

/// An argument as a POSIX shell would need it typed, for messages: as it is when it
/// holds only plain characters, else in single quotes.
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./=:,@%+-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

impl RunningCommand {
    /// Kills the command and reaps it: nobody reads its output any more.
    fn stop(&mut self) {
        if !self.waited {
            self.waited = true;
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for RunningCommand {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_paths_and_bad_ones_are_refused() {
        assert_eq!(stream_path("db.sql").unwrap(), vec!["db.sql"]);
        assert_eq!(
            stream_path("/mysql//all.sql").unwrap(),
            vec!["mysql", "all.sql"]
        );
        assert_eq!(stream_path("./a/./b").unwrap(), vec!["a", "b"]);
        for bad in ["", "/", ".", "../x", "a/../b"] {
            assert!(stream_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_are_shown_as_they_would_be_typed() {
        assert_eq!(shell_quoted("pg_dump"), "pg_dump");
        assert_eq!(shell_quoted("--host=db.local"), "--host=db.local");
        assert_eq!(shell_quoted("echo hi; exit 2"), "'echo hi; exit 2'");
        assert_eq!(shell_quoted("it's"), "'it'\\''s'");
        assert_eq!(shell_quoted(""), "''");
    }
}
