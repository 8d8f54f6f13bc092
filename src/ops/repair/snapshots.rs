//! `repair snapshots`: snapshots that need data no pack holds any more are written again
//! holding what is left, so that they restore without errors and a prune can run.
//!
//! A blob is lost when the index does not list it, or lists it only in a pack the store
//! lacks or that is known damaged (the local record, see `IndexCache::note_damaged`). Run
//! after `repair index` and a backup, so that what could be salvaged or stored again is
//! not counted as lost. Then, for each snapshot, each distinct tree once:
//! - a folder whose tree is lost is kept, with its metadata, and empty;
//! - a file with lost chunks keeps the chunks that exist, in order (as restic does: its
//!   size becomes theirs, and a sparse file loses its holes), and gets the suffix
//!   `.damaged` on its name (as rustic marks such files), so that a restore never puts a
//!   file with wrong contents where a program would take it for the real one;
//! - everything else is as it was.
//!
//! Every mended path is named in the report. The new snapshot keeps the original's time,
//! host, paths and tags, and gets the tag `repaired`; the trees it needs are written
//! (packs, then their index file) before it. With `forget`, the originals are removed
//! once their repaired copies are written, and so are snapshot objects that do not open
//! at all (there is nothing left in them to repair). A snapshot whose root tree is lost
//! holds nothing: no copy is written, and `forget` removes it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::blob::BlobSealer;
use crate::format::cbor;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::tree_walk::{TreeFold, fold_trees};
use crate::repo::writer::{self, FlushPolicy, IndexWriter, PackFiller};
use crate::store::counting::RequestStats;
use crate::store::{Kind, ObjectName};

/// The tag of every repaired snapshot.
pub const REPAIRED_TAG: &str = "repaired";
/// Added to the name of a file whose content is incomplete.
pub const DAMAGED_SUFFIX: &str = ".damaged";

#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotRepairOptions {
    /// Remove the damaged originals (and snapshot objects that do not open).
    pub forget: bool,
    pub dry_run: bool,
}

/// One path of a snapshot that the repair changed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mended {
    pub path: String,
    /// `file`: lost chunks left out and the name suffixed; `dir`: its content is lost, it
    /// is kept empty.
    pub kind: &'static str,
    /// The file's name in the repaired snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairedSnapshot {
    pub original: String,
    /// The repaired copy (none when nothing of it is left, or in a dry run).
    pub repaired: Option<String>,
    /// Its root tree is lost: nothing of it can be restored.
    pub lost: bool,
    pub forgotten: bool,
    pub mended: Vec<Mended>,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepairReport {
    pub dry_run: bool,
    pub forget: bool,
    pub snapshots: u64,
    /// Snapshots that need lost data.
    pub damaged: u64,
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot objects that do not open, and whether they were removed.
    pub unreadable: Vec<String>,
    pub unreadable_removed: u64,
    pub trees_written: u64,
    pub requests: RequestStats,
}

/// What the repair makes of one tree.
#[derive(Clone)]
struct TreeOutcome {
    /// The repaired tree's id (the same when nothing below it is lost); `None` when the
    /// tree itself is lost.
    id: Option<Id>,
    mended: Vec<Mended>,
}

/// Decides which blobs are lost and writes repaired trees.
struct Mender<'a> {
    repo: &'a Repository,
    stored: HashSet<Id>,
    damaged: BTreeMap<Id, String>,
    writer: Option<TreeWriter<'a>>,
    empty_tree: Id,
}

impl Mender<'_> {
    fn available(&self, kind: BlobType, id: &Id) -> Result<Option<u32>> {
        Ok(self.repo.index()?.get(kind, id)?.and_then(|loc| {
            (self.stored.contains(&loc.pack) && !self.damaged.contains_key(&loc.pack))
                .then_some(loc.entry.raw_length)
        }))
    }

    fn store(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = cbor::encode(tree);
        let id = self.repo.key().blob_id(&bytes);
        if let Some(w) = &mut self.writer {
            w.store(id, &bytes)?;
        }
        Ok(id)
    }
}

