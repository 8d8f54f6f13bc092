//! Putting every chosen entry in place: walks the chosen part of the snapshot, decides for every entry
//! what to do with what stands in the target (`--overwrite`, `--delete`), does it for
//! directories, special files and deletions, hands files to the writers in batches, and
//! reports each action.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use super::compare;
use super::fetch::{FileTarget, Stop};
use super::meta::Meta;
use super::options::{Overwrite, RestoreOptions};
use super::outcome::{Action, ActionKind, Change, Report, Tally};
use super::select::{Selection, Visit, walk_selected};
use super::target::{self, Existing, Found, Target, TempOpen};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::Repository;
use crate::repo::tree_walk::root_node;

const FILE: ActionKind = ActionKind::Entry(NodeKind::File);
const DIR: ActionKind = ActionKind::Entry(NodeKind::Dir);

/// Called once per file when its contents are written (or failed).
pub(super) type Finish<'a> = dyn Fn(&FileTarget, Option<&File>) + Sync + 'a;

/// What placing the entries shares with the rest of the restore.
pub(super) struct Shared<'a> {
    pub(super) repo: &'a Repository,
    pub(super) target: &'a Target,
    pub(super) meta: &'a Meta,
    pub(super) opts: &'a RestoreOptions,
    pub(super) report: &'a Report<'a>,
    pub(super) stop: &'a Stop,
    pub(super) tally: &'a Tally,
    pub(super) finish: &'a Finish<'a>,
}

/// Plans the restore of the tree `root`, sending files to `batches`.
pub(super) fn run(shared: Shared<'_>, root: Id, batches: Sender<Vec<FileTarget>>) -> Result<Plan> {
    let mut placer = Placer {
        repo: shared.repo,
        target: shared.target,
        meta: shared.meta,
        opts: shared.opts,
        report: shared.report,
        stop: shared.stop,
        tally: shared.tally,
        finish: shared.finish,
        batches,
        dirs: Vec::new(),
        first_names: HashMap::new(),
        links: Vec::new(),
        kept_firsts: HashSet::new(),
        batch: Vec::new(),
        batch_blobs: 0,
        limit: BatchLimit {
            files: FIRST_BATCH_FILES,
        },
        pending: Vec::new(),
    };
    walk_selected(
        shared.repo,
        PathBuf::new(),
        &root_node(root),
        None,
        &shared.opts.choice,
        false,
        &mut |v| placer.visit(v),
    )?;
    placer.send_batch()?;
    Ok((placer.dirs, placer.links))
}

/// What placing hands back once the files are written: the directories made (their
/// metadata is set last) and the names to link.
pub(super) type Plan = (Vec<(PathBuf, Node)>, Vec<LinkTo>);

/// A name of a file restored under another name first: made a hard link to it once that
/// one is in place.
pub(super) struct LinkTo {
    pub(super) rel: PathBuf,
    pub(super) first: PathBuf,
    pub(super) tmp: std::ffi::OsString,
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

/// Walks the snapshot, decides what to do with every chosen entry against what stands
/// in the target, does it (directories, special files, deletions) or hands it to the
/// writers (file contents) in batches, and reports each action.
struct Placer<'a> {
    repo: &'a Repository,
    target: &'a Target,
    meta: &'a Meta,
    opts: &'a RestoreOptions,
    report: &'a Report<'a>,
    stop: &'a Stop,
    tally: &'a Tally,
    finish: &'a Finish<'a>,
    batches: Sender<Vec<FileTarget>>,
    dirs: Vec<(PathBuf, Node)>,
    /// The first name met of each file with several.
    first_names: HashMap<(u64, u64), PathBuf>,
    links: Vec<LinkTo>,
    /// Link groups whose first name was kept as it stood: a further name that is already
    /// its link is unchanged too.
    kept_firsts: HashSet<(u64, u64)>,
    batch: Vec<FileTarget>,
    batch_blobs: usize,
    limit: BatchLimit,
    /// Folders walked into that hold nothing chosen so far (with include patterns):
    /// made when something below them is, with whether that was tried.
    pending: Vec<(PathBuf, Node, bool)>,
}

