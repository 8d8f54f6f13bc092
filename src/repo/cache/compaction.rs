//! Keeping the tables few: small tables are merged into bigger ones, sizes growing
//! geometrically, so that a lookup reads few tables and each record is rewritten a few
//! times over the cache's life.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::Result;

use super::table::Table;
use super::table::{RECORDS_PER_BLOCK, TableWriter};
use super::{IndexCache, Part, merge, pack_lists, packs_name, table_name};

/// A backup adding index files past this many tables merges some at once.
pub(super) const MAX_TABLES: usize = 12;
/// Tables within this factor of the sum of all smaller ones are merged with them.
const MERGE_FACTOR: u64 = 4;
/// Inputs of one merge, each reading 32 KiB at a time.
const MAX_MERGE_INPUTS: usize = 64;
impl IndexCache {
    /// Merges tables as [`plan`] says.
    pub(super) fn merge_tables(&self, how: Merge) -> Result<()> {
        let force = matches!(how, Merge::AtLeastTwo);
        let _one = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let parts = self.read().parts.clone();
            let sizes: Vec<u64> = parts.iter().map(|p| p.table.count()).collect();
            let chosen = plan(&sizes, force && parts.len() > MAX_TABLES);
            if chosen.is_empty() {
                return Ok(());
            }
            let inputs: Vec<Arc<Part>> = chosen.iter().map(|&i| parts[i].clone()).collect();
            self.merge_parts(&inputs)?;
        }
    }

    /// Replaces `inputs` by one table holding their records.
    fn merge_parts(&self, inputs: &[Arc<Part>]) -> Result<()> {
        let number = self.allocate();
        let mut w = TableWriter::create(&self.dir.join(table_name(number)))?;
        let tables: Vec<&Table> = inputs.iter().map(|p| &p.table).collect();
        {
            let damaged = self.damaged_read();
            merge::merge(&tables, &|id| damaged.contains(id), &mut |r| w.push(r))?;
        }
        let mut table = w.finish()?;
        let mut listed = Vec::new();
        for p in inputs {
            listed.extend(pack_lists::read(&self.dir.join(packs_name(p.number)))?);
        }
        pack_lists::write(&self.dir.join(packs_name(number)), listed)?;
        let gone: HashSet<u64> = inputs.iter().map(|p| p.number).collect();
        self.maybe_resident(&mut table, &gone)?;
        let mut state = self.write();
        state.parts.retain(|p| !gone.contains(&p.number));
        state.add(Part {
            number,
            indexes: inputs.iter().flat_map(|p| p.indexes.clone()).collect(),
            table,
        });
        self.save(&state)?;
        drop(state);
        for p in inputs {
            // Lookups still holding the old table read it through their open handle.
            let _ = std::fs::remove_file(p.table.path());
            let _ = std::fs::remove_file(self.dir.join(packs_name(p.number)));
        }
        Ok(())
    }

    /// Merges the tables a run added, so the next run looks up in few.
    pub fn flush(&self) -> Result<()> {
        self.merge_tables(Merge::AsPlanned)
    }
}

/// How far `merge_tables` goes.
#[derive(Clone, Copy)]
pub(super) enum Merge {
    /// What [`plan`] finds worth merging, perhaps nothing.
    AsPlanned,
    /// At least the two smallest tables, while there are more than [`MAX_TABLES`].
    AtLeastTwo,
}

/// Which tables to merge, given their record counts: the smallest ones, together with
/// each next bigger table that is at most [`MERGE_FACTOR`] times their sum. Sizes grow
/// geometrically from one table to the next, so a lookup reads few tables and each record
/// is rewritten a few times over the cache's life. `force` merges at least the two
/// smallest. Tables under one block count as one block.
pub(super) fn plan(sizes: &[u64], force: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let size = |i: usize| sizes[order[i]].max(RECORDS_PER_BLOCK as u64);
    let n = order.len();
    if n < 2 {
        return Vec::new();
    }
    let mut start = n - 1;
    let mut total = size(start);
    while start > 0 && size(start - 1) <= MERGE_FACTOR * total {
        start -= 1;
        total += size(start);
    }
    if n - start < 2 {
        if !force {
            return Vec::new();
        }
        start = n - 2;
    }
    // Very many inputs (a cache built from a big repository): the smallest first.
    start = start.max(n.saturating_sub(MAX_MERGE_INPUTS));
    order[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_merges_similar_sizes_and_leaves_a_big_table_alone() {
        assert!(plan(&[], false).is_empty());
        assert!(plan(&[1000], true).is_empty());
        // 5M and one backup's worth: nothing to do unless forced.
        assert!(plan(&[5_000_000, 1000], false).is_empty());
        assert_eq!(plan(&[5_000_000, 1000], true), vec![0, 1]);
        // Small tables merge with each other, not with the big one.
        let mut p = plan(&[5_000_000, 1000, 2000, 500], false);
        p.sort();
        assert_eq!(p, vec![1, 2, 3]);
        // Equal runs of a rebuild all merge at once.
        assert_eq!(plan(&[100_000; 50], false).len(), 50);
        assert_eq!(plan(&[100_000; 100], false).len(), MAX_MERGE_INPUTS);
    }
}
