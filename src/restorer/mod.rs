//! Restore: a whole snapshot or chosen paths of it, below a target directory, and the
//! lookups `ls` and `dump` share.
//!
//! File contents are written pack by pack (see `fetch`); directories get
//! their metadata last, deepest first, so writing their contents does not disturb their
//! mtimes. Every blob is checked against its id before a byte of it is written.

pub mod fetch;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsmeta::{apply_file_metadata, apply_metadata};
use crate::id::Id;
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind};
use fetch::FileTarget;

/// A name from a tree, checked to be one plain path component: a damaged or hostile tree
/// must not write outside the target (`..`, `/`, empty names).
pub fn safe_name(name: &[u8]) -> Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::corrupt(
            "tree",
            format!(
                "holds an invalid file name {:?}",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok(OsStr::from_bytes(name))
}

/// The components of an absolute snapshot path (`/home/me/x` → `home`, `me`, `x`).
pub fn path_components(path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: give a path inside the snapshot without `..`",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// The root of a snapshot as a node, so that `/` can be listed and restored like any dir.
pub fn root_node(tree: Id) -> Node {
    Node {
        name: Vec::new(),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: 0,
        ctime: 0,
        inode: 0,
        links: 0,
        size: 0,
        content: Vec::new(),
        subtree: Some(tree),
        target: Vec::new(),
        rdev: 0,
    }
}

/// Finds the node at an absolute path of a snapshot.
pub fn find_node(repo: &Repository, root: Id, path: &Path) -> Result<Node> {
    let mut node = root_node(root);
    for comp in path_components(path)? {
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => sub,
            _ => return Err(not_in_snapshot(path)),
        };
        let tree = repo.load_tree(&sub)?;
        node = tree
            .find(&comp)
            .cloned()
            .ok_or_else(|| not_in_snapshot(path))?;
    }
    Ok(node)
}

fn not_in_snapshot(path: &Path) -> Error {
    Error::Invalid(format!(
        "{} is not in the snapshot (see `cairn ls SNAPSHOT`)",
        path.display()
    ))
}

/// Calls `each` with every node below `node` (itself included when `with_self`), depth
/// first in name order, with its absolute snapshot path.
pub fn walk_nodes(
    repo: &Repository,
    path: &Path,
    node: &Node,
    with_self: bool,
    each: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    if with_self {
        each(path, node)?;
    }
    if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
        let tree = repo.load_tree(&sub)?;
        for child in &tree.nodes {
            let p = path.join(safe_name(&child.name)?);
            walk_nodes(repo, &p, child, true, each)?;
        }
    }
    Ok(())
}

/// Writes a file's content to `out` in order, reading neighbouring blobs together.
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let locs = node
        .content
        .iter()
        .map(|id| repo.locate(BlobType::Data, id))
        .collect::<Result<Vec<_>>>()?;
    let mut written = 0;
    for run in fetch::runs(&locs) {
        repo.read_run(&locs[run], &mut |_, plain| {
            let data = plain?;
            out.write_all(data)
                .map_err(|e| Error::Other(format!("writing output: {e}")))?;
            written += data.len() as u64;
            Ok(())
        })?;
    }
    Ok(written)
}

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Absolute snapshot paths to restore; empty means everything.
    pub includes: Vec<PathBuf>,
    pub verify: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    pub verified_files: u64,
    #[serde(skip)]
    pub errors: Vec<(PathBuf, String)>,
}

enum Selection {
    /// Restore this node and all below.
    All,
    /// Only a way to an included path: create the directory, restore nothing else.
    Passage,
    Skip,
}

fn select(path: &Path, includes: &[PathBuf]) -> Selection {
    if includes.is_empty() {
        return Selection::All;
    }
    if includes.iter().any(|i| path.starts_with(i)) {
        Selection::All
    } else if includes.iter().any(|i| i.starts_with(path)) {
        Selection::Passage
    } else {
        Selection::Skip
    }
}

/// Files planned per batch. Each batch's blobs are grouped by pack and read together, so
/// bigger batches mean fewer requests; these bounds keep the plan to some tens of MiB.
const BATCH_FILES: usize = 50_000;
const BATCH_BLOBS: usize = 400_000;
/// The first batch's file bound. Batches double from it up to `BATCH_FILES`, so writing
/// starts after a few hundred files are planned rather than after fifty thousand.
const FIRST_BATCH_FILES: usize = 256;

/// Batch bounds, growing from small (writing starts early) to large (few requests).
struct BatchLimit {
    files: usize,
}

