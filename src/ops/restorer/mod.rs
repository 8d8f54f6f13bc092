//! Restore: a whole snapshot or chosen paths of it, below a target directory, and the
//! lookups `ls` and `dump` share.
//!
//! File contents are written pack by pack (see `fetch`); directories get
//! their metadata last, deepest first, so writing their contents does not disturb their
//! mtimes. Every blob is checked against its id before a byte of it is written.

pub mod archived;
pub(crate) mod fetch;
pub(crate) mod target;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::interrupt;
use crate::ops::fsmeta::{
    XattrRefusal, XattrRefusals, apply_file_metadata, apply_file_xattrs, apply_metadata_at,
    apply_xattrs_at,
};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::walk::{find_node, root_node, safe_name};
use fetch::FileTarget;
use target::{Existing, Target};

/// Writes a file's content to `out` in order, reading neighbouring blobs together.
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let locs = node
        .content
        .iter()
        .map(|id| repo.locate(BlobType::Data, id))
        .collect::<Result<Vec<_>>>()?;
    let failed = |e: std::io::Error| Error::Output(format!("writing output: {e}"));
    let layout = node.layout();
    // Bytes written so far (the file's offset) and content bytes taken.
    let (mut written, mut taken) = (0u64, 0u64);
    for run in fetch::runs(&locs) {
        repo.read_run(&locs[run], &mut |_, plain| {
            let data = plain?;
            for (at, range) in layout.pieces(taken, data.len()) {
                write_zeros(out, at.saturating_sub(written)).map_err(failed)?;
                out.write_all(&data[range.clone()]).map_err(failed)?;
                written = at + range.len() as u64;
            }
            taken += data.len() as u64;
            Ok(())
        })?;
    }
    if !node.holes.is_empty() {
        // The hole at the end, if the file has one.
        write_zeros(out, node.size.saturating_sub(written)).map_err(failed)?;
        written = written.max(node.size);
    }
    Ok(written)
}

/// Writes `n` zero bytes: a hole of a sparse file, to a stream.
fn write_zeros(out: &mut dyn Write, mut n: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Absolute snapshot paths to restore; empty means everything.
    pub includes: Vec<PathBuf>,
    pub verify: bool,
    /// Restore extended attributes and POSIX ACLs (`--no-xattrs` turns it off).
    pub xattrs: bool,
    /// Leave every aligned block of zeros as a hole (`--sparse`); holes recorded at backup
    /// are made whatever this says.
    pub sparse: bool,
}

/// Puts a node's metadata on what the restore made or kept: owner, mode and times, then
/// its extended attributes unless told not to.
struct Meta {
    xattrs: bool,
    refused: XattrRefusals,
}

impl Meta {
    fn file(&self, file: &File, path: &Path, node: &Node) -> Result<()> {
        apply_file_metadata(file, path, node)?;
        if self.xattrs {
            apply_file_xattrs(file, path, node, &self.refused);
        }
        Ok(())
    }

    fn at(&self, dir: &OwnedFd, name: &OsStr, path: &Path, node: &Node) -> Result<()> {
        apply_metadata_at(dir, name, path, node)?;
        if self.xattrs {
            apply_xattrs_at(dir, name, path, node, &self.refused);
        }
        Ok(())
    }
}

/// What the planner hands back once the files are written: the directories made (their
/// metadata is set last) and the names to link.
type Plan = (Vec<(PathBuf, Node)>, Vec<LinkTo>);

/// A name of a file restored under another name first: made a hard link to it once that
/// one is in place.
struct LinkTo {
    rel: PathBuf,
    first: PathBuf,
    tmp: std::ffi::OsString,
}

#[derive(Debug, Default, Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, FIFOs and device nodes.
    pub other: u64,
    pub bytes: u64,
    pub verified_files: u64,
    /// Files already at the target with the snapshot's size, mtime and content: kept.
    pub files_unchanged: u64,
    /// Sockets, which are not restored (the program that listens on one makes it).
    pub skipped: u64,
    /// Files restored as hard links to another name of theirs (or found linked already).
    pub hard_links: u64,
    /// Kinds of extended attributes the target refused.
    pub xattrs_refused: Vec<XattrRefusal>,
    #[serde(skip)]
    pub errors: Vec<(PathBuf, String)>,
    /// Files not restored because a pack they need is archived (listed in
    /// `archived_packs`): the restore is to be run again once those are retrieved.
    pub files_waiting: u64,
    #[serde(skip)]
    pub archived_packs: Vec<archived::ArchivedPack>,
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

