//! What a check will look at, decided before any pack is read: from the index files and
//! the store's listing of packs, which packs to check and how deeply, which packs no
//! index lists, and which are marked for deletion. Pure: no store, no key.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::IndexFile;
use crate::format::pack::PackEntry;
use crate::store::{Kind, Listed, ObjectName};

use super::{DataSubset, Problem};

/// One pack to check, and how deeply.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackJob {
    pub(super) id: Id,
    /// Its size as the index says.
    pub(super) size: u64,
    /// The blobs the index says it holds; empty for a marked pack indexed without them.
    pub(super) entries: Vec<PackEntry>,
    /// Its size in the store's listing; `None` when it is not there.
    pub(super) stored_size: Option<u64>,
    pub(super) depth: Depth,
    /// In an archive storage class (the listing says).
    pub(super) archived: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Depth {
    /// Its header, read from the pack's end (or, archived, its listed size only).
    Header,
    /// Every byte: the whole pack is read and each blob opened.
    Contents,
}

#[derive(Debug, Default)]
pub(super) struct CheckPlan {
    pub(super) index_files: u64,
    /// Index files that did not open: damage, reported, and the check goes on.
    pub(super) problems: Vec<Problem>,
    /// Sorted by pack id.
    pub(super) jobs: Vec<PackJob>,
    /// Packs marked for deletion and listed live nowhere, whether or not still stored.
    pub(super) marked: HashSet<Id>,
    /// Object names of stored packs that no index file lists, sorted.
    pub(super) unindexed: Vec<String>,
}

/// What the index files say of one pack.
struct Indexed {
    size: u64,
    entries: Vec<PackEntry>,
    marked: bool,
}