impl TreeFold for Mender<'_> {
    type Value = TreeOutcome;

    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
        if self.available(BlobType::Tree, id)?.is_none() {
            return Ok(None);
        }
        match repo.load_tree(id) {
            Ok(t) => Ok(Some(t)),
            Err(Error::Corrupt(..) | Error::ObjectNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn value(
        &mut self,
        id: &Id,
        tree: Option<&Tree>,
        done: &HashMap<Id, TreeOutcome>,
    ) -> Result<TreeOutcome> {
        let Some(tree) = tree else {
            return Ok(TreeOutcome {
                id: None,
                mended: Vec::new(),
            });
        };
        let mut nodes = tree.nodes.clone();
        let mut mended = Vec::new();
        let mut taken: HashSet<Vec<u8>> = nodes.iter().map(|n| n.name.clone()).collect();
        for node in &mut nodes {
            let name = String::from_utf8_lossy(&node.name).into_owned();
            match node.kind {
                NodeKind::Dir => {
                    let Some(sub) = node.subtree else { continue };
                    let below = done.get(&sub).cloned().unwrap_or(TreeOutcome {
                        id: None,
                        mended: Vec::new(),
                    });
                    match below.id {
                        None => {
                            node.subtree = Some(self.empty_tree);
                            mended.push(Mended {
                                path: name,
                                kind: "dir",
                                renamed_to: None,
                            });
                        }
                        Some(new) => {
                            node.subtree = Some(new);
                            mended.extend(below.mended.into_iter().map(|m| Mended {
                                path: format!("{name}/{}", m.path),
                                ..m
                            }));
                        }
                    }
                }
                NodeKind::File => {
                    let mut kept = Vec::with_capacity(node.content.len());
                    let mut size = 0u64;
                    for blob in &node.content {
                        if let Some(len) = self.available(BlobType::Data, blob)? {
                            kept.push(*blob);
                            size += u64::from(len);
                        }
                    }
                    if kept.len() == node.content.len() {
                        continue;
                    }
                    node.content = kept;
                    node.size = size;
                    node.holes.clear();
                    node.name = damaged_name(&node.name, &mut taken);
                    mended.push(Mended {
                        path: name,
                        kind: "file",
                        renamed_to: Some(String::from_utf8_lossy(&node.name).into_owned()),
                    });
                }
                _ => {}
            }
        }
        if mended.is_empty() {
            return Ok(TreeOutcome {
                id: Some(*id),
                mended,
            });
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let new = self.store(&Tree::new(nodes))?;
        Ok(TreeOutcome {
            id: Some(new),
            mended,
        })
    }
}

/// `name` with [`DAMAGED_SUFFIX`], made distinct from every name in `taken` (to which it
/// is added).
fn damaged_name(name: &[u8], taken: &mut HashSet<Vec<u8>>) -> Vec<u8> {
    let mut n = 1;
    loop {
        let mut candidate = name.to_vec();
        candidate.extend_from_slice(DAMAGED_SUFFIX.as_bytes());
        if n > 1 {
            candidate.extend_from_slice(format!("-{n}").as_bytes());
        }
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// Writes repaired trees into tree packs, and their index file at the end.
struct TreeWriter<'a> {
    repo: &'a Repository,
    sealer: BlobSealer,
    filler: PackFiller,
    index: IndexWriter<'a>,
    written: HashSet<Id>,
}

impl<'a> TreeWriter<'a> {
    fn new(repo: &'a Repository) -> Result<TreeWriter<'a>> {
        Ok(TreeWriter {
            repo,
            sealer: BlobSealer::new(repo.key(), repo.config().zstd_level)?,
            filler: PackFiller::for_repo(repo, BlobType::Tree),
            index: IndexWriter::new(repo, FlushPolicy::by_blobs()),
            written: HashSet::new(),
        })
    }

    fn store(&mut self, id: Id, bytes: &[u8]) -> Result<()> {
        if self.written.contains(&id) || self.repo.index()?.contains(BlobType::Tree, &id)? {
            return Ok(());
        }
        let sealed = self.sealer.seal(BlobType::Tree, id, bytes)?;
        if let Some(full) =
            self.filler
                .add(id, sealed.raw_length, sealed.compression, &sealed.bytes)?
        {
            let (entry, _) = writer::write_pack(self.repo, full.finish(self.repo.key())?)?;
            self.index.live(entry)?;
        }
        self.written.insert(id);
        Ok(())
    }

    /// Writes the last pack and the index files; returns how many trees were written.
    fn finish(mut self) -> Result<u64> {
        if let Some(last) = self.filler.take() {
            let (entry, _) = writer::write_pack(self.repo, last.finish(self.repo.key())?)?;
            self.index.live(entry)?;
        }
        self.index.finish()?;
        Ok(self.written.len() as u64)
    }
}

pub fn repair_snapshots(
    repo: &Repository,
    opts: SnapshotRepairOptions,
    progress: &dyn Progress,
) -> Result<SnapshotRepairReport> {
    let mut report = SnapshotRepairReport {
        dry_run: opts.dry_run,
        forget: opts.forget,
        ..SnapshotRepairReport::default()
    };
    let mut snapshots = Vec::new();
    for (id, _) in repo.backend().list_ids(Kind::Snapshot)? {
        match repo.load_meta::<Snapshot>(&id) {
            Ok(s) => snapshots.push((id, s)),
            Err(e @ Error::UnknownVersion { .. }) => return Err(e),
            Err(Error::ObjectNotFound(_)) => {}
            Err(Error::Corrupt(..)) => report.unreadable.push(id.to_hex()),
            Err(e) => return Err(e),
        }
    }
    snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    report.snapshots = snapshots.len() as u64;

    let empty = Tree::new(Vec::new());
    let mut mender = Mender {
        repo,
        stored: repo.stored_packs()?.into_keys().collect(),
        damaged: repo.known_damaged_packs(),
        writer: if opts.dry_run {
            None
        } else {
            Some(TreeWriter::new(repo)?)
        },
        empty_tree: repo.key().blob_id(&cbor::encode(&empty)),
    };
    progress.start("snapshots", snapshots.len() as u64);
    let mut done = HashMap::new();
    let mut plans = Vec::new();
    for (id, snap) in &snapshots {
        fold_trees(repo, snap.tree, &mut mender, &mut done)?;
        progress.advance(1);
        let outcome = &done[&snap.tree];
        if outcome.id == Some(snap.tree) {
            continue;
        }
        report.damaged += 1;
        plans.push((*id, snap.clone(), outcome.clone()));
    }
    let needs_empty = plans
        .iter()
        .any(|(_, _, o)| o.mended.iter().any(|m| m.kind == "dir"));
    if needs_empty && let Some(w) = &mut mender.writer {
        w.store(mender.empty_tree, &cbor::encode(&empty))?;
    }
    // Trees first, then the snapshots that need them.
    if let Some(w) = mender.writer.take() {
        report.trees_written = w.finish()?;
    }
    for (id, snap, outcome) in plans {
        // Repaired before (a run without --forget, or one interrupted): that copy stands,
        // so a second run writes none and, with --forget, only removes the original.
        let done_before = outcome
            .id
            .and_then(|root| repaired_copy(&snapshots, &snap, root));
        let mut entry = RepairedSnapshot {
            original: id.to_hex(),
            repaired: None,
            lost: outcome.id.is_none(),
            forgotten: false,
            mended: outcome
                .mended
                .into_iter()
                .map(|m| Mended {
                    path: format!("/{}", m.path),
                    ..m
                })
                .collect(),
        };
        if let Some(copy) = done_before {
            entry.repaired = Some(copy.to_hex());
            if opts.forget && !opts.dry_run {
                entry.forgotten = remove_snapshot(repo, &id)?;
            }
        } else if !opts.dry_run {
            if let Some(root) = outcome.id {
                let mut repaired = snap.clone();
                repaired.tree = root;
                if !repaired.tags.iter().any(|t| t == REPAIRED_TAG) {
                    repaired.tags.push(REPAIRED_TAG.to_string());
                }
                repaired.program = format!("cairn {}", env!("CARGO_PKG_VERSION"));
                entry.repaired = Some(repo.save_snapshot(&repaired)?.to_hex());
            }
            if opts.forget {
                entry.forgotten = remove_snapshot(repo, &id)?;
            }
        }
        report.repaired.push(entry);
    }
    if opts.forget && !opts.dry_run {
        for hex in &report.unreadable {
            if let Ok(id) = Id::from_hex(hex)
                && remove_snapshot(repo, &id)?
            {
                report.unreadable_removed += 1;
            }
        }
    }
    report.requests = repo.request_stats();
    Ok(report)
}

/// A repaired copy of `original` already in the repository: a snapshot tagged
/// [`REPAIRED_TAG`] of the same time, host and paths whose tree is `root`.
fn repaired_copy(all: &[(Id, Snapshot)], original: &Snapshot, root: Id) -> Option<Id> {
    all.iter()
        .find(|(_, s)| {
            s.tree == root
                && s.time == original.time
                && s.hostname == original.hostname
                && s.paths == original.paths
                && s.tags.iter().any(|t| t == REPAIRED_TAG)
        })
        .map(|(id, _)| *id)
}

/// Removes a snapshot object; `false` when object lock keeps it.
fn remove_snapshot(repo: &Repository, id: &Id) -> Result<bool> {
    match repo.backend().remove(&ObjectName::new(Kind::Snapshot, id)) {
        Ok(()) => Ok(true),
        Err(Error::Retained { object, until }) => {
            tracing::warn!("{object} is under object-lock retention until {until}; left in place");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_names_never_collide() {
        let mut taken: HashSet<Vec<u8>> =
            [b"a".to_vec(), b"a.damaged".to_vec()].into_iter().collect();
        assert_eq!(damaged_name(b"a", &mut taken), b"a.damaged-2".to_vec());
        assert_eq!(damaged_name(b"a", &mut taken), b"a.damaged-3".to_vec());
        assert_eq!(damaged_name(b"b", &mut taken), b"b.damaged".to_vec());
    }
}
