//! `check`: prove that a repository is complete and, with `read_data`, that every byte of
//! the chosen packs decrypts and hashes back.
//!
//! Structure: every snapshot and index file opens; every indexed pack exists with the size
//! the index says, and its header lists exactly the blobs the index says; every tree of
//! every snapshot opens and every blob it names is indexed. Packs no index lists are
//! reported (interrupted runs leave them; the next backup adopts the sound ones and prune
//! removes the rest) but are not damage.
//! With data: each chosen pack is downloaded whole, its bytes hashed against its name, and
//! every blob in it opened and checked against its id.
//!
//! Damage is reported per object, with the snapshots and files it affects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::IndexFile;
use crate::format::snapshot::Snapshot;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::cache::MISSING_FROM_STORE;
use crate::repo::tree_walk::fold_trees;
use crate::store::{Kind, ObjectName};

/// Which packs `--read-data` covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSubset {
    None,
    All,
    /// A random share (0–1] of the packs.
    Share(f64),
    /// Part `n` (1-based) of `m` parts, by pack id: running 1/m … m/m on successive days
    /// covers the whole repository.
    Part(u32, u32),
}

impl DataSubset {
    /// `N%` or `n/m`.
    pub fn parse(s: &str) -> Result<DataSubset> {
        let bad = || {
            Error::Usage(format!(
                "--read-data-subset {s:?}: give a percentage (10%) or a part n/m (3/30)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(DataSubset::Share(p / 100.0));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(DataSubset::Part(n, m))
    }

    fn wants(&self, pack: &Id) -> bool {
        match *self {
            DataSubset::None => false,
            DataSubset::All => true,
            DataSubset::Share(p) => {
                let r = getrandom::u64().unwrap_or(0);
                (r as f64 / u64::MAX as f64) < p
            }
            DataSubset::Part(n, m) => {
                let v = u32::from_be_bytes([pack.0[0], pack.0[1], pack.0[2], pack.0[3]]);
                v % m == n - 1
            }
        }
    }
}

/// One damaged or missing object.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// The object: `snapshots/…`, `index/…`, `data/xx/…`, `tree …`, `data blob …`.
    pub object: String,
    pub error: String,
}

/// A file or folder of a snapshot that cannot be restored whole.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Affected {
    pub snapshot: String,
    pub path: String,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub index_files: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    pub blobs_checked: u64,
    pub problems: Vec<Problem>,
    /// Snapshots and paths that need a damaged or missing object.
    pub affected: Vec<Affected>,
    /// Packs no index lists: not damage, but space a prune would reclaim.
    pub unindexed_packs: Vec<String>,
    /// Marked packs that a snapshot still needs: the next prune keeps them.
    pub notes: Vec<String>,
    /// What to do about the problems found, in order (empty when clean).
    pub next_steps: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.affected.is_empty()
    }
}

mod damage;
mod packs;
mod plan;

use damage::{DamagedPaths, NOT_INDEXED};
use plan::CheckPlan;

/// Checks in three steps: the snapshots and index files are opened and a plan made of
/// which packs to check how deeply (`plan`); the packs are checked on the worker pool
/// (`packs`); every snapshot's trees are walked to name what the damage reaches
/// (`damage`).
pub fn check(repo: &Repository, data: DataSubset, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    for (id, _) in repo.backend().list_ids(Kind::Snapshot)? {
        match repo.load_meta::<Snapshot>(&id) {
            Ok(s) => snapshots.push((id, s)),
            Err(e @ Error::UnknownVersion { .. }) => return Err(e),
            Err(e) => report.problems.push(Problem {
                object: ObjectName::new(Kind::Snapshot, &id).path(),
                error: e.detail(),
            }),
        }
    }
    snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    report.snapshots = snapshots.len() as u64;

    let index_files = repo
        .backend()
        .list_ids(Kind::Index)?
        .into_iter()
        .map(|(id, _)| (id, repo.load_meta::<IndexFile>(&id)));
    let listing = repo.backend().list_ids(Kind::Pack)?;
    let plan = CheckPlan::build(index_files, &listing, data)?;
    if !plan.problems.is_empty() {
        // The cache may hold what a damaged index file said before it was damaged; what
        // the snapshots need must be judged by the index files as they are now.
        repo.rebuild_index()?;
    }
    report.index_files = plan.index_files;
    report.problems.extend(plan.problems);
    report.unindexed_packs = plan.unindexed;
    report.packs = plan.jobs.len() as u64;

    let outcome = packs::check_packs(repo, &plan.jobs, progress)?;
    report.packs_read = outcome.packs_read;
    report.bytes_read = outcome.bytes_read;
    report.blobs_checked = outcome.blobs_checked;
    // Damage in a pack marked for deletion is no damage to the repository (`repair
    // index` marks damaged packs so; a prune deletes them), unless a snapshot needs a blob
    // only that pack holds: then the paths it affects are listed below.
    for p in outcome.problems {
        if p.object.starts_with("data/")
            && plan.marked.iter().any(|m| p.object.ends_with(&m.to_hex()))
        {
            report.notes.push(format!(
                "{} is marked for deletion and damaged ({}); a prune deletes it after its grace period",
                p.object, p.error
            ));
        } else {
            report.problems.push(p);
        }
    }
    if outcome.archived_size_only > 0 {
        report.notes.push(format!(
            "{} data packs are in an archive storage class: their sizes were checked from the listing, their headers not read",
            outcome.archived_size_only
        ));
    }
    if outcome.archived_unreadable > 0 {
        report.notes.push(format!(
            "{} data packs are in an archive storage class and not retrieved, so their contents were not checked; retrieve them (`cairn restore … --retrieve-cold`) and run the check again",
            outcome.archived_unreadable
        ));
    }

    record_damage(repo, &outcome.damaged, &outcome.sound)?;
    // Damage an earlier `--read-data` found is not seen by reading a header: say so.
    let recorded = repo.known_damaged_packs();
    for (id, _) in outcome.sound.iter().filter(|(_, whole)| !whole) {
        if let Some(why) = recorded.get(id) {
            report.notes.push(format!(
                "{} was found damaged before on this machine ({why}); its header is sound: `cairn check --read-data` reads it whole, `cairn repair index` salvages it",
                ObjectName::new(Kind::Pack, id)
            ));
        }
    }

    progress.start("snapshots", snapshots.len() as u64);
    let mut finder = DamagedPaths {
        repo,
        bad_packs: &outcome.bad_packs,
        bad_blobs: &outcome.bad_blobs,
        problems: BTreeMap::new(),
        marked_needed: BTreeSet::new(),
        marked: &plan.marked,
    };
    let mut damaged = HashMap::new();
    for (sid, snap) in &snapshots {
        fold_trees(repo, snap.tree, &mut finder, &mut damaged)?;
        for path in damaged.get(&snap.tree).into_iter().flatten() {
            report.affected.push(Affected {
                snapshot: sid.short(),
                path: format!("/{path}"),
            });
        }
        progress.advance(1);
    }
    report.problems.extend(finder.problems.into_values());
    for pack in finder.marked_needed {
        report.notes.push(format!(
            "pack {pack} is marked for deletion but a snapshot needs it; the next prune keeps it"
        ));
    }
    report.next_steps = next_steps(&report);
    Ok(report)
}