impl CheckPlan {
    /// Decides. `index_files` yields every index file with the outcome of opening it; one
    /// of a newer format version stops the check (this build cannot judge it), any other
    /// failure is a problem. A pack listed live in any file is live, with the entries of
    /// its first live listing; a marked pack gone from the store is no damage (a prune
    /// deleted it) and is not checked.
    pub(super) fn build(
        index_files: impl IntoIterator<Item = (Id, Result<IndexFile>)>,
        listing: &[(Id, Listed)],
        data: DataSubset,
    ) -> Result<CheckPlan> {
        let mut plan = CheckPlan::default();
        let mut indexed: BTreeMap<Id, Indexed> = BTreeMap::new();
        for (id, file) in index_files {
            plan.index_files += 1;
            let file = match file {
                Ok(f) => f,
                Err(e @ Error::UnknownVersion { .. }) => return Err(e),
                Err(e) => {
                    plan.problems.push(Problem {
                        object: ObjectName::new(Kind::Index, &id).path(),
                        error: e.detail(),
                    });
                    continue;
                }
            };
            for p in file.packs {
                match indexed.get_mut(&p.id) {
                    Some(known) if known.marked => {
                        *known = Indexed {
                            size: p.size,
                            entries: p.blobs,
                            marked: false,
                        }
                    }
                    Some(_) => {}
                    None => {
                        indexed.insert(
                            p.id,
                            Indexed {
                                size: p.size,
                                entries: p.blobs,
                                marked: false,
                            },
                        );
                    }
                }
            }
            for m in file.delete {
                indexed.entry(m.id).or_insert(Indexed {
                    size: m.size,
                    entries: m.blobs,
                    marked: true,
                });
            }
        }

        let stored: std::collections::HashMap<&Id, &Listed> =
            listing.iter().map(|(id, l)| (id, l)).collect();
        plan.unindexed = listing
            .iter()
            .filter(|(id, _)| !indexed.contains_key(id))
            .map(|(id, _)| ObjectName::new(Kind::Pack, id).path())
            .collect();
        plan.unindexed.sort();
        for (id, info) in indexed {
            let listed = stored.get(&id);
            if info.marked {
                plan.marked.insert(id);
                if listed.is_none() {
                    continue;
                }
            }
            plan.jobs.push(PackJob {
                id,
                size: info.size,
                entries: info.entries,
                stored_size: listed.map(|l| l.size),
                depth: if data.wants(&id) {
                    Depth::Contents
                } else {
                    Depth::Header
                },
                archived: listed.is_some_and(|l| l.archived.is_some()),
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{IndexedPack, MarkedPack};
    use crate::format::pack::{BlobType, Compression};

    fn pack(n: u8) -> Id {
        Id([n; 32])
    }

    fn entry(n: u8) -> PackEntry {
        PackEntry {
            kind: BlobType::Data,
            id: Id([100 + n; 32]),
            offset: 0,
            length: 100,
            raw_length: 90,
            compression: Compression::Zstd,
        }
    }

    fn live(n: u8, size: u64, blob: u8) -> IndexedPack {
        IndexedPack {
            id: pack(n),
            size,
            blobs: vec![entry(blob)],
        }
    }

    fn marked(n: u8, size: u64) -> MarkedPack {
        MarkedPack {
            id: pack(n),
            size,
            marked: 1,
            blobs: vec![entry(n)],
        }
    }

    fn file(n: u8, packs: Vec<IndexedPack>, delete: Vec<MarkedPack>) -> (Id, Result<IndexFile>) {
        (
            Id([200 + n; 32]),
            Ok(IndexFile {
                v: 2,
                packs,
                delete,
            }),
        )
    }

    fn listed(n: u8, size: u64, archived: bool) -> (Id, Listed) {
        (
            pack(n),
            Listed {
                name: pack(n).to_hex(),
                size,
                archived: archived.then(|| "GLACIER".to_string()),
            },
        )
    }

    fn job(plan: &CheckPlan, n: u8) -> Option<&PackJob> {
        plan.jobs.iter().find(|j| j.id == pack(n))
    }

    #[test]
    fn a_live_listing_anywhere_beats_a_mark_in_either_order() {
        for files in [
            vec![
                file(1, vec![], vec![marked(1, 10)]),
                file(2, vec![live(1, 10, 7)], vec![]),
            ],
            vec![
                file(1, vec![live(1, 10, 7)], vec![]),
                file(2, vec![], vec![marked(1, 10)]),
            ],
        ] {
            let plan =
                CheckPlan::build(files, &[listed(1, 10, false)], DataSubset::None).expect("plan");
            assert!(plan.marked.is_empty());
            let j = job(&plan, 1).expect("checked");
            assert_eq!(j.entries, vec![entry(7)], "the live listing's blobs");
        }
    }

    #[test]
    fn the_first_live_listing_is_the_one_compared() {
        let files = vec![
            file(1, vec![live(1, 10, 7)], vec![]),
            file(2, vec![live(1, 11, 8)], vec![]),
        ];
        let plan =
            CheckPlan::build(files, &[listed(1, 10, false)], DataSubset::None).expect("plan");
        assert_eq!(plan.jobs.len(), 1);
        assert_eq!(
            (plan.jobs[0].size, plan.jobs[0].entries.clone()),
            (10, vec![entry(7)])
        );
    }

    #[test]
    fn a_marked_pack_is_checked_while_stored_and_skipped_once_deleted() {
        let files = vec![file(1, vec![], vec![marked(1, 10), marked(2, 20)])];
        let plan =
            CheckPlan::build(files, &[listed(1, 10, false)], DataSubset::None).expect("plan");
        assert_eq!(plan.marked, HashSet::from([pack(1), pack(2)]));
        assert_eq!(job(&plan, 1).map(|j| j.stored_size), Some(Some(10)));
        assert!(job(&plan, 2).is_none(), "a prune deleted it: no damage");
    }

    #[test]
    fn a_live_pack_missing_from_the_store_is_checked_as_missing() {
        let files = vec![file(1, vec![live(1, 10, 1)], vec![])];
        let plan = CheckPlan::build(files, &[], DataSubset::All).expect("plan");
        assert_eq!(job(&plan, 1).map(|j| j.stored_size), Some(None));
    }

    #[test]
    fn stored_packs_no_index_lists_are_unindexed_not_checked() {
        let files = vec![file(1, vec![live(2, 10, 1)], vec![marked(3, 10)])];
        let listing = [
            listed(1, 5, false),
            listed(2, 10, false),
            listed(3, 10, false),
            listed(4, 5, false),
        ];
        let plan = CheckPlan::build(files, &listing, DataSubset::None).expect("plan");
        let names = |ns: &[u8]| -> Vec<String> {
            ns.iter()
                .map(|n| ObjectName::new(Kind::Pack, &pack(*n)).path())
                .collect()
        };
        assert_eq!(plan.unindexed, names(&[1, 4]));
        assert_eq!(
            plan.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![pack(2), pack(3)]
        );
    }

    #[test]
    fn a_damaged_index_file_is_a_problem_and_a_newer_one_stops_the_check() {
        let damaged = (
            Id([9; 32]),
            Err(Error::corrupt("index/09", "authentication failed")),
        );
        let plan = CheckPlan::build(
            vec![damaged, file(1, vec![live(1, 10, 1)], vec![])],
            &[listed(1, 10, false)],
            DataSubset::None,
        )
        .expect("plan");
        assert_eq!(plan.index_files, 2);
        assert_eq!(plan.problems.len(), 1);
        assert!(plan.problems[0].object.starts_with("index/"));
        assert_eq!(plan.jobs.len(), 1);

        let newer = (
            Id([9; 32]),
            Err(Error::UnknownVersion {
                what: "index".into(),
                found: 9,
                supported: 2,
            }),
        );
        let stopped = CheckPlan::build(vec![newer], &[], DataSubset::None);
        assert!(matches!(stopped, Err(Error::UnknownVersion { .. })));
    }

    #[test]
    fn depth_follows_the_data_subset_and_archived_follows_the_listing() {
        let files = || vec![file(1, vec![live(1, 10, 1), live(2, 10, 2)], vec![])];
        let listing = [listed(1, 10, true), listed(2, 10, false)];
        let all = CheckPlan::build(files(), &listing, DataSubset::All).expect("plan");
        assert!(all.jobs.iter().all(|j| j.depth == Depth::Contents));
        assert_eq!(
            all.jobs.iter().map(|j| j.archived).collect::<Vec<_>>(),
            vec![true, false]
        );
        let none = CheckPlan::build(files(), &listing, DataSubset::None).expect("plan");
        assert!(none.jobs.iter().all(|j| j.depth == Depth::Header));
        // Parts split the packs by id: each pack is read in exactly one part.
        let mut read = 0;
        for n in 1..=3 {
            let part = CheckPlan::build(files(), &listing, DataSubset::Part(n, 3)).expect("plan");
            read += part
                .jobs
                .iter()
                .filter(|j| j.depth == Depth::Contents)
                .count();
        }
        assert_eq!(read, 2);
    }
}