/// One entry met by the planner: where it goes and which directory holds it.
struct Visit<'a> {
    /// Below the target (`home/me/x` for the snapshot's `/home/me/x`).
    rel: &'a Path,
    node: &'a Node,
    /// The tree of the directory holding it (none for the snapshot root), which tells
    /// whether a temporary name is free.
    siblings: Option<&'a Tree>,
}

pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    for inc in &opts.includes {
        find_node(repo, root, inc)?;
    }
    let target = Target::open(&opts.target)?;
    let meta = Meta {
        xattrs: opts.xattrs,
        refused: XattrRefusals::default(),
    };
    let summary = Mutex::new(RestoreSummary::default());
    let count = |f: &dyn Fn(&mut RestoreSummary)| {
        f(&mut summary.lock().unwrap_or_else(|p| p.into_inner()));
    };
    // Messages of errors on one path often start with it; the path is said once.
    let record_error = |path: &Path, e: String| {
        let prefix = format!("{}: ", path.display());
        let message = e.strip_prefix(&prefix).unwrap_or(&e).to_string();
        count(&|s| s.errors.push((path.to_path_buf(), message.clone())))
    };
    // Called once per file when all its blobs are written (or one failed).
    let finish = |f: &FileTarget, descriptor: Option<&File>| {
        let result = match f.error() {
            Some(e) => Err(e),
            None => {
                finish_file(repo, &target, &meta, f, descriptor, opts).map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(verified) => count(&|s| {
                s.files += 1;
                s.bytes += f.node.size;
                s.verified_files += u64::from(verified);
            }),
            Err(_) if f.waits_for_archive() => {
                fetch::discard(&target, f);
                count(&|s| s.files_waiting += 1);
            }
            Err(e) => {
                fetch::discard(&target, f);
                record_error(&f.dest, e);
            }
        }
    };
    let workers = (crate::threads() * 2).max(repo.backend().write_concurrency());
    let stop = fetch::Stop::default();
    let archived = fetch::ArchivedPacks::default();
    // The planner walks the snapshot, makes directories and hands over batches of files;
    // this thread writes one batch while the next is planned. A rendezvous, so that at
    // most two batches are held: the one being written and the next.
    let (batches, planned) = crossbeam_channel::bounded::<Vec<FileTarget>>(0);
    let plan = || -> Result<Plan> {
        // Owned by the planner, so the writer's loop ends when the planner does.
        let batches = batches;
        let mut dirs: Vec<(PathBuf, Node)> = Vec::new();
        // The first name met of each file with several, and the others.
        let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let mut links: Vec<LinkTo> = Vec::new();
        let mut batch: Vec<FileTarget> = Vec::new();
        let mut batch_blobs = 0;
        let mut limit = BatchLimit {
            files: FIRST_BATCH_FILES,
        };
        let stopped = || Error::Stopped("the restore (its writers are gone)");
        let mut each = |v: Visit<'_>| -> Result<bool> {
            if stop.reason().is_some() {
                return Err(Error::Stopped("the restore"));
            }
            let dest = target.display(v.rel);
            // Failures of one entry are recorded and the restore goes on; a failure of the
            // whole target (full, read-only) also stops it.
            let record_error = |e: Error| {
                stop.note(&e);
                record_error(&dest, e.to_string());
            };
            let linked_to = v.node.link_key().and_then(|k| match first_names.get(&k) {
                Some(first) => Some(first.clone()),
                None => {
                    first_names.insert(k, v.rel.to_path_buf());
                    None
                }
            });
            if let Some(first) = linked_to {
                let name = v.rel.file_name().unwrap_or_default();
                links.push(LinkTo {
                    rel: v.rel.to_path_buf(),
                    first,
                    tmp: temp_name_among(name, v.siblings),
                });
                return Ok(false);
            }
            match v.node.kind {
                NodeKind::Dir => match target.ensure_dir(v.rel) {
                    Ok(()) => {
                        dirs.push((v.rel.to_path_buf(), v.node.clone()));
                        return Ok(true);
                    }
                    // Nothing below it can be restored: one error for the subtree.
                    Err(e) => record_error(e),
                },
                NodeKind::File => match plan_file(repo, &target, &meta, &v) {
                    Err(e) => record_error(e),
                    Ok(Planned::Unchanged) => count(&|s| s.files_unchanged += 1),
                    Ok(Planned::Write(f)) if f.node.content.is_empty() => {
                        match target.open_temp(&f.rel, &f.tmp, true) {
                            Ok(file) => finish(&f, Some(&file)),
                            Err(e) => record_error(e),
                        }
                    }
                    Ok(Planned::Write(f)) => {
                        batch_blobs += f.node.content.len();
                        batch.push(*f);
                        if limit.full(batch.len(), batch_blobs) {
                            batches
                                .send(std::mem::take(&mut batch))
                                .map_err(|_| stopped())?;
                            batch_blobs = 0;
                            limit.grow();
                        }
                    }
                },
                NodeKind::Socket => count(&|s| s.skipped += 1),
                _ => match restore_special(&target, &meta, &v) {
                    Ok(()) => count(&|s| s.other += 1),
                    Err(e) => record_error(e),
                },
            }
            Ok(false)
        };
        walk_selected(
            repo,
            PathBuf::new(),
            &root_node(root),
            None,
            &opts.includes,
            &mut each,
        )?;
        batches.send(batch).map_err(|_| stopped())?;
        Ok((dirs, links))
    };
    let dirs = std::thread::scope(|s| {
        // The walk recurses once per directory level; give it room for deep trees.
        let planner = std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn_scoped(s, plan)
            .map_err(|e| Error::System(format!("cannot start the restore planner: {e}")))?;
        for batch in planned {
            // Once stopped, batches are only drained until the planner sees it.
            if stop.reason().is_none() {
                fetch::write_contents(
                    repo,
                    &target,
                    &batch,
                    workers,
                    &stop,
                    &archived,
                    progress,
                    &finish,
                    opts.sparse,
                );
            }
        }
        planner
            .join()
            .map_err(|_| Error::Internal("the restore planner panicked".into()))?
    });
    if let Some(reason) = stop.reason() {
        let s = summary.lock().unwrap_or_else(|p| p.into_inner());
        progress.finish();
        if interrupt::requested() {
            return Err(Error::Interrupted(format!(
                "restore into {} interrupted; {} files ({} bytes) were restored before it, \
                 files it was writing were removed, and directories keep the default mode \
                 and times. Run the restore again to finish it: files already complete are \
                 kept",
                opts.target.display(),
                s.files,
                s.bytes
            )));
        }
        return Err(Error::Incomplete(format!(
            "restore into {} stopped: {reason}. {} files ({} bytes) were restored before it; \
             files it was writing were removed, and directories keep the default mode and \
             times. Free space, make the target writable or check the network and the \
             store, as the reason says, and run the restore again: files already complete \
             are kept",
            opts.target.display(),
            s.files,
            s.bytes
        )));
    }
    let (mut dirs, links) = dirs?;
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    // Before the directories' times are set: a link changes its directory's mtime.
    for l in &links {
        match target.link(&l.first, &l.rel, &l.tmp) {
            Ok(()) => summary.hard_links += 1,
            Err(e) => summary.errors.push((target.display(&l.rel), e.to_string())),
        }
    }
    // Deepest first, so a parent's mtime is set after its children are complete.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    summary.archived_packs = archived::sized(repo, archived.into_inner())?;
    for (rel, node) in &dirs {
        if node.name.is_empty() {
            continue; // the snapshot root is the target itself
        }
        let dest = target.display(rel);
        let applied = target
            .dir(rel)
            .and_then(|fd| meta.file(&File::from(fd), &dest, node));
        match applied {
            Ok(()) => summary.dirs += 1,
            Err(e) => summary.errors.push((dest, e.to_string())),
        }
    }
    summary.xattrs_refused = meta.refused.into_list();
    progress.finish();
    Ok(summary)
}