impl BatchLimit {
    fn full(&self, files: usize, blobs: usize) -> bool {
        files >= self.files || blobs >= BATCH_BLOBS
    }

    fn grow(&mut self) {
        self.files = (self.files * 2).min(BATCH_FILES);
    }
}

pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &indicatif::ProgressBar,
) -> Result<RestoreSummary> {
    for inc in &opts.includes {
        find_node(repo, root, inc)?;
    }
    fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    let summary = Mutex::new(RestoreSummary::default());
    let record_error = |path: &Path, e: String| {
        let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
        s.errors.push((path.to_path_buf(), e));
    };
    // Called once per file when all its blobs are written (or one failed).
    let finish = |f: &FileTarget, descriptor: Option<&File>| {
        let result = match f.error() {
            Some(e) => Err(e),
            None => finish_file(repo, &f.dest, descriptor, &f.node, opts.verify)
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(verified) => {
                let mut s = summary.lock().unwrap_or_else(|p| p.into_inner());
                s.files += 1;
                s.bytes += f.node.size;
                s.verified_files += u64::from(verified);
            }
            Err(e) => {
                fetch::discard(f);
                record_error(&f.dest, e);
            }
        }
    };
    let workers = (crate::threads() * 2).max(repo.backend().write_concurrency());
    let stop = fetch::Stop::default();
    // The planner walks the snapshot, makes directories and hands over batches of files;
    // this thread writes one batch while the next is planned. A rendezvous, so that at
    // most two batches are held: the one being written and the next.
    let (batches, planned) = crossbeam_channel::bounded::<Vec<FileTarget>>(0);
    let plan = || -> Result<Vec<(PathBuf, Node)>> {
        // Owned by the planner, so the writer's loop ends when the planner does.
        let batches = batches;
        let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
        let mut batch: Vec<FileTarget> = Vec::new();
        let mut batch_blobs = 0;
        let mut limit = BatchLimit {
            files: FIRST_BATCH_FILES,
        };
        let stopped = || Error::Other("restore stopped: the writers are gone".into());
        let mut each = |path: &Path, node: &Node| -> Result<()> {
            if stop.reason().is_some() {
                return Err(Error::Other("restore stopped".into()));
            }
            let dest = opts.target.join(path.strip_prefix("/").unwrap_or(path));
            // Failures of one entry are recorded and the restore goes on; a failure of the
            // whole target (full, read-only) also stops it.
            let record_error = |dest: &Path, e: Error| {
                stop.note(&e);
                record_error(dest, e.to_string());
            };
            match node.kind {
                NodeKind::Dir => {
                    if let Err(e) = fs::create_dir_all(&dest) {
                        record_error(&dest, Error::io(&dest, e));
                    } else {
                        dirs.push((dest, node.clone()));
                    }
                }
                NodeKind::File => {
                    // Empty files are made here; the others by their first write.
                    let prepared = if node.content.is_empty() {
                        create_empty(&dest)
                    } else {
                        clear_destination(&dest)
                    };
                    if let Err(e) = prepared {
                        record_error(&dest, e);
                        return Ok(());
                    }
                    let target = FileTarget::new(dest, node.clone());
                    if node.content.is_empty() {
                        finish(&target, None);
                        return Ok(());
                    }
                    batch_blobs += node.content.len();
                    batch.push(target);
                    if limit.full(batch.len(), batch_blobs) {
                        batches
                            .send(std::mem::take(&mut batch))
                            .map_err(|_| stopped())?;
                        batch_blobs = 0;
                        limit.grow();
                    }
                }
                _ => match restore_special(&dest, node) {
                    Ok(()) => summary.lock().unwrap_or_else(|p| p.into_inner()).other += 1,
                    Err(e) => record_error(&dest, e),
                },
            }
            Ok(())
        };
        walk_selected(
            repo,
            Path::new("/"),
            &root_node(root),
            &opts.includes,
            &mut each,
        )?;
        batches.send(batch).map_err(|_| stopped())?;
        Ok(dirs)
    };
    let dirs = std::thread::scope(|s| {
        // The walk recurses once per directory level; give it room for deep trees.
        let planner = std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn_scoped(s, plan)
            .map_err(|e| Error::Other(format!("cannot start the restore planner: {e}")))?;
        for batch in planned {
            // Once stopped, batches are only drained until the planner sees it.
            if stop.reason().is_none() {
                fetch::write_contents(repo, &batch, workers, &stop, progress, &finish);
            }
        }
        planner
            .join()
            .map_err(|_| Error::Other("the restore planner panicked".into()))?
    });
    if let Some(reason) = stop.reason() {
        let s = summary.lock().unwrap_or_else(|p| p.into_inner());
        return Err(Error::Other(format!(
            "restore into {} stopped: {reason}. {} files ({} bytes) were restored before it; \
             files it was writing were removed, and directories keep the default mode and \
             times. Free space (or make the target writable) and run the restore again: \
             it starts over and replaces what is there",
            opts.target.display(),
            s.files,
            s.bytes
        )));
    }
    let mut dirs = dirs?;
    // Deepest first, so a parent's mtime is set after its children are complete.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    for (dest, node) in &dirs {
        if node.name.is_empty() {
            continue; // the snapshot root is the target itself
        }
        match apply_metadata(dest, node) {
            Ok(()) => summary.dirs += 1,
            Err(e) => summary.errors.push((dest.clone(), e.to_string())),
        }
    }
    progress.finish_and_clear();
    Ok(summary)
}

