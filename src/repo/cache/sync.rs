//! Bringing the cache in line with the repository's index files: new index files become
//! new tables, sorted in bounded runs.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::IndexFile;

use super::compaction::{MAX_TABLES, Merge};
use super::table::{LIVE, MARKED, Record, TableWriter};
use super::{IndexCache, Part, RUN_RECORDS, pack_lists, packs_name, table_name};

impl IndexCache {
    /// Brings the cache in line with the repository's index files. `listed` is the names
    /// of all index files; `load` reads one. Returns the index files left out as damaged,
    /// with why, for the caller to report.
    pub fn sync(
        &self,
        repo_id: &Id,
        listed: &[Id],
        load: impl Fn(&Id) -> Result<IndexFile> + Sync,
    ) -> Result<Vec<(Id, String)>> {
        if self.read().repository != Some(*repo_id) {
            self.reset(repo_id)?;
        }
        let listed_set: HashSet<Id> = listed.iter().copied().collect();
        let cached: HashSet<Id> = self
            .read()
            .parts
            .iter()
            .flat_map(|p| p.indexes.iter().copied())
            .collect();
        let cached = if cached.is_subset(&listed_set) {
            cached
        } else {
            // An index file it was built from is gone (pruned or replaced): entries may
            // point at packs that no longer exist. Start over.
            tracing::info!("index cache is stale; rebuilding");
            self.reset(repo_id)?;
            HashSet::new()
        };
        let missing: Vec<Id> = listed
            .iter()
            .filter(|id| !cached.contains(id))
            .copied()
            .collect();
        let mut damaged = Vec::new();
        // Index files are decrypted on all cores; their records are sorted into runs here.
        let (tx, rx) = crossbeam_channel::bounded::<(Id, Result<IndexFile>)>(4);
        std::thread::scope(|s| -> Result<()> {
            let (missing, load) = (&missing, &load);
            s.spawn(move || {
                crate::repo::pool::for_each(missing, crate::threads(), |id| {
                    match tx.send((*id, load(id))) {
                        Ok(()) => ControlFlow::Continue(()),
                        // The merge below stopped on an error: load no more.
                        Err(_) => ControlFlow::Break(()),
                    }
                })
            });
            let mut run = Run::default();
            for (id, index) in rx {
                match index {
                    Ok(index) => run.add(&id, &index),
                    // A damaged index file must not stop restores of what the others
                    // list; it stays out of the cache, so the next run tries it again.
                    Err(e @ Error::Corrupt(..)) => damaged.push((id, e.detail())),
                    Err(e) => return Err(e),
                }
                if run.records.len() >= RUN_RECORDS {
                    self.add_run(&mut run)?;
                }
            }
            self.add_run(&mut run)
        })?;
        self.merge_tables(Merge::AsPlanned)?;
        Ok(damaged)
    }

    /// Writes the records of `run` as a new table and records it with its index files.
    fn add_run(&self, run: &mut Run) -> Result<()> {
        if run.indexes.is_empty() {
            return Ok(());
        }
        let number = self.allocate();
        {
            let damaged = self.damaged_read();
            let is_damaged = |id: &Id| damaged.contains(id);
            // Index files arrive in no fixed order: the pack id settles ties, so that the
            // location picked does not change from one build of the cache to the next.
            run.records.sort_unstable_by(|a, b| {
                (a.key(), a.rank(&is_damaged), a.pack()).cmp(&(
                    b.key(),
                    b.rank(&is_damaged),
                    b.pack(),
                ))
            });
        }
        // The first of equal keys is the best location: live, in a pack not known damaged.
        run.records
            .dedup_by(|later, first| later.key() == first.key());
        let mut w = TableWriter::create(&self.dir.join(table_name(number)))?;
        for r in &run.records {
            w.push(r)?;
        }
        let mut table = w.finish()?;
        pack_lists::write(
            &self.dir.join(packs_name(number)),
            std::mem::take(&mut run.packs),
        )?;
        self.maybe_resident(&mut table, &HashSet::new())?;
        let part = Part {
            number,
            indexes: std::mem::take(&mut run.indexes),
            table,
        };
        run.records.clear();
        let mut state = self.write();
        state.add(part);
        self.save(&state)
    }

    /// Records the blobs of an index file that is now in the repository. A blob in a live
    /// pack wins over one known only from a marked pack.
    pub fn add_index(&self, id: &Id, index: &IndexFile) -> Result<()> {
        let mut run = Run::default();
        run.add(id, index);
        self.add_run(&mut run)?;
        if self.read().parts.len() > MAX_TABLES {
            self.merge_tables(Merge::AtLeastTwo)?;
        }
        Ok(())
    }
}

/// Records of index files, gathered to be written as one table.
#[derive(Default)]
pub(super) struct Run {
    records: Vec<Record>,
    indexes: Vec<Id>,
    /// Every pack the index files list, for the table's pack list.
    packs: Vec<Id>,
}

impl Run {
    fn add(&mut self, id: &Id, index: &IndexFile) {
        for pack in &index.packs {
            self.packs.push(pack.id);
            for e in &pack.blobs {
                self.records.push(Record::new(&pack.id, e, LIVE));
            }
        }
        for pack in &index.delete {
            self.packs.push(pack.id);
            for e in &pack.blobs {
                self.records.push(Record::new(&pack.id, e, MARKED));
            }
        }
        self.indexes.push(*id);
    }
}
