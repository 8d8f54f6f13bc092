//! The walker: goes through the source depth-first, compares with the parent snapshot,
//! hands files to the workers and writes each directory's tree as soon as everything in it
//! is done, so trees are built bottom-up without holding the whole source in memory.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

use super::file_worker::{FileJob, FileOutcome, FileResult};
use super::known::Known;
use super::packer::BlobStore;
use super::parent_trees::ParentTrees;
use crate::error::{Error, Result};
use crate::format::cbor;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::snapshot::Summary;
use crate::format::tree::{Hole, Node, NodeKind, Tree};
use crate::ops::fsmeta::{node_from_metadata, read_xattrs, unchanged};
use crate::ops::long_path::reachable;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::sysinfo::NameCache;

use super::leave_out::{LeaveOut, Verdict};
use super::path_trie::PathTrie;
use super::unread::{Kept, Unread};

/// A directory whose tree is not written yet.
struct PendingDir {
    nodes: Vec<Node>,
    /// Indices of nodes to leave out (files that could not be read).
    dropped: Vec<usize>,
    /// Files and subdirectories not finished yet.
    outstanding: usize,
    /// All entries have been listed.
    enumerated: bool,
    /// Where the finished tree's id goes: (parent dir, node index), or none for the root.
    link: Option<(u64, usize)>,
    /// The parent snapshot's tree for this directory, for the summary.
    previous: Option<Id>,
    /// That tree's nodes, set once the directory is listed: when the finished nodes equal
    /// them, the parent's tree id is reused without encoding and hashing the tree again.
    previous_nodes: Option<Vec<Node>>,
}

/// What the walker learned, for the snapshot and the user.
pub struct WalkOutcome {
    pub root: Id,
    pub summary: Summary,
    pub failed: Vec<Unread>,
    /// Files that changed while they were read (saved as read).
    pub changed: Vec<PathBuf>,
    /// Folders of cairn's own that were met and left out.
    pub left_out: Vec<PathBuf>,
}

/// What the walk stores besides names, types and contents.
pub struct WalkRules {
    /// Do not descend into other file systems (mount points are kept, empty).
    pub one_file_system: bool,
    /// Read extended attributes and POSIX ACLs.
    pub xattrs: bool,
}

/// A file with more than one link, met once already in this backup: its content is read
/// once, by the first job, and given to every other name of it.
enum LinkedContent {
    /// Being read; these (directory, node index) pairs wait for it.
    Reading(Vec<(u64, usize, PathBuf)>),
    Known {
        content: Vec<Id>,
        holes: Vec<Hole>,
        size: u64,
    },
}

pub struct Walker<'a> {
    pub repo: &'a Repository,
    pub leave_out: &'a LeaveOut<'a>,
    pub rules: WalkRules,
    pub known: &'a Known<'a>,
    pub progress: &'a dyn Progress,
    /// The parent snapshot's trees, loaded ahead.
    trees: &'a ParentTrees,
    pub jobs: Sender<FileJob>,
    pub results: Receiver<FileResult>,
    /// Seals and packs the trees.
    store: BlobStore<'a>,
    names: NameCache,
    dirs: HashMap<u64, PendingDir>,
    next_dir: u64,
    /// Device of the backup path being walked, for --one-file-system.
    device: u64,
    root: Option<Id>,
    summary: Summary,
    failed: Vec<Unread>,
    /// Where each path of `failed` is in it.
    failed_at: HashMap<PathBuf, usize>,
    changed: Vec<PathBuf>,
    left_out: Vec<PathBuf>,
    /// Parent content of files handed to workers, to tell changed from unmodified.
    previous_content: HashMap<(u64, usize), Vec<Id>>,
    /// Files with more than one link, by (device, inode).
    linked: HashMap<(u64, u64), LinkedContent>,
    /// The (device, inode) of the file a job reads, for files with more than one link.
    job_links: HashMap<(u64, usize), (u64, u64)>,
}

fn stopped() -> Error {
    Error::Stopped("the backup pipeline")
}