fn walk_selected(
    repo: &Repository,
    path: &Path,
    node: &Node,
    includes: &[PathBuf],
    each: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    match select(path, includes) {
        Selection::Skip => Ok(()),
        Selection::All => walk_nodes(repo, path, node, true, each),
        Selection::Passage => {
            each(path, node)?;
            if let Some(sub) = node.subtree {
                let tree = repo.load_tree(&sub)?;
                for child in &tree.nodes {
                    let p = path.join(safe_name(&child.name)?);
                    walk_selected(repo, &p, child, includes, each)?;
                }
            }
            Ok(())
        }
    }
}

/// Removes whatever is at `dest`, so that a restored file starts empty and an existing
/// symlink cannot redirect its writes.
fn clear_destination(dest: &Path) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        remove_any(dest)?;
    }
    Ok(())
}

/// Creates the file at `dest`, for files without content.
fn create_empty(dest: &Path) -> Result<()> {
    clear_destination(dest)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?;
    Ok(())
}

/// Verifies (if asked) a file whose content is written, then sets its metadata, through
/// `descriptor` when the file is still open; returns whether it was verified.
fn finish_file(
    repo: &Repository,
    dest: &Path,
    descriptor: Option<&File>,
    node: &Node,
    verify: bool,
) -> Result<bool> {
    if verify {
        verify_file(repo, dest, node)?;
    }
    match descriptor {
        Some(file) => apply_file_metadata(file, dest, node)?,
        None => apply_metadata(dest, node)?,
    }
    Ok(verify)
}

/// Re-reads a restored file and checks every blob's id against the snapshot.
fn verify_file(repo: &Repository, dest: &Path, node: &Node) -> Result<()> {
    let mut f = File::open(dest).map_err(|e| Error::io(dest, e))?;
    let mut buf = Vec::new();
    for id in &node.content {
        let loc = repo.locate(BlobType::Data, id)?;
        buf.clear();
        (&mut f)
            .take(u64::from(loc.entry.raw_length()))
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(dest, e))?;
        if repo.key().blob_id(&buf) != *id {
            return Err(Error::Other(format!(
                "{}: verification failed: restored content differs from the snapshot",
                dest.display()
            )));
        }
    }
    let mut rest = [0u8; 1];
    if f.read(&mut rest).map_err(|e| Error::io(dest, e))? != 0 {
        return Err(Error::Other(format!(
            "{}: verification failed: restored file is longer than in the snapshot",
            dest.display()
        )));
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let r = if m.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    r.map_err(|e| Error::io(path, e))
}

/// Symlinks, FIFOs and device nodes. Sockets are not restored (they are created by the
/// program that listens on them), which is what restic and tar do too.
fn restore_special(dest: &Path, node: &Node) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        remove_any(dest)?;
    }
    let err = |e: nix::Error| Error::io(dest, std::io::Error::from(e));
    use nix::sys::stat::{Mode, SFlag};
    match node.kind {
        NodeKind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&node.target), dest)
            .map_err(|e| Error::io(dest, e))?,
        NodeKind::Fifo => {
            nix::unistd::mkfifo(dest, Mode::from_bits_truncate(0o600)).map_err(err)?
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = if node.kind == NodeKind::Chardev {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(dest, kind, Mode::from_bits_truncate(0o600), node.rdev)
                .map_err(err)?
        }
        NodeKind::Socket => return Ok(()),
        NodeKind::File | NodeKind::Dir => unreachable!("handled by the caller"),
    }
    apply_metadata(dest, node)
}