/// A temporary name for `name` that no entry of its directory in the snapshot has.
fn temp_name_among(name: &OsStr, siblings: Option<&Tree>) -> std::ffi::OsString {
    target::temp_name(name, |t| {
        siblings.is_some_and(|s| s.find(t.as_bytes()).is_some())
    })
}

/// Walks the selected part of the snapshot depth first in name order; `each` says of a
/// directory whether to descend into it (false when it could not be made).
fn walk_selected(
    repo: &Repository,
    rel: PathBuf,
    node: &Node,
    siblings: Option<&Tree>,
    includes: &[PathBuf],
    each: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
) -> Result<()> {
    let path = Path::new("/").join(&rel);
    let selection = select(&path, includes);
    if matches!(selection, Selection::Skip) {
        return Ok(());
    }
    let descend = each(Visit {
        rel: &rel,
        node,
        siblings,
    })?;
    if let (true, NodeKind::Dir, Some(sub)) = (descend, node.kind, node.subtree) {
        let tree = repo.load_tree(&sub)?;
        // Below an included path everything is selected: no need to ask again.
        let includes = if matches!(selection, Selection::All) {
            &[]
        } else {
            includes
        };
        for child in &tree.nodes {
            let rel = rel.join(safe_name(&child.name)?);
            walk_selected(repo, rel, child, Some(&tree), includes, each)?;
        }
    }
    Ok(())
}