impl Placer<'_> {
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

    fn tell(&self, change: Change, dest: &Path, kind: ActionKind, bytes: u64) {
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

    fn keep(&self, dest: &Path, kind: ActionKind) {
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
                self.keep(&dest, DIR);
                self.tally
                    .count(|s| s.folders_not_restored.push(dest.clone()));
                return Ok(false);
            }
            Some(_) => self.tell(Change::Replace, &dest, DIR, 0),
            None if rel.as_os_str().is_empty() => {}
            None => self.tell(Change::Create, &dest, DIR, 0),
        }
        let existed = found.is_some_and(|f| f.kind == Existing::Dir);
        if self.opts.dry_run {
            if !rel.as_os_str().is_empty() {
                self.tally.count(|s| s.dirs += 1);
            }
        } else {
            self.target.ensure_dir(rel)?;
            // `never` leaves even the metadata of a folder that was there; it counts as
            // restored, as in a dry run.
            if !(existed && self.opts.overwrite == Overwrite::Never) {
                self.dirs.push((rel.to_path_buf(), node.clone()));
            } else if !rel.as_os_str().is_empty() {
                self.tally.count(|s| s.dirs += 1);
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
            Existing::Dir => DIR,
            Existing::File { .. } => FILE,
            _ if found.symlink => ActionKind::Entry(NodeKind::Symlink),
            _ => ActionKind::Other,
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
                self.tell(Change::Unchanged, dest, ActionKind::HardLink, 0);
                self.tally.count(|s| s.hard_links += 1);
                return Ok(());
            }
            if self.keeps(f, v.node) {
                self.keep(dest, ActionKind::HardLink);
                return Ok(());
            }
            self.clear_dir(v, dest, f)?;
        }
        let change = if found.is_some() {
            Change::Replace
        } else {
            Change::Create
        };
        self.tell(change, dest, ActionKind::HardLink, 0);
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
                self.keep(dest, FILE);
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
        self.tell(change, dest, FILE, bytes);
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
                Some(self.target.open_temp(&f.rel, &f.tmp, TempOpen::Create)?)
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
                self.target.open_temp(v.rel, name, TempOpen::Reopen).is_ok()
            })
    }

    /// A file already holding the snapshot's content: its metadata is set.
    fn unchanged(&mut self, file: &File, dest: &Path, node: &Node) -> Result<()> {
        self.tell(Change::Unchanged, dest, FILE, 0);
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
        let kind = ActionKind::Entry(v.node.kind);
        let found = self.target.look(v.rel)?;
        let mut change = Change::Create;
        if let Some(f) = &found {
            if self.keeps(f, v.node) {
                self.keep(dest, kind);
                return Ok(());
            }
            self.clear_dir(v, dest, f)?;
            change = Change::Replace;
            let (dir, name) = self.target.parent(v.rel)?;
            let same = if f.symlink && v.node.kind == NodeKind::Symlink {
                self.target.read_link(&dir, name, v.rel)? == v.node.target
            } else {
                same_special(f, v.node)
            };
            if same {
                self.tell(Change::Unchanged, dest, kind, 0);
                if !self.opts.dry_run {
                    self.meta.at(&dir, name, dest, v.node)?;
                }
                self.tally.count(|s| s.other += 1);
                return Ok(());
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

/// Whether a FIFO or device node standing in the target is the snapshot's: the same kind
/// (and device number), so it is kept rather than made again.
fn same_special(found: &target::Found, node: &Node) -> bool {
    use nix::sys::stat::SFlag;
    let format = |flag: SFlag| found.format == flag.bits();
    match node.kind {
        NodeKind::Fifo => format(SFlag::S_IFIFO),
        NodeKind::Chardev => format(SFlag::S_IFCHR) && found.rdev == node.rdev,
        NodeKind::Blockdev => format(SFlag::S_IFBLK) && found.rdev == node.rdev,
        _ => false,
    }
}

/// A temporary name for `name` that no entry of its directory in the snapshot has.
fn temp_name_among(name: &OsStr, siblings: Option<&Tree>) -> std::ffi::OsString {
    target::temp_name(name, |t| {
        siblings.is_some_and(|s| s.find(t.as_bytes()).is_some())
    })
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
