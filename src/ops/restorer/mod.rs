//! Restore: a whole snapshot or chosen paths of it, below a target directory, and the
//! lookups `ls` and `dump` share.
//!
//! File contents are written pack by pack (see `fetch`); directories get
//! their metadata last, deepest first, so writing their contents does not disturb their
//! mtimes. Every blob is checked against its id before a byte of it is written.

pub mod archived;
mod compare;
pub(crate) mod fetch;
pub mod select;
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
use compare::same_content;
use fetch::FileTarget;
use select::{Choice, Selection};
use target::{Existing, Found, Target};

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

/// What a restore does with a file that already stands where the snapshot puts one
/// (restic's `--overwrite`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Read it: identical is kept, different is replaced (or, when big, updated where
    /// its blobs differ).
    #[default]
    Always,
    /// As `Always`, but one of the snapshot's size and mtime counts as identical unread.
    IfChanged,
    /// Replace it only if the snapshot's entry has the later mtime.
    IfNewer,
    /// Leave every existing entry as it is.
    Never,
}

/// What happens (or, in a dry run, would happen) to one path of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Nothing stood there.
    Create,
    /// Something else stood there and is replaced whole.
    Replace,
    /// A file that differs is rewritten only where its blobs differ.
    Update,
    /// Already the snapshot's content; its metadata is set.
    Unchanged,
    /// Left as it is, as `--overwrite` says.
    Keep,
    /// Not in the snapshot: removed by `--delete`.
    Delete,
}

/// One path and what the restore does with it.
#[derive(Debug)]
pub struct Action<'a> {
    pub change: Change,
    /// The full path in the target.
    pub path: &'a Path,
    /// `file`, `dir`, `symlink`, ... (`hardlink` for a further name of a file).
    pub kind: &'static str,
    /// Bytes to fetch for it.
    pub bytes: u64,
}

/// Told every action as it is decided (from the planner's thread).
pub type Report<'a> = dyn Fn(&Action<'_>) + Sync + 'a;

pub struct RestoreOptions {
    pub target: PathBuf,
    /// Which entries to restore (`--include`, `--exclude`).
    pub choice: Choice,
    pub verify: bool,
    /// Restore extended attributes and POSIX ACLs (`--no-xattrs` turns it off).
    pub xattrs: bool,
    /// Leave every aligned block of zeros as a hole (`--sparse`); holes recorded at backup
    /// are made whatever this says.
    pub sparse: bool,
    pub overwrite: Overwrite,
    /// Remove, in every restored folder, what the snapshot does not hold there.
    pub delete: bool,
    /// Absolute snapshot paths at and below which `delete` removes; empty for anywhere
    /// the restore takes whole.
    pub delete_within: Vec<PathBuf>,
    /// Decide and report every action, change nothing.
    pub dry_run: bool,
}

impl RestoreOptions {
    /// Options restoring everything into `target` as the command line does by default.
    pub fn new(target: PathBuf) -> RestoreOptions {
        RestoreOptions {
            target,
            choice: Choice::default(),
            verify: false,
            xattrs: true,
            sparse: false,
            overwrite: Overwrite::Always,
            delete: false,
            delete_within: Vec::new(),
            dry_run: false,
        }
    }

    /// Whether `--delete` may remove entries in the snapshot folder `path` (absolute),
    /// which the restore takes whole.
    fn cleans(&self, path: &Path) -> bool {
        self.delete
            && (self.delete_within.is_empty()
                || self.delete_within.iter().any(|w| path.starts_with(w)))
    }
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
    /// Files already at the target with the snapshot's content: kept.
    pub files_unchanged: u64,
    /// Of `files`: those rewritten only where they differed.
    pub files_updated: u64,
    /// Entries left as they stood because `--overwrite` said so.
    pub kept: u64,
    /// Entries removed by `--delete` (a folder counts once, with all in it).
    pub deleted: u64,
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

/// Files planned per batch. Each batch's blobs are grouped by pack and read together, so
/// bigger batches mean fewer requests; these bounds keep the plan to some tens of MiB.
const BATCH_FILES: usize = 50_000;
const BATCH_BLOBS: usize = 400_000;
/// The first batch's file bound. Batches double from it up to `BATCH_FILES`, so writing
/// starts after a few hundred files are planned rather than after fifty thousand.
const FIRST_BATCH_FILES: usize = 256;
/// Files at least this big that differ are updated in place, blob by blob, rather than
/// written again beside and renamed over (which costs their size in free space and
/// time). Smaller ones, most files of a system, are replaced whole: a reader never sees
/// one half written.
const IN_PLACE_MIN: u64 = 8 * 1024 * 1024;

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

/// One entry met by the walk: where it goes and which directory holds it.
pub(crate) struct Visit<'a> {
    /// Below the target (`home/me/x` for the snapshot's `/home/me/x`).
    rel: &'a Path,
    node: &'a Node,
    /// The tree of the directory holding it (none for the snapshot root), which tells
    /// whether a temporary name is free.
    siblings: Option<&'a Tree>,
    /// The directory's own tree, for a directory.
    tree: Option<&'a Tree>,
    selection: Selection,
    /// Its folder is restored whole.
    within_all: bool,
}

