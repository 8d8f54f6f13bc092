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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::IndexFile;
use crate::format::pack::BlobLocation;
use crate::format::pack::{BlobType, PackEntry, decode_header};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::progress::Progress;
use crate::repo::walk::{TreeFold, fold_trees};
use crate::repo::{Repository, pool};
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
            Error::Invalid(format!(
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
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What is known about one pack from the index files.
struct IndexedInfo {
    size: u64,
    entries: Vec<PackEntry>,
    marked: bool,
}

pub fn check(repo: &Repository, data: DataSubset, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // Snapshots.
    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    for (id, _) in repo.backend().list_ids(Kind::Snapshot)? {
        match repo.load_meta::<Snapshot>(&id) {
            Ok(s) => snapshots.push((id, s)),
            Err(e @ Error::UnknownVersion { .. }) => return Err(e),
            Err(e) => report.problems.push(Problem {
                object: format!("snapshots/{id}"),
                error: e.to_string(),
            }),
        }
    }
    snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    report.snapshots = snapshots.len() as u64;

    // Index files. A pack listed live anywhere is live; the entries of its first listing
    // are the ones compared with its header.
    let mut indexed: BTreeMap<Id, IndexedInfo> = BTreeMap::new();
    for (id, _) in repo.backend().list_ids(Kind::Index)? {
        report.index_files += 1;
        let file: IndexFile = match repo.load_meta(&id) {
            Ok(f) => f,
            Err(e @ Error::UnknownVersion { .. }) => return Err(e),
            Err(e) => {
                report.problems.push(Problem {
                    object: format!("index/{id}"),
                    error: e.to_string(),
                });
                continue;
            }
        };
        for p in file.packs {
            match indexed.get_mut(&p.id) {
                Some(info) if info.marked => {
                    info.marked = false;
                    info.entries = p.blobs;
                    info.size = p.size;
                }
                Some(_) => {}
                None => {
                    indexed.insert(
                        p.id,
                        IndexedInfo {
                            size: p.size,
                            entries: p.blobs,
                            marked: false,
                        },
                    );
                }
            }
        }
        for m in file.delete {
            indexed.entry(m.id).or_insert(IndexedInfo {
                size: m.size,
                entries: m.blobs,
                marked: true,
            });
        }
    }

    // Packs: present, right size, header as indexed, and (chosen ones) every blob sound.
    // Archived ones (S3 GLACIER, DEEP_ARCHIVE) cannot be read before a retrieval.
    let listing = repo.backend().list_ids(Kind::Pack)?;
    let archived: HashSet<Id> = listing
        .iter()
        .filter(|(_, l)| l.archived.is_some())
        .map(|(id, _)| *id)
        .collect();
    let stored: std::collections::HashMap<Id, u64> =
        listing.into_iter().map(|(id, l)| (id, l.size)).collect();
    let mut unindexed: Vec<String> = stored
        .keys()
        .filter(|id| !indexed.contains_key(id))
        .map(|id| ObjectName::new(Kind::Pack, id).path())
        .collect();
    unindexed.sort();
    report.unindexed_packs = unindexed;
    let jobs: Vec<PackJob> = indexed
        .iter()
        .filter(|(id, info)| !info.marked || stored.contains_key(id))
        .map(|(id, info)| PackJob {
            id,
            info,
            stored_size: stored.get(id).copied(),
            depth: if data.wants(id) {
                Depth::Contents
            } else {
                Depth::Header
            },
            archived: archived.contains(id),
        })
        .collect();
    report.packs = jobs.len() as u64;
    progress.start("packs", jobs.len() as u64);
    let outcome = Mutex::new(PackOutcome::default());
    let workers = crate::threads().max(repo.backend().write_concurrency());
    pool::for_each(&jobs, workers, |job| {
        let result = check_pack(repo, job);
        if let Ok(mut o) = outcome.lock() {
            o.add(*job.id, result);
        }
        progress.advance(1);
        ControlFlow::Continue(())
    });
    let outcome = outcome
        .into_inner()
        .map_err(|_| Error::Internal("a check worker panicked".into()))?;
    report.packs_read = outcome.packs_read;
    report.bytes_read = outcome.bytes_read;
    report.blobs_checked = outcome.blobs_checked;
    report.problems.extend(outcome.problems);
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

    // Trees and what they name.
    progress.start("snapshots", snapshots.len() as u64);
    let mut finder = DamagedPaths {
        repo,
        bad_packs: &outcome.bad_packs,
        bad_blobs: &outcome.bad_blobs,
        problems: BTreeMap::new(),
        marked_needed: BTreeSet::new(),
        marked: indexed
            .iter()
            .filter(|(_, i)| i.marked)
            .map(|(id, _)| *id)
            .collect(),
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
    Ok(report)
}

#[derive(Default)]
struct PackOutcome {
    /// Archived packs checked by their listed size only (no --read-data).
    archived_size_only: u64,
    /// Archived packs --read-data could not read (not retrieved): unchecked, not damaged.
    archived_unreadable: u64,
    packs_read: u64,
    bytes_read: u64,
    blobs_checked: u64,
    problems: Vec<Problem>,
    /// Packs that cannot be used at all (missing, unreadable header).
    bad_packs: HashSet<Id>,
    /// Single blobs that failed to open.
    bad_blobs: HashSet<(BlobType, Id)>,
}

/// One pack to check, and how deeply.
struct PackJob<'a> {
    id: &'a Id,
    info: &'a IndexedInfo,
    /// Its size in the store's listing; `None` when it is not there.
    stored_size: Option<u64>,
    depth: Depth,
    /// In an archive storage class (the listing says).
    archived: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Its header, read from the pack's end (or, archived, its listed size only).
    Header,
    /// Every byte: the whole pack is read and each blob opened.
    Contents,
}

/// What was left unchecked of an archived pack.
enum ArchivedPack {
    /// Its size was checked from the listing; it was not to be read.
    SizeOnly,
    /// It was to be read and is not retrieved: unchecked, not damaged.
    NotRetrieved,
}

struct PackResult {
    archived: Option<ArchivedPack>,
    read: Option<u64>,
    blobs_checked: u64,
    /// (problem, whole pack unusable)
    problems: Vec<(String, bool)>,
    bad_blobs: Vec<(BlobType, Id)>,
}

impl PackOutcome {
    fn add(&mut self, id: Id, r: PackResult) {
        match r.archived {
            Some(ArchivedPack::NotRetrieved) => self.archived_unreadable += 1,
            Some(ArchivedPack::SizeOnly) => self.archived_size_only += 1,
            None => {}
        }
        if let Some(bytes) = r.read {
            self.packs_read += 1;
            self.bytes_read += bytes;
        }
        self.blobs_checked += r.blobs_checked;
        let object = ObjectName::new(Kind::Pack, &id).path();
        for (error, whole) in r.problems {
            if whole {
                self.bad_packs.insert(id);
            }
            self.problems.push(Problem {
                object: object.clone(),
                error,
            });
        }
        self.bad_blobs.extend(r.bad_blobs);
    }
}

fn same_entries(a: &[PackEntry], b: &[PackEntry]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by_key(|e| (e.offset, e.kind, e.id));
    b.sort_by_key(|e| (e.offset, e.kind, e.id));
    a == b
}

fn check_pack(repo: &Repository, job: &PackJob) -> PackResult {
    let (id, info) = (job.id, job.info);
    let read_data = job.depth == Depth::Contents;
    let mut r = PackResult {
        archived: None,
        read: None,
        blobs_checked: 0,
        problems: Vec::new(),
        bad_blobs: Vec::new(),
    };
    let name = ObjectName::new(Kind::Pack, id);
    let Some(size) = job.stored_size else {
        r.problems
            .push(("is missing from the store".to_string(), true));
        return r;
    };
    if size != info.size {
        r.problems.push((
            format!("is {size} bytes, the index says {}", info.size),
            true,
        ));
        return r;
    }
    if job.archived && !read_data {
        r.archived = Some(ArchivedPack::SizeOnly);
        return r;
    }
    let header = if read_data {
        let bytes = match repo.backend().read(&name) {
            Ok(b) => b,
            Err(Error::Archived { .. }) => {
                r.archived = Some(ArchivedPack::NotRetrieved);
                return r;
            }
            Err(e) => {
                r.problems.push((format!("cannot be read: {e}"), true));
                return r;
            }
        };
        r.read = Some(bytes.len() as u64);
        if Id::of_stored(&bytes) != *id {
            r.problems
                .push(("its bytes do not match its name".to_string(), false));
        }
        let header = match decode_header(repo.key(), &bytes, size, &name.path()) {
            Ok(h) => h,
            Err(e) => {
                r.problems.push((format!("header: {e}"), true));
                return r;
            }
        };
        for e in &header {
            let loc = BlobLocation {
                pack: *id,
                entry: *e,
            };
            let sealed = bytes.get(e.offset as usize..(e.offset + e.length) as usize);
            let opened = sealed
                .ok_or_else(|| Error::corrupt(name.path(), "blob outside the pack"))
                .and_then(|s| crate::format::blob::open_blob(repo.key(), &loc, s));
            r.blobs_checked += 1;
            if let Err(err) = opened {
                r.problems.push((err.to_string(), false));
                r.bad_blobs.push((e.kind, e.id));
            }
        }
        header
    } else {
        match repo.read_pack_header(id, size) {
            Ok((h, _)) => h,
            Err(e) => {
                r.problems.push((format!("header: {e}"), true));
                return r;
            }
        }
    };
    if !info.entries.is_empty() && !same_entries(&header, &info.entries) {
        r.problems.push((
            "its header does not list the blobs the index says it holds".to_string(),
            true,
        ));
    }
    r
}

/// Finds the damaged paths of snapshot trees, each distinct tree once (`fold_trees`), so
/// that every snapshot sharing a damaged subtree is reported.
struct DamagedPaths<'a> {
    repo: &'a Repository,
    bad_packs: &'a HashSet<Id>,
    bad_blobs: &'a HashSet<(BlobType, Id)>,
    problems: BTreeMap<String, Problem>,
    marked: HashSet<Id>,
    marked_needed: BTreeSet<Id>,
}

impl DamagedPaths<'_> {
    /// Whether a blob can be read; records why not.
    fn blob_ok(&mut self, kind: BlobType, id: &Id) -> bool {
        let what = match kind {
            BlobType::Data => format!("data blob {id}"),
            BlobType::Tree => format!("tree {id}"),
        };
        let loc = match self.repo.index().and_then(|index| index.get(kind, id)) {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: "is in no index: the repository is missing it".into(),
                });
                return false;
            }
            Err(e) => {
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: e.to_string(),
                });
                return false;
            }
        };
        if self.marked.contains(&loc.pack)
            && !self
                .repo
                .index()
                .and_then(|index| index.contains(kind, id))
                .unwrap_or(false)
        {
            self.marked_needed.insert(loc.pack);
        }
        !(self.bad_packs.contains(&loc.pack) || self.bad_blobs.contains(&(kind, *id)))
    }
}

