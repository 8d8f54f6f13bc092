//! The blobs that snapshots need, kept compact: prune's memory must not grow like the
//! index does.
//!
//! A needed blob is held as the first 128 bits of its id in a sorted array: 16 bytes each,
//! plus one bit for "a live pack holds it". Ids are keyed BLAKE3, so nobody without the
//! key can make two collide, and chance collisions among even 10^10 blobs are below 10^-18.

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::tree_walk::DistinctTrees;

fn short(id: &Id) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&id.0[..16]);
    u128::from_le_bytes(b)
}

/// Collects ids, then answers "needed?" and hands each needed blob to one pack.
#[derive(Default)]
pub struct NeededBlobs {
    data: Vec<u128>,
    trees: Vec<u128>,
    /// Length of the sorted, deduplicated front of `data`.
    data_sorted: usize,
    data_claimed: Vec<u64>,
    trees_claimed: Vec<u64>,
}

fn compact(v: &mut Vec<u128>) {
    v.sort_unstable();
    v.dedup();
    v.shrink_to_fit();
}

impl NeededBlobs {
    pub fn insert_data(&mut self, id: &Id) {
        self.data.push(short(id));
        // Files that did not change appear in every snapshot; squeeze duplicates out
        // whenever the array doubles so it stays near one entry per distinct blob.
        if self.data.len() >= 2 * self.data_sorted.max(1 << 16) {
            compact(&mut self.data);
            self.data_sorted = self.data.len();
        }
    }

    pub fn insert_tree(&mut self, id: &Id) {
        self.trees.push(short(id));
    }

    /// Ends collecting; `claim` may be called from now on.
    pub fn freeze(&mut self) {
        compact(&mut self.data);
        compact(&mut self.trees);
        self.data_sorted = self.data.len();
        self.data_claimed = vec![0; self.data.len().div_ceil(64)];
        self.trees_claimed = vec![0; self.trees.len().div_ceil(64)];
    }

    fn parts(&mut self, kind: BlobType) -> (&Vec<u128>, &mut Vec<u64>) {
        match kind {
            BlobType::Data => (&self.data, &mut self.data_claimed),
            BlobType::Tree => (&self.trees, &mut self.trees_claimed),
        }
    }

    /// If the blob is needed and no pack has claimed it yet, claims it for the caller's
    /// pack and returns true.
    pub fn claim(&mut self, kind: BlobType, id: &Id) -> bool {
        let (ids, claimed) = self.parts(kind);
        let Ok(i) = ids.binary_search(&short(id)) else {
            return false;
        };
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if claimed[word] & bit != 0 {
            return false;
        }
        claimed[word] |= bit;
        true
    }

    /// Needed blobs that no pack holds.
    pub fn unclaimed(&self) -> u64 {
        let count = |ids: &Vec<u128>, claimed: &Vec<u64>| {
            ids.len() as u64
                - claimed
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum::<u64>()
        };
        count(&self.data, &self.data_claimed) + count(&self.trees, &self.trees_claimed)
    }

    pub fn len(&self) -> usize {
        self.data.len() + self.trees.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, for reports.
    pub fn memory(&self) -> usize {
        (self.data.capacity() + self.trees.capacity()) * 16
            + (self.data_claimed.len() + self.trees_claimed.len()) * 8
    }
}

/// Walks every snapshot's trees and collects the blobs they need. Any tree that cannot be
/// read stops prune: deleting data on the strength of a damaged snapshot could lose more.
pub fn collect(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    progress: &dyn Progress,
) -> Result<NeededBlobs> {
    let mut needed = NeededBlobs::default();
    let mut trees = DistinctTrees::default();
    for (sid, snap) in snapshots {
        let failed = |tree_id: &Id, e: Error| {
            e.during(
                format!(
                    "snapshot {}: cannot read tree {}: ",
                    sid.short(),
                    tree_id.short()
                ),
                "; prune deletes nothing while a snapshot is damaged (run `cairn check`)",
            )
        };
        trees.walk(repo, snap.tree, &failed, &mut |tree_id, tree| {
            needed.insert_tree(tree_id);
            for node in &tree.nodes {
                for blob in &node.content {
                    needed.insert_data(blob);
                }
            }
            Ok(())
        })?;
        progress.advance(1);
    }
    needed.freeze();
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        let mut id = Id::default();
        id.0[..4].copy_from_slice(&n.to_le_bytes());
        id.0[31] = 7;
        id
    }

    #[test]
    fn claims_each_needed_blob_once() {
        let mut n = NeededBlobs::default();
        for round in 0..3 {
            for i in 0..100_000u32 {
                if i % 2 == 0 || round == 0 {
                    n.insert_data(&id(i));
                }
            }
        }
        n.trees.push(short(&id(5)));
        n.freeze();
        assert_eq!(n.len(), 100_001);
        assert!(n.claim(BlobType::Data, &id(4)));
        assert!(
            !n.claim(BlobType::Data, &id(4)),
            "a second copy is not needed"
        );
        assert!(!n.claim(BlobType::Data, &id(200_000)), "never needed");
        assert!(n.claim(BlobType::Tree, &id(5)));
        assert!(!n.claim(BlobType::Tree, &id(6)));
        assert_eq!(n.unclaimed(), 100_001 - 2);
    }
}