impl Visit<'_> {
    /// The snapshot path.
    fn path(&self) -> PathBuf {
        Path::new("/").join(self.rel)
    }
}

/// The summary, shared by the planner and the writers.
struct Tally(Mutex<RestoreSummary>);

impl Tally {
    fn count(&self, f: impl FnOnce(&mut RestoreSummary)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Messages of errors on one path often start with it; the path is said once.
    fn error(&self, path: &Path, e: String) {
        let prefix = format!("{}: ", path.display());
        let message = e.strip_prefix(&prefix).unwrap_or(&e).to_string();
        self.count(|s| s.errors.push((path.to_path_buf(), message)));
    }
}

pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    report: &Report<'_>,
) -> Result<RestoreSummary> {
    for inc in &opts.choice.paths {
        find_node(repo, root, inc)?;
    }
    let cleans_root = (opts.choice.whole_root() && opts.cleans(Path::new("/")))
        || opts.choice.paths.iter().any(|p| p == Path::new("/"));
    if opts.delete && cleans_root {
        let target = opts.target.canonicalize().unwrap_or(opts.target.clone());
        if target == Path::new("/") {
            return Err(Error::Invalid(
                "--delete with --target / would remove everything on / that the snapshot does \
                 not hold; name what to restore with --include (or restore elsewhere)"
                    .into(),
            ));
        }
    }
    let target = if opts.dry_run {
        Target::peek(&opts.target)?
    } else {
        Target::open(&opts.target)?
    };
    let meta = Meta {
        xattrs: opts.xattrs,
        refused: XattrRefusals::default(),
    };
    let tally = Tally(Mutex::new(RestoreSummary::default()));
    // Called once per file when all its blobs are written (or one failed).
    let finish = |f: &FileTarget, descriptor: Option<&File>| {
        let result = match f.error() {
            Some(e) => Err(e),
            None => {
                finish_file(repo, &target, &meta, f, descriptor, opts).map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(verified) => tally.count(|s| {
                s.files += 1;
                s.bytes += f.node.size;
                s.verified_files += u64::from(verified);
                s.files_updated += u64::from(f.in_place);
            }),
            Err(_) if f.waits_for_archive() => {
                fetch::discard(&target, f);
                tally.count(|s| s.files_waiting += 1);
            }
            Err(e) => {
                fetch::discard(&target, f);
                tally.error(&f.dest, e);
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
        let mut planner = Planner {
            repo,
            target: &target,
            meta: &meta,
            opts,
            report,
            stop: &stop,
            tally: &tally,
            finish: &finish,
            batches,
            dirs: Vec::new(),
            first_names: HashMap::new(),
            links: Vec::new(),
            kept_firsts: Default::default(),
            batch: Vec::new(),
            batch_blobs: 0,
            limit: BatchLimit {
                files: FIRST_BATCH_FILES,
            },
            pending: Vec::new(),
        };
        walk_selected(
            repo,
            PathBuf::new(),
            &root_node(root),
            None,
            &opts.choice,
            false,
            &mut |v| planner.visit(v),
        )?;
        planner.send_batch()?;
        Ok((planner.dirs, planner.links))
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
        let s = tally.0.lock().unwrap_or_else(|p| p.into_inner());
        progress.finish();
        let left = "files it was writing were removed (big files it was updating in place \
                    hold part of the snapshot's content until the restore is run again), and \
                    directories keep the default mode and times";
        if interrupt::requested() {
            return Err(Error::Interrupted(format!(
                "restore into {} interrupted; {} files ({} bytes) were restored before it, \
                 {left}. Run the restore again to finish it: files already complete are kept",
                opts.target.display(),
                s.files,
                s.bytes
            )));
        }
        return Err(Error::Incomplete(format!(
            "restore into {} stopped: {reason}. {} files ({} bytes) were restored before it; \
             {left}. Free space, make the target writable or check the network and the \
             store, as the reason says, and run the restore again: files already complete \
             are kept",
            opts.target.display(),
            s.files,
            s.bytes
        )));
    }
    let (mut dirs, links) = dirs?;
    let mut summary = tally.0.into_inner().unwrap_or_else(|p| p.into_inner());
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

/// Walks the snapshot, decides what to do with every chosen entry against what stands
/// in the target, does it (directories, special files, deletions) or hands it to the
/// writers (file contents) in batches, and reports each action.
struct Planner<'a> {
    repo: &'a Repository,
    target: &'a Target,
    meta: &'a Meta,
    opts: &'a RestoreOptions,
    report: &'a Report<'a>,
    stop: &'a fetch::Stop,
    tally: &'a Tally,
    finish: &'a (dyn Fn(&FileTarget, Option<&File>) + Sync),
    batches: crossbeam_channel::Sender<Vec<FileTarget>>,
    dirs: Vec<(PathBuf, Node)>,
    /// The first name met of each file with several.
    first_names: HashMap<(u64, u64), PathBuf>,
    links: Vec<LinkTo>,
    /// Link groups whose first name was kept as it stood: a further name that is already
    /// its link is unchanged too.
    kept_firsts: std::collections::HashSet<(u64, u64)>,
    batch: Vec<FileTarget>,
    batch_blobs: usize,
    limit: BatchLimit,
    /// Folders walked into that hold nothing chosen so far (with include patterns):
    /// made when something below them is, with whether that was tried.
    pending: Vec<(PathBuf, Node, bool)>,
}

impl Planner<'_> {
    fn visit(&mut self, v: Visit<'_>) -> Result<bool> {
        if self.stop.reason().is_some() {
            return Err(Error::Stopped("the restore"));
        }
        while self
            .pending
            .last()
            .is_some_and(|p| !v.rel.starts_with(&p.0))
        {
            self.pending.pop();
        }
        if v.selection == Selection::Passage {
            self.pending
                .push((v.rel.to_path_buf(), v.node.clone(), false));
            return Ok(true);
        }
        if !self.make_pending() {
            return Ok(false);
        }
        let dest = self.target.display(v.rel);
        match self.place(&v, &dest) {
            Ok(descend) => Ok(descend),
            Err(e @ Error::Stopped(_)) => Err(e),
            // Failures of one entry are recorded and the restore goes on; a failure of the
            // whole target (full, read-only) also stops it.
            Err(e) => {
                self.stop.note(&e);
                self.tally.error(&dest, e.to_string());
                Ok(false)
            }
        }
    }

    /// Makes the folders on the way to the entry met now; false if one failed (its
    /// error is recorded once).
    fn make_pending(&mut self) -> bool {
        let mut made = true;
        for i in 0..self.pending.len() {
            if self.pending[i].2 {
                continue;
            }
            self.pending[i].2 = true;
            let (rel, node) = (self.pending[i].0.clone(), self.pending[i].1.clone());
            if let Err(e) = self.dir(&rel, &node, None) {
                self.stop.note(&e);
                self.tally.error(&self.target.display(&rel), e.to_string());
                made = false;
            }
        }
        made
    }

    fn tell(&self, change: Change, dest: &Path, kind: &'static str, bytes: u64) {
        (self.report)(&Action {
            change,
            path: dest,
            kind,
            bytes,
        });
    }

    /// Whether `--overwrite` leaves what stands there.
    fn keeps(&self, found: &Found, node: &Node) -> bool {
        match self.opts.overwrite {
            Overwrite::Never => true,
            Overwrite::IfNewer => node.mtime <= found.mtime,
            Overwrite::Always | Overwrite::IfChanged => false,
        }
    }

    fn keep(&self, dest: &Path, kind: &'static str) {
        self.tell(Change::Keep, dest, kind, 0);
        self.tally.count(|s| s.kept += 1);
    }

    /// Restores one chosen entry; returns whether to walk into it.
    fn place(&mut self, v: &Visit<'_>, dest: &Path) -> Result<bool> {
        if let Some(k) = v.node.link_key() {
            match self.first_names.get(&k) {
                Some(first) => {
                    let first = first.clone();
                    self.link(v, dest, first)?;
                    return Ok(false);
                }
                None => {
                    self.first_names.insert(k, v.rel.to_path_buf());
                }
            }
        }
        match v.node.kind {
            NodeKind::Dir => {
                let cleans = v.selection == Selection::All && self.opts.cleans(&v.path());
                self.dir(v.rel, v.node, v.tree.filter(|_| cleans))
            }
            NodeKind::File => self.file(v, dest).map(|()| false),
            NodeKind::Socket => {
                self.tally.count(|s| s.skipped += 1);
                Ok(false)
            }
            _ => self.special(v, dest).map(|()| false),
        }
    }

    /// A directory: made (or kept) and, with `clean`, rid of what its tree lacks.
    fn dir(&mut self, rel: &Path, node: &Node, clean: Option<&Tree>) -> Result<bool> {
        let dest = self.target.display(rel);
        let found = self.target.look(rel)?;
        match found {
            Some(f) if f.kind == Existing::Dir => {}
            Some(f) if self.keeps(&f, node) => {
                self.keep(&dest, "dir");
                return Ok(false);
            }
            Some(_) => self.tell(Change::Replace, &dest, "dir", 0),
            None if rel.as_os_str().is_empty() => {}
            None => self.tell(Change::Create, &dest, "dir", 0),
        }
        let existed = found.is_some_and(|f| f.kind == Existing::Dir);
        if self.opts.dry_run {
            if !rel.as_os_str().is_empty() {
                self.tally.count(|s| s.dirs += 1);
            }
        } else {
            self.target.ensure_dir(rel)?;
            // `never` leaves even the metadata of a folder that was there.
            if !(existed && self.opts.overwrite == Overwrite::Never) {
                self.dirs.push((rel.to_path_buf(), node.clone()));
            }
        }
        if let Some(tree) = clean {
            self.clean(rel, tree)?;
        }
        Ok(true)
    }

    /// `--delete`: removes what stands in the folder `rel` but is not in its tree (nor
    /// matched by `--exclude`, nor another restore's temporary file).
    fn clean(&mut self, rel: &Path, tree: &Tree) -> Result<()> {
        for name in self.target.names(rel)? {
            if target::is_temp(&name) || tree.find(name.as_bytes()).is_some() {
                continue;
            }
            let child = rel.join(&name);
            let Some(found) = self.target.look(&child)? else {
                continue;
            };
            let is_dir = found.kind == Existing::Dir;
            if self
                .opts
                .choice
                .exclude
                .matches(&Path::new("/").join(&child), is_dir)
            {
                continue;
            }
            if let Err(e) = self.remove(&child, &found) {
                self.stop.note(&e);
                self.tally
                    .error(&self.target.display(&child), e.to_string());
            }
        }
        Ok(())
    }

    /// Removes `rel` (with all in it) for `--delete`.
    fn remove(&self, rel: &Path, found: &Found) -> Result<()> {
        let dest = self.target.display(rel);
        let kind = match found.kind {
            Existing::Dir => "dir",
            Existing::File { .. } => "file",
            _ if found.symlink => "symlink",
            _ => "other",
        };
        self.tell(Change::Delete, &dest, kind, 0);
        if !self.opts.dry_run {
            let (dir, name) = self.target.parent(rel)?;
            self.target.remove_all(&dir, name, rel)?;
        }
        self.tally.count(|s| s.deleted += 1);
        Ok(())
    }

    /// Where a non-directory goes and a directory stands: a non-empty one is a conflict,
    /// unless `--delete` may remove it (then it is, with all in it).
    fn clear_dir(&self, v: &Visit<'_>, dest: &Path, found: &Found) -> Result<()> {
        if found.kind != Existing::Dir {
            return Ok(());
        }
        let (dir, name) = self.target.parent(v.rel)?;
        if self.target.is_empty_dir(&dir, name, v.rel)? {
            return Ok(());
        }
        if self.opts.delete && v.within_all {
            let parent = v.path().parent().map(Path::to_path_buf).unwrap_or_default();
            if self.opts.cleans(&parent) {
                return self.remove(v.rel, found);
            }
        }
        Err(target::conflict(dest))
    }

    /// A further name of a file restored under another name first.
    fn link(&mut self, v: &Visit<'_>, dest: &Path, first: PathBuf) -> Result<()> {
        let found = self.target.look(v.rel)?;
        if let Some(f) = &found {
            let linked = v
                .node
                .link_key()
                .is_some_and(|k| self.kept_firsts.contains(&k))
                && self
                    .target
                    .look(&first)?
                    .is_some_and(|o| o.inode == f.inode);
            if linked {
                self.tell(Change::Unchanged, dest, "hardlink", 0);
                self.tally.count(|s| s.hard_links += 1);
                return Ok(());
            }
            if self.keeps(f, v.node) {
                self.keep(dest, "hardlink");
                return Ok(());
            }
            self.clear_dir(v, dest, f)?;
        }
        let change = if found.is_some() {
            Change::Replace
        } else {
            Change::Create
        };
        self.tell(change, dest, "hardlink", 0);
        if self.opts.dry_run {
            self.tally.count(|s| s.hard_links += 1);
            return Ok(());
        }
        let name = v.rel.file_name().unwrap_or_default();
        self.links.push(LinkTo {
            rel: v.rel.to_path_buf(),
            first,
            tmp: temp_name_among(name, v.siblings),
        });
        Ok(())
    }

    /// A regular file: kept, or handed to the writers whole or for its differing blobs.
    fn file(&mut self, v: &Visit<'_>, dest: &Path) -> Result<()> {
        let node = v.node;
        let found = self.target.look(v.rel)?;
        let mut change = Change::Create;
        let mut present = None;
        if let Some(f) = &found {
            if self.keeps(f, node) {
                self.keep(dest, "file");
                return Ok(());
            }
            self.clear_dir(v, dest, f)?;
            change = Change::Replace;
            if let Existing::File { size, mtime } = f.kind
                && self.opts.overwrite != Overwrite::IfNewer
            {
                let quick = self.opts.overwrite == Overwrite::IfChanged
                    && size == node.size
                    && mtime == node.mtime;
                // A file of another length is not identical; reading it only helps a big
                // one that may be updated in place.
                let worth_reading = size == node.size || node.size >= IN_PLACE_MIN;
                if quick || worth_reading {
                    let (dir, name) = self.target.parent(v.rel)?;
                    let file = self.target.open_existing(&dir, name, v.rel)?;
                    if quick {
                        return self.unchanged(&file, dest, node);
                    }
                    let c = compare::compare(self.repo, &file, dest, node)?;
                    if c.identical {
                        return self.unchanged(&file, dest, node);
                    }
                    if self.updates_in_place(v, f, &c) {
                        change = Change::Update;
                        present = Some(c);
                    }
                }
            }
        }
        let bytes = match &present {
            Some(c) => c.missing_bytes(self.repo, node)?,
            None => node.size - node.holes.iter().map(|h| h.length).sum::<u64>(),
        };
        self.tell(change, dest, "file", bytes);
        if self.opts.dry_run {
            self.tally.count(|s| {
                s.files += 1;
                s.bytes += node.size;
                s.files_updated += u64::from(change == Change::Update);
            });
            return Ok(());
        }
        let name = v.rel.file_name().unwrap_or_default();
        let f = match present {
            Some(c) => FileTarget::in_place(
                v.rel.to_path_buf(),
                dest.to_path_buf(),
                name.to_owned(),
                node.clone(),
                c.present,
            ),
            None => FileTarget::new(
                v.rel.to_path_buf(),
                dest.to_path_buf(),
                temp_name_among(name, v.siblings),
                node.clone(),
            ),
        };
        if f.missing() == 0 {
            // Empty, or updated in place holding every blob already (only its length or
            // metadata differ): nothing to fetch.
            let file = if f.in_place {
                None
            } else {
                Some(self.target.open_temp(&f.rel, &f.tmp, true)?)
            };
            (self.finish)(&f, file.as_ref());
            return Ok(());
        }
        self.batch_blobs += f.missing();
        self.batch.push(f);
        if self.limit.full(self.batch.len(), self.batch_blobs) {
            self.send_batch()?;
            self.limit.grow();
        }
        Ok(())
    }

    /// Whether a file that differs is updated where it differs rather than replaced: a
    /// big one (see `IN_PLACE_MIN`) holding some of the content already, with no other
    /// name (a hard link outside the restore would change too) and no execute bit (a
    /// program may be running it), that we may write.
    fn updates_in_place(&self, v: &Visit<'_>, f: &Found, c: &compare::Comparison) -> bool {
        v.node.size >= IN_PLACE_MIN
            && f.links == 1
            && f.mode & 0o111 == 0
            && c.holes_zero
            && c.present.iter().any(|p| *p)
            && (self.opts.dry_run || {
                let name = v.rel.file_name().unwrap_or_default();
                self.target.open_temp(v.rel, name, false).is_ok()
            })
    }

    /// A file already holding the snapshot's content: its metadata is set.
    fn unchanged(&mut self, file: &File, dest: &Path, node: &Node) -> Result<()> {
        self.tell(Change::Unchanged, dest, "file", 0);
        if let Some(k) = node.link_key() {
            self.kept_firsts.insert(k);
        }
        if !self.opts.dry_run {
            self.meta.file(file, dest, node)?;
        }
        self.tally.count(|s| s.files_unchanged += 1);
        Ok(())
    }

    /// Symlinks, FIFOs and device nodes; a symlink already pointing where the
    /// snapshot's does is kept.
    fn special(&mut self, v: &Visit<'_>, dest: &Path) -> Result<()> {
        let kind = v.node.kind.as_str();
        let found = self.target.look(v.rel)?;
        let mut change = Change::Create;
        if let Some(f) = &found {
            if self.keeps(f, v.node) {
                self.keep(dest, kind);
                return Ok(());
            }
            self.clear_dir(v, dest, f)?;
            change = Change::Replace;
            if f.symlink && v.node.kind == NodeKind::Symlink {
                let (dir, name) = self.target.parent(v.rel)?;
                if self.target.read_link(&dir, name, v.rel)? == v.node.target {
                    self.tell(Change::Unchanged, dest, kind, 0);
                    if !self.opts.dry_run {
                        self.meta.at(&dir, name, dest, v.node)?;
                    }
                    self.tally.count(|s| s.other += 1);
                    return Ok(());
                }
            }
        }
        self.tell(change, dest, kind, 0);
        if !self.opts.dry_run {
            restore_special(self.target, self.meta, v)?;
        }
        self.tally.count(|s| s.other += 1);
        Ok(())
    }

    fn send_batch(&mut self) -> Result<()> {
        self.batch_blobs = 0;
        self.batches
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| Error::Stopped("the restore (its writers are gone)"))
    }
}

/// A temporary name for `name` that no entry of its directory in the snapshot has.
fn temp_name_among(name: &OsStr, siblings: Option<&Tree>) -> std::ffi::OsString {
    target::temp_name(name, |t| {
        siblings.is_some_and(|s| s.find(t.as_bytes()).is_some())
    })
}

/// Walks the chosen part of the snapshot depth first in name order; `each` says of a
/// directory whether to descend into it (false when it could not be made).
pub(crate) fn walk_selected(
    repo: &Repository,
    rel: PathBuf,
    node: &Node,
    siblings: Option<&Tree>,
    choice: &Choice,
    within_all: bool,
    each: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
) -> Result<()> {
    let path = Path::new("/").join(&rel);
    let selection = choice.select(&path, node.kind == NodeKind::Dir, within_all);
    if selection == Selection::Skip {
        return Ok(());
    }
    let tree = match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(sub)) => Some(repo.load_tree(&sub)?),
        _ => None,
    };
    let descend = each(Visit {
        rel: &rel,
        node,
        siblings,
        tree: tree.as_ref(),
        selection,
        within_all,
    })?;
    if let (true, Some(tree)) = (descend, &tree) {
        let all = selection == Selection::All;
        for child in &tree.nodes {
            let rel = rel.join(safe_name(&child.name)?);
            walk_selected(repo, rel, child, Some(tree), choice, all, each)?;
        }
    }
    Ok(())
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
    if !f.node.holes.is_empty() || opts.sparse || f.in_place {
        // Holes at the end are not written: the length makes them. A file updated in
        // place may have been longer.
        file.set_len(f.node.size)
            .map_err(|e| Error::io(&f.dest, e))?;
    }
    if verify && !same_content(repo, file, &f.dest, &f.node)? {
        return Err(Error::VerifyFailed(f.dest.clone()));
    }
    meta.file(file, &f.dest, &f.node)?;
    if !f.in_place {
        let (dir, name) = target.parent(&f.rel)?;
        target.commit(&dir, &f.tmp, name, &f.rel)?;
    }
    Ok(verify)
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