/// The steps that mend what `report` found, in the order that works (README, "When
/// something is damaged"); each only where its kind of damage was found.
fn next_steps(report: &CheckReport) -> Vec<String> {
    if report.is_clean() {
        return Vec::new();
    }
    let any = |prefix: &str| report.problems.iter().any(|p| p.object.starts_with(prefix));
    let packs = any("data/");
    let index_files = any("index/");
    let blob_problems = || {
        report
            .problems
            .iter()
            .filter(|p| p.object.starts_with("tree ") || p.object.starts_with("data blob "))
    };
    let blobs = blob_problems().next().is_some();
    // A blob that is indexed but does not open lies in a damaged pack.
    let blobs_damaged = blob_problems().any(|p| !p.error.contains(NOT_INDEXED));
    let snapshot_files = any("snapshots/");
    let mut steps = vec![
        "copy the repository aside before changing it (a plain copy of the folder or bucket), so that no repair can make things worse".to_string(),
    ];
    // Blobs in no index are found again only if a pack no index lists holds them.
    if packs || index_files || blobs_damaged || (blobs && !report.unindexed_packs.is_empty()) {
        let read_all = if packs {
            ""
        } else {
            " (add --read-all-packs to also read every pack whole and drop blobs that do not open)"
        };
        steps.push(format!(
            "`cairn repair index`{read_all}: rebuilds the index from the packs, drops what is lost, salvages what still opens from damaged packs{}",
            if report.unindexed_packs.is_empty() {
                ""
            } else {
                ", and indexes the packs no index lists"
            }
        ));
    }
    // Damage that no snapshot needs (a lost pack whose data a backup has stored again)
    // only wants the index mended.
    let lost = blobs || !report.affected.is_empty();
    if lost {
        steps.push(
            "back up the same paths again: every file whose source still has the lost data stores it again, which mends every snapshot that needs the same data".into(),
        );
    }
    if lost || snapshot_files {
        steps.push(format!(
            "`cairn repair snapshots`: writes a repaired copy of each snapshot that still needs lost data (tagged `repaired`; add --forget to remove the damaged originals{})",
            if snapshot_files {
                " and the snapshot files that cannot be read"
            } else {
                ""
            }
        ));
    }
    steps.push("`cairn check` again (with --read-data to read every pack)".into());
    steps
}

/// Keeps what the check found in the local record of damaged packs, so that the next
/// backup stores again the blobs of damaged packs (see `IndexCache::note_damaged`), and
/// forgets packs found sound: read whole, or (when recorded only as missing) present with
/// a header that matches the index.
fn record_damage(repo: &Repository, damaged: &[(Id, String)], sound: &[(Id, bool)]) -> Result<()> {
    let index = repo.index()?;
    let known = index.damaged_packs();
    let settled: Vec<Id> = sound
        .iter()
        .filter(|(id, whole)| {
            known
                .get(id)
                .is_some_and(|why| *whole || why == MISSING_FROM_STORE)
        })
        .map(|(id, _)| *id)
        .collect();
    index.clear_damaged(settled)?;
    repo.note_damaged_packs(damaged.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_parts_cover_everything_once() {
        assert_eq!(
            DataSubset::parse("10%").expect("ok"),
            DataSubset::Share(0.1)
        );
        assert_eq!(
            DataSubset::parse("2/7").expect("ok"),
            DataSubset::Part(2, 7)
        );
        for bad in ["0%", "101%", "0/3", "4/3", "x", "1/0"] {
            assert!(DataSubset::parse(bad).is_err(), "{bad}");
        }
        for i in 0..200u8 {
            let mut id = Id::default();
            id.0[3] = i;
            id.0[0] = i.wrapping_mul(7);
            let hits = (1..=5)
                .filter(|n| DataSubset::Part(*n, 5).wants(&id))
                .count();
            assert_eq!(hits, 1);
        }
    }
}