/// What the planner decided for one file.
enum Planned {
    /// Already there, complete and identical.
    Unchanged,
    Write(Box<FileTarget>),
}

/// Looks at what stands where a file goes: a non-empty directory is a conflict (it is
/// never removed), a file of the snapshot's size and mtime whose content matches is kept
/// (so a restore run again after an interrupted one does not download it again), and
/// anything else is replaced when the new file is complete.
fn plan_file(repo: &Repository, target: &Target, meta: &Meta, v: &Visit<'_>) -> Result<Planned> {
    let (dir, name) = target.parent(v.rel)?;
    let dest = target.display(v.rel);
    match target.existing(&dir, name, v.rel)? {
        Existing::Dir if !target.is_empty_dir(&dir, name, v.rel)? => {
            return Err(target::conflict(&dest));
        }
        Existing::File { size, mtime } if size == v.node.size && mtime == v.node.mtime => {
            let file = target.open_existing(&dir, name, v.rel)?;
            if same_content(repo, &file, &dest, v.node)? {
                // Mode and owner may still differ; the mtime is the snapshot's already.
                meta.file(&file, &dest, v.node)?;
                return Ok(Planned::Unchanged);
            }
        }
        _ => {}
    }
    let tmp = temp_name_among(name, v.siblings);
    Ok(Planned::Write(Box::new(FileTarget::new(
        v.rel.to_path_buf(),
        dest,
        tmp,
        v.node.clone(),
    ))))
}

/// Verifies (if asked) a file whose content is written, sets its metadata and moves it
/// into place; returns whether it was verified. `descriptor` is the temporary file's, when
/// it is still open.
fn finish_file(
    repo: &Repository,
    target: &Target,
    meta: &Meta,
    f: &FileTarget,
    descriptor: Option<&File>,
    opts: &RestoreOptions,
) -> Result<bool> {
    let verify = opts.verify;
    let reopened;
    let file = match descriptor {
        Some(file) => file,
        None => {
            reopened = target.open_temp(&f.rel, &f.tmp, false)?;
            &reopened
        }
    };
    if !f.node.holes.is_empty() || opts.sparse {
        // Holes at the end are not written: the length makes them.
        file.set_len(f.node.size)
            .map_err(|e| Error::io(&f.dest, e))?;
    }
    if verify && !same_content(repo, file, &f.dest, &f.node)? {
        return Err(Error::VerifyFailed(f.dest.clone()));
    }
    meta.file(file, &f.dest, &f.node)?;
    let (dir, name) = target.parent(&f.rel)?;
    target.commit(&dir, &f.tmp, name, &f.rel)?;
    Ok(verify)
}