impl<'a> Walker<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: &'a Repository,
        leave_out: &'a LeaveOut<'a>,
        rules: WalkRules,
        known: &'a Known<'a>,
        progress: &'a dyn Progress,
        trees: &'a ParentTrees,
        jobs: Sender<FileJob>,
        results: Receiver<FileResult>,
        store: BlobStore<'a>,
    ) -> Walker<'a> {
        Walker {
            repo,
            leave_out,
            rules,
            known,
            progress,
            trees,
            jobs,
            results,
            store,
            names: NameCache::default(),
            dirs: HashMap::new(),
            next_dir: 0,
            device: 0,
            root: None,
            summary: Summary::default(),
            failed: Vec::new(),
            failed_at: HashMap::new(),
            changed: Vec::new(),
            left_out: Vec::new(),
            previous_content: HashMap::new(),
            linked: HashMap::new(),
            job_links: HashMap::new(),
        }
    }

    /// Walks everything and returns once every tree is in a pack.
    pub fn run(mut self, trie: &PathTrie, parent_root: Option<Id>) -> Result<WalkOutcome> {
        let root = Path::new("/");
        if trie.target {
            // `/` itself is a backup path: the root is listed like any directory.
            let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
            self.device = meta.dev();
            self.walk_dir(root, None, parent_root)?;
        } else {
            self.walk_virtual(root, trie, None, parent_root)?;
        }
        // No more jobs: wait for the workers' last results.
        let (dummy, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.jobs, dummy));
        while !self.dirs.is_empty() {
            let r = self.results.recv().map_err(|_| stopped())?;
            self.apply(r)?;
        }
        let root = self.root.ok_or_else(stopped)?;
        Ok(WalkOutcome {
            root,
            summary: self.summary,
            failed: self.failed,
            changed: self.changed,
            left_out: self.left_out,
        })
    }

    fn load_parent_tree(&self, id: Option<Id>, path: &Path) -> Option<Tree> {
        let id = id?;
        match self.trees.take(self.repo, &id) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    "{}: parent snapshot's tree unreadable ({e}); reading all files",
                    path.display()
                );
                None
            }
        }
    }

    fn new_dir(&mut self, link: Option<(u64, usize)>, previous: Option<Id>) -> u64 {
        let key = self.next_dir;
        self.next_dir += 1;
        self.dirs.insert(
            key,
            PendingDir {
                nodes: Vec::new(),
                dropped: Vec::new(),
                outstanding: 0,
                enumerated: false,
                link,
                previous,
                previous_nodes: None,
            },
        );
        key
    }

    fn dir(&mut self, key: u64) -> &mut PendingDir {
        self.dirs
            .get_mut(&key)
            .expect("pending directory exists until finished")
    }

    /// The directories from `/` down to the backup paths. They are recorded with the
    /// metadata of what they are, symlinks on the way followed (a backup path's name is
    /// kept as given), so that the backup paths can be looked up in the snapshot.
    fn walk_virtual(
        &mut self,
        path: &Path,
        trie: &PathTrie,
        link: Option<(u64, usize)>,
        previous: Option<Id>,
    ) -> Result<()> {
        let parent = self.load_parent_tree(previous, path);
        let ahead = subtrees(parent.as_ref(), |name| {
            trie.children.contains_key(OsStr::from_bytes(name))
        });
        self.trees.request(&ahead);
        let key = self.new_dir(link, previous);
        for (name, child) in &trie.children {
            let child_path = path.join(name);
            let meta = if child.target {
                child.target_metadata(&child_path)
            } else {
                reachable(&child_path).and_then(|p| std::fs::metadata(&*p))
            };
            let meta = match meta {
                Ok(m) if child.target || m.is_dir() => m,
                Ok(_) => {
                    let e = std::io::Error::from_raw_os_error(nix::libc::ENOTDIR);
                    self.fail(&child_path, e.to_string(), Kept::Nothing);
                    continue;
                }
                Err(e) => {
                    // A missing backup path: the others are saved, this one reported.
                    self.fail(&child_path, e.to_string(), Kept::Nothing);
                    continue;
                }
            };
            let previous = parent.as_ref().and_then(|t| t.find(name.as_bytes()));
            if child.target {
                if self.leave_out.is_own(&meta) {
                    self.left_out.push(child_path);
                    continue;
                }
                self.device = meta.dev();
                self.entry(key, &child_path, name, &meta, previous)?;
            } else {
                let mut node = node_from_metadata(name, &meta, &mut self.names);
                self.add_xattrs(&child_path, &mut node);
                let sub = previous.and_then(|p| p.subtree);
                let d = self.dir(key);
                d.nodes.push(node);
                d.outstanding += 1;
                let idx = d.nodes.len() - 1;
                self.walk_virtual(&child_path, child, Some((key, idx)), sub)?;
            }
        }
        self.trees.forget(&ahead);
        self.dir(key).enumerated = true;
        self.try_finish(key)
    }

    /// Walks a directory of a backup path; `link` is where its tree goes (none for `/`).
    fn walk_dir(
        &mut self,
        path: &Path,
        link: Option<(u64, usize)>,
        previous: Option<Id>,
    ) -> Result<()> {
        let parent = self.load_parent_tree(previous, path);
        let ahead = subtrees(parent.as_ref(), |_| true);
        self.trees.request(&ahead);
        let entries = self.list_dir(path);
        let key = self.new_dir(link, previous);
        for (name, meta) in entries {
            self.drain_results()?;
            let child = path.join(&name);
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    // Vanished since listing, or unreadable: leave it out, say so.
                    self.fail(&child, e.to_string(), Kept::Nothing);
                    continue;
                }
            };
            match self.leave_out.judge(&child, &meta) {
                Verdict::Keep => {}
                Verdict::Excluded => continue,
                Verdict::Own => {
                    self.left_out.push(child);
                    continue;
                }
            }
            let previous = parent.as_ref().and_then(|t| t.find(name.as_bytes()));
            self.entry(key, &child, &name, &meta, previous)?;
        }
        self.trees.forget(&ahead);
        self.dir(key).previous_nodes = parent.map(|t| t.nodes);
        self.dir(key).enumerated = true;
        self.try_finish(key)
    }

    /// The entries of a directory with their `lstat` metadata, sorted by name. The
    /// metadata comes from `fstatat` on the open directory, which spares the kernel a
    /// walk of the whole path per entry; the directory is closed before the caller
    /// descends, so deep trees do not hold one descriptor per level.
    fn list_dir(&mut self, path: &Path) -> Vec<(OsString, std::io::Result<std::fs::Metadata>)> {
        let mut entries = Vec::new();
        match reachable(path).and_then(|p| std::fs::read_dir(&*p)) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => entries.push((e.file_name(), e.metadata())),
                        Err(e) => self.fail(path, e.to_string(), Kept::Folder),
                    }
                }
            }
            Err(e) => self.fail(path, e.to_string(), Kept::Folder),
        }
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        entries
    }

    /// Notes a path that could not be read. `files_failed` counts paths: a folder whose
    /// extended attributes and entries both fail is one.
    /// A path that fails again (its extended attributes, then its contents) stays one
    /// report, saying the worse of the two: what the snapshot truly keeps of it.
    fn fail(&mut self, path: &Path, error: String, kept: Kept) {
        if let Some(&i) = self.failed_at.get(path) {
            let earlier = &mut self.failed[i];
            if kept < earlier.kept {
                earlier.error = error;
                earlier.kept = kept;
            }
            return;
        }
        self.summary.files_failed += 1;
        self.failed_at.insert(path.to_path_buf(), self.failed.len());
        self.failed.push(Unread {
            path: path.to_path_buf(),
            error,
            kept,
        });
    }

    /// Adds one entry of directory `key`.
    fn entry(
        &mut self,
        key: u64,
        path: &Path,
        name: &OsStr,
        meta: &std::fs::Metadata,
        previous: Option<&Node>,
    ) -> Result<()> {
        let mut node = node_from_metadata(name, meta, &mut self.names);
        self.add_xattrs(path, &mut node);
        match node.kind {
            NodeKind::File => {
                self.summary.total_files_processed += 1;
                self.summary.total_bytes_processed += node.size;
                if self.summary.total_files_processed.is_multiple_of(256) && self.progress.watched()
                {
                    self.progress
                        .message(&format!("{} files", self.summary.total_files_processed));
                }
                let link = node.link_key();
                if let Some(p) = previous
                    && unchanged(&node, p)
                    && self.all_known(&p.content)?
                {
                    node.content = p.content.clone();
                    node.holes = p.holes.clone();
                    self.summary.files_unmodified += 1;
                    self.progress.advance(node.size);
                    if let Some(link) = link {
                        self.linked.entry(link).or_insert(LinkedContent::Known {
                            content: node.content.clone(),
                            holes: node.holes.clone(),
                            size: node.size,
                        });
                    }
                    self.dir(key).nodes.push(node);
                    return Ok(());
                }
                let d = self.dir(key);
                d.nodes.push(node);
                d.outstanding += 1;
                let idx = d.nodes.len() - 1;
                if let Some(p) = previous.filter(|p| p.kind == NodeKind::File) {
                    self.previous_content.insert((key, idx), p.content.clone());
                }
                if let Some(link) = link {
                    match self.linked.get_mut(&link) {
                        Some(LinkedContent::Reading(waiting)) => {
                            waiting.push((key, idx, path.to_path_buf()));
                            return Ok(());
                        }
                        Some(LinkedContent::Known {
                            content,
                            holes,
                            size,
                        }) => {
                            let done = FileOutcome::Done {
                                content: content.clone(),
                                holes: holes.clone(),
                                size: *size,
                                changed: false,
                            };
                            self.progress.advance(*size);
                            return self.settle(key, idx, path, done);
                        }
                        None => {
                            self.linked.insert(link, LinkedContent::Reading(Vec::new()));
                            self.job_links.insert((key, idx), link);
                        }
                    }
                }
                self.send_job(FileJob {
                    dir: key,
                    idx,
                    path: path.to_path_buf(),
                    stream: None,
                })?;
            }
            NodeKind::Dir => {
                let sub = previous
                    .filter(|p| p.kind == NodeKind::Dir)
                    .and_then(|p| p.subtree);
                let crosses = self.rules.one_file_system && meta.dev() != self.device;
                let d = self.dir(key);
                d.nodes.push(node);
                let idx = d.nodes.len() - 1;
                if crosses {
                    // A mount point: keep the directory itself, empty.
                    let empty = self.store_tree(Tree::new(Vec::new()))?;
                    self.dir(key).nodes[idx].subtree = Some(empty);
                } else {
                    self.dir(key).outstanding += 1;
                    self.walk_dir(path, Some((key, idx)), sub)?;
                }
            }
            NodeKind::Symlink => {
                match reachable(path).and_then(|p| std::fs::read_link(&*p)) {
                    Ok(t) => node.target = t.into_os_string().as_bytes().to_vec(),
                    Err(e) => {
                        self.fail(path, e.to_string(), Kept::Nothing);
                        return Ok(());
                    }
                }
                self.dir(key).nodes.push(node);
            }
            _ => self.dir(key).nodes.push(node),
        }
        Ok(())
    }

    fn all_known(&self, content: &[Id]) -> Result<bool> {
        for id in content {
            if !self.known.has(BlobType::Data, id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hands a file to the workers, taking in results while the queue is full so that
    /// neither side waits on the other forever.
    fn send_job(&mut self, mut job: FileJob) -> Result<()> {
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::TrySendError::Full(j)) => {
                    job = j;
                    crossbeam_channel::select! {
                        recv(self.results) -> r => {
                            let r = r.map_err(|_| stopped())?;
                            self.apply(r)?;
                        }
                        send(self.jobs, job) -> res => {
                            return res.map_err(|_| stopped());
                        }
                    }
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(stopped()),
            }
        }
    }

    fn drain_results(&mut self) -> Result<()> {
        while let Ok(r) = self.results.try_recv() {
            self.apply(r)?;
        }
        Ok(())
    }

    /// Takes in a worker's result, and gives it to the other names of the file if it has
    /// more than one.
    fn apply(&mut self, r: FileResult) -> Result<()> {
        if let Some(link) = self.job_links.remove(&(r.dir, r.idx)) {
            let waiting = match self.linked.remove(&link) {
                Some(LinkedContent::Reading(waiting)) => waiting,
                _ => Vec::new(),
            };
            for (dir, idx, path) in waiting {
                let outcome = match &r.outcome {
                    FileOutcome::Done {
                        content,
                        holes,
                        size,
                        changed,
                    } => {
                        self.progress.advance(*size);
                        FileOutcome::Done {
                            content: content.clone(),
                            holes: holes.clone(),
                            size: *size,
                            changed: *changed,
                        }
                    }
                    FileOutcome::Failed(msg) => FileOutcome::Failed(format!(
                        "not read: it is a hard link of {}, which failed: {msg}",
                        r.path.display()
                    )),
                };
                self.settle(dir, idx, &path, outcome)?;
            }
            if let FileOutcome::Done {
                content,
                holes,
                size,
                ..
            } = &r.outcome
            {
                let known = LinkedContent::Known {
                    content: content.clone(),
                    holes: holes.clone(),
                    size: *size,
                };
                self.linked.insert(link, known);
            }
        }
        self.settle(r.dir, r.idx, &r.path, r.outcome)
    }

    /// Puts a file's content into its node, or drops the node of a file that failed.
    fn settle(&mut self, dir: u64, idx: usize, path: &Path, outcome: FileOutcome) -> Result<()> {
        let previous = self.previous_content.remove(&(dir, idx));
        match outcome {
            FileOutcome::Done {
                content,
                holes,
                size,
                changed,
            } => {
                if changed {
                    self.changed.push(path.to_path_buf());
                }
                match previous {
                    None => self.summary.files_new += 1,
                    Some(p) if p == content => self.summary.files_unmodified += 1,
                    Some(_) => self.summary.files_changed += 1,
                }
                let node = &mut self.dir(dir).nodes[idx];
                node.content = content;
                node.holes = holes;
                node.size = size;
            }
            FileOutcome::Failed(msg) => {
                self.fail(path, msg, Kept::Nothing);
                self.dir(dir).dropped.push(idx);
            }
        }
        self.dir(dir).outstanding -= 1;
        self.try_finish(dir)
    }

    /// Reads the extended attributes of `path` into `node`. They are read every time, not
    /// taken from the parent snapshot: a parent made with `--no-xattrs` or by a cairn that
    /// did not store them would otherwise hide them for as long as the file is unchanged.
    fn add_xattrs(&mut self, path: &Path, node: &mut Node) {
        if !self.rules.xattrs {
            return;
        }
        match read_xattrs(path) {
            Ok(x) => node.xattrs = x,
            Err(e) => self.fail(
                path,
                format!("extended attributes not read: {e}"),
                Kept::WithoutXattrs,
            ),
        }
    }

    fn store_tree(&mut self, tree: Tree) -> Result<Id> {
        let bytes = cbor::encode(&tree);
        let id = self.repo.key().blob_id(&bytes);
        if self.known.claim(BlobType::Tree, &id)? {
            self.store.store(BlobType::Tree, id, &bytes)?;
        }
        Ok(id)
    }

    /// Writes the trees of `key` and of every ancestor that it completes.
    fn try_finish(&mut self, mut key: u64) -> Result<()> {
        loop {
            let d = &self.dirs[&key];
            if !d.enumerated || d.outstanding > 0 {
                return Ok(());
            }
            let mut d = self.dirs.remove(&key).expect("present");
            d.dropped.sort_unstable();
            for idx in d.dropped.iter().rev() {
                d.nodes.remove(*idx);
            }
            let id = match (d.previous, d.previous_nodes) {
                // Same nodes, same bytes: the parent's tree blob is in the repository (it
                // was just loaded from it, perhaps from the local copy of its pack), so
                // there is nothing to encode or store, unless its pack is missing or
                // damaged: then it is stored again.
                (Some(p), Some(nodes))
                    if nodes == d.nodes && self.known.has(BlobType::Tree, &p)? =>
                {
                    p
                }
                _ => self.store_tree(Tree::new(d.nodes))?,
            };
            match d.previous {
                None => self.summary.dirs_new += 1,
                Some(p) if p == id => self.summary.dirs_unmodified += 1,
                Some(_) => self.summary.dirs_changed += 1,
            }
            match d.link {
                None => {
                    self.root = Some(id);
                    return Ok(());
                }
                Some((parent, idx)) => {
                    let p = self.dir(parent);
                    p.nodes[idx].subtree = Some(id);
                    p.outstanding -= 1;
                    key = parent;
                }
            }
        }
    }
}

/// The parent tree's subdirectory trees whose names pass `wanted`, in name order.
fn subtrees(parent: Option<&Tree>, wanted: impl Fn(&[u8]) -> bool) -> Vec<Id> {
    parent.map_or_else(Vec::new, |t| {
        t.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Dir && wanted(&n.name))
            .filter_map(|n| n.subtree)
            .collect()
    })
}
