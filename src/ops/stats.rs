//! `stats`: how much the chosen snapshots hold, and what storing them costs after
//! deduplication, compression and packing.
//!
//! Logical figures count every snapshot in full (what restoring each of them would write).
//! The deduplicated and stored figures count each distinct blob once. Per-tree totals are
//! memoised, so a subtree shared by many snapshots is read once; the distinct blobs are
//! held as prune holds them (`repo::needed`), 16 bytes each.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::needed::NeededBlobs;
use crate::repo::tree_walk::{TreeFold, fold_trees};

/// What one tree holds, all the way down.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.others += o.others;
        self.bytes += o.bytes;
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub snapshots: u64,
    /// Summed over the snapshots.
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and device files.
    pub others: u64,
    /// Bytes of file content summed over the snapshots: what restoring each would write.
    pub logical_bytes: u64,
    /// Distinct data blobs and their plaintext bytes: the deduplicated size.
    pub data_blobs: u64,
    pub data_bytes: u64,
    /// Distinct tree blobs (directories) and their plaintext bytes.
    pub tree_blobs: u64,
    pub tree_bytes: u64,
    /// Bytes those blobs take in packs, compressed and sealed.
    pub stored_bytes: u64,
    /// Packs that hold at least one of those blobs.
    pub packs: u64,
    /// logical_bytes / stored_bytes (0 when nothing is stored).
    pub ratio: f64,
    /// Blobs the snapshots need that no index lists (`check` says more).
    pub missing_blobs: u64,
    /// Every pack in the repository, whichever snapshots it serves, and its bytes.
    pub repository_packs: u64,
    pub repository_bytes: u64,
}

/// Sums each distinct tree once, and collects the blobs the snapshots need.
struct Summing<'a> {
    snapshot: Id,
    needed: &'a mut NeededBlobs,
}

impl TreeFold for Summing<'_> {
    type Value = Totals;

    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
        let tree = repo.load_tree(id).map_err(|e| {
            e.during(
                format!(
                    "snapshot {}: cannot read tree {}: ",
                    self.snapshot.short(),
                    id.short()
                ),
                " (run `cairn check`)",
            )
        })?;
        self.needed.insert_tree(id);
        for n in &tree.nodes {
            n.content.iter().for_each(|b| self.needed.insert_data(b));
        }
        Ok(Some(tree))
    }

    fn value(&mut self, _: &Id, tree: Option<&Tree>, done: &HashMap<Id, Totals>) -> Result<Totals> {
        let mut t = Totals::default();
        for n in tree.iter().flat_map(|t| &t.nodes) {
            match n.kind {
                NodeKind::File => {
                    t.files += 1;
                    t.bytes += n.size;
                }
                NodeKind::Dir => {
                    t.dirs += 1;
                    if let Some(sub) = n.subtree.and_then(|s| done.get(&s)) {
                        t.add(sub);
                    }
                }
                _ => t.others += 1,
            }
        }
        Ok(t)
    }
}

/// Computes the statistics of `snapshots`. `progress` advances once per snapshot.
pub fn stats(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    progress: &dyn Progress,
) -> Result<Stats> {
    let mut out = Stats {
        snapshots: snapshots.len() as u64,
        ..Stats::default()
    };
    let mut needed = NeededBlobs::default();
    let mut memo: HashMap<Id, Totals> = HashMap::new();
    for (sid, snap) in snapshots {
        let mut summing = Summing {
            snapshot: *sid,
            needed: &mut needed,
        };
        fold_trees(repo, snap.tree, &mut summing, &mut memo)?;
        let t = memo.get(&snap.tree).copied().unwrap_or_default();
        out.files += t.files;
        out.dirs += t.dirs;
        out.others += t.others;
        out.logical_bytes += t.bytes;
        progress.advance(1);
    }
    drop(memo);
    needed.freeze();

    let mut packs = HashSet::new();
    repo.index()?.for_each(&mut |loc| {
        let id = loc.entry.id;
        if !needed.claim(loc.entry.kind, &id) {
            return Ok(());
        }
        let raw = u64::from(loc.entry.raw_length);
        match loc.entry.kind {
            BlobType::Data => {
                out.data_blobs += 1;
                out.data_bytes += raw;
            }
            BlobType::Tree => {
                out.tree_blobs += 1;
                out.tree_bytes += raw;
            }
        }
        out.stored_bytes += u64::from(loc.entry.length);
        packs.insert(loc.pack);
        Ok(())
    })?;
    out.packs = packs.len() as u64;
    out.missing_blobs = needed.unclaimed();
    if out.stored_bytes > 0 {
        out.ratio = out.logical_bytes as f64 / out.stored_bytes as f64;
    }
    let stored = repo.stored_packs()?;
    out.repository_packs = stored.len() as u64;
    out.repository_bytes = stored.values().sum();
    Ok(out)
}