/// A tree's value is its damaged paths, relative to it; empty for a sound tree, `[""]`
/// for one that cannot be read.
impl TreeFold for DamagedPaths<'_> {
    type Value = Vec<String>;

    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
        if !self.blob_ok(BlobType::Tree, id) {
            return Ok(None);
        }
        match repo.load_tree(id) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                let what = format!("tree {id}");
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: e.to_string(),
                });
                Ok(None)
            }
        }
    }

    fn value(
        &mut self,
        _: &Id,
        tree: Option<&Tree>,
        done: &HashMap<Id, Vec<String>>,
    ) -> Result<Vec<String>> {
        let Some(tree) = tree else {
            return Ok(vec![String::new()]);
        };
        let mut damaged = Vec::new();
        for node in &tree.nodes {
            let name = String::from_utf8_lossy(&node.name).into_owned();
            match node.kind {
                NodeKind::Dir => {
                    let below = node.subtree.and_then(|sub| done.get(&sub));
                    for p in below.into_iter().flatten() {
                        damaged.push(join(&name, p));
                    }
                }
                NodeKind::File => {
                    let mut ok = true;
                    for blob in &node.content {
                        ok &= self.blob_ok(BlobType::Data, blob);
                    }
                    if !ok {
                        damaged.push(name);
                    }
                }
                _ => {}
            }
        }
        Ok(damaged)
    }
}

fn join(name: &str, rest: &str) -> String {
    if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{rest}")
    }
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