/// Reads `file` and checks it holds exactly the snapshot's content: its length, every
/// blob's id where the holes put it, and zeros in the holes.
fn same_content(repo: &Repository, file: &File, dest: &Path, node: &Node) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata().map_err(|e| Error::io(dest, e))?.len();
    if len != node.size {
        return Ok(false);
    }
    let layout = node.layout();
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for id in &node.content {
        let loc = repo.locate(BlobType::Data, id)?;
        buf.resize(loc.entry.raw_length as usize, 0);
        for (at, range) in layout.pieces(offset, buf.len()) {
            match file.read_exact_at(&mut buf[range], at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(Error::io(dest, e)),
            }
        }
        if repo.key().blob_id(&buf) != *id {
            return Ok(false);
        }
        offset += buf.len() as u64;
    }
    for h in &node.holes {
        if !reads_as_zeros(file, h.offset, h.offset + h.length).map_err(|e| Error::io(dest, e))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `start..end` of `file` holds only zeros; its own holes are not read.
fn reads_as_zeros(file: &File, start: u64, end: u64) -> std::io::Result<bool> {
    use nix::unistd::{Whence, lseek};
    use std::os::unix::fs::FileExt;
    let seek = |at: u64, whence| -> std::io::Result<u64> {
        match lseek(file, i64::try_from(at).unwrap_or(i64::MAX), whence) {
            Ok(o) => Ok((o as u64).min(end)),
            Err(nix::errno::Errno::ENXIO) => Ok(end),
            // A file system that cannot tell: read all of it.
            Err(nix::errno::Errno::EINVAL) if matches!(whence, Whence::SeekData) => Ok(at),
            Err(nix::errno::Errno::EINVAL) => Ok(end),
            Err(e) => Err(e.into()),
        }
    };
    let mut buf = vec![0u8; 1024 * 1024];
    let mut at = seek(start, Whence::SeekData)?;
    while at < end {
        let data_end = seek(at, Whence::SeekHole)?.max(at + 1).min(end);
        while at < data_end {
            let n = (data_end - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        at = seek(at, Whence::SeekData)?;
    }
    Ok(true)
}

/// Symlinks, FIFOs and device nodes: made under a temporary name, given their metadata,
/// and moved into place.
fn restore_special(target: &Target, meta: &Meta, v: &Visit<'_>) -> Result<()> {
    let (dir, name) = target.parent(v.rel)?;
    let dest = target.display(v.rel);
    if target.existing(&dir, name, v.rel)? == Existing::Dir
        && !target.is_empty_dir(&dir, name, v.rel)?
    {
        return Err(target::conflict(&dest));
    }
    let tmp = temp_name_among(name, v.siblings);
    target::remove_temp(&dir, &tmp);
    let err = |e: nix::Error| Error::io(&dest, std::io::Error::from(e));
    use nix::sys::stat::{Mode, SFlag};
    let node = v.node;
    match node.kind {
        NodeKind::Symlink => {
            nix::unistd::symlinkat(OsStr::from_bytes(&node.target), &dir, tmp.as_os_str())
                .map_err(err)?
        }
        NodeKind::Fifo => {
            nix::unistd::mkfifoat(&dir, tmp.as_os_str(), Mode::from_bits_truncate(0o600))
                .map_err(err)?
        }
        NodeKind::Chardev | NodeKind::Blockdev => {
            let kind = if node.kind == NodeKind::Chardev {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            nix::sys::stat::mknodat(
                &dir,
                tmp.as_os_str(),
                kind,
                Mode::from_bits_truncate(0o600),
                node.rdev,
            )
            .map_err(err)?
        }
        NodeKind::File | NodeKind::Dir | NodeKind::Socket => {
            unreachable!("handled by the caller")
        }
    }
    let placed = meta
        .at(&dir, &tmp, &dest, node)
        .and_then(|()| target.commit(&dir, &tmp, name, v.rel));
    if placed.is_err() {
        target::remove_temp(&dir, &tmp);
    }
    placed
}
