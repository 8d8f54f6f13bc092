//! The local index cache: where each blob (type, id) is, in which pack and at which place.
//!
//! It is only a cache. Each open compares it with the repository: the repository id must
//! match, and the set of index files it was built from must still all exist. A cache that
//! fails either test is cleared and rebuilt from the index files; one that is damaged is
//! rebuilt; one held by another cairn process is left to it, and this run builds a
//! temporary one.
//!
//! On disk it is a handful of immutable sorted tables (see [`table`]) and a manifest naming
//! them and the index files each covers. New index files become new tables; small tables
//! are merged into bigger ones so that a lookup reads few of them. Memory holds each
//! table's fences, 8 bytes per 51 blobs, and the smallest tables whole up to 16 MiB;
//! the rest is read block by block. Building the cache from many index files sorts them
//! in bounded runs and merges the runs.

mod compaction;
mod damaged;
mod merge;
mod pack_lists;
mod private_files;
mod sync;
mod table;

pub(crate) use private_files::{write_private, write_sealed_file};

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::{BlobLocation, BlobType};

use damaged::DamagedPacks;
use table::{KEY_LEN, Record, Table};

/// Why a pack that index files list and the store lacks is recorded as damaged.
pub const MISSING_FROM_STORE: &str = "missing from the store";

/// Bumped whenever the cache's encoding changes; a mismatch rebuilds it.
const CACHE_FORMAT: &str = "cairn-cache-5";
const MANIFEST: &str = "index.manifest";
/// Records sorted in memory before they are written as one table while the cache is
/// built from index files: 100k records are 7.9 MB.
const RUN_RECORDS: usize = 100_000;
/// Tables are held in memory, smallest first, up to this many bytes: a repository of up
/// to 200k blobs is looked up without a system call; beyond, memory stays at this.
const RESIDENT_BYTES: usize = 16 << 20;

/// The manifest: which tables make up the cache and which index files each one covers.
#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    format: String,
    repository: Option<Id>,
    next: u64,
    tables: Vec<ManifestTable>,
}

#[derive(Serialize, Deserialize)]
struct ManifestTable {
    number: u64,
    indexes: Vec<Id>,
}

/// One table of the cache and the index files it was built from.
struct Part {
    number: u64,
    indexes: Vec<Id>,
    table: Table,
}

#[derive(Default)]
struct State {
    repository: Option<Id>,
    next: u64,
    /// Biggest first: a known blob is most likely in the biggest table, so a lookup that
    /// finds it live there reads no other.
    parts: Vec<Arc<Part>>,
}

impl State {
    fn add(&mut self, part: Part) {
        self.parts.push(Arc::new(part));
        self.parts
            .sort_by_key(|p| std::cmp::Reverse(p.table.count()));
    }
}

pub struct IndexCache {
    dir: PathBuf,
    state: RwLock<State>,
    /// One merge at a time.
    merging: Mutex<()>,
    /// Packs found missing or damaged (see [`damaged`]): never deduplicated against, and
    /// read from only when no other location of a blob is known.
    damaged: RwLock<DamagedPacks>,
    /// Held for as long as the cache is open: one process per cache folder.
    _lock: Option<File>,
    /// Removes a temporary cache when it is dropped.
    _temp: Option<tempfile::TempDir>,
}

/// Why a cache folder could not be opened.
enum OpenError {
    /// Another process holds it.
    Busy,
    Other(Error),
}

fn table_name(number: u64) -> String {
    format!("index-{number:010}.tbl")
}

/// The pack list (see [`packs`]) of table `number`.
fn packs_name(number: u64) -> String {
    format!("index-{number:010}.packs")
}

fn is_table_file(name: &str) -> bool {
    name.starts_with("index-")
        && (name.ends_with(".tbl") || name.ends_with(".packs") || name.ends_with(".tmp"))
}

impl IndexCache {
    /// Opens (or creates) the cache in `dir`. Falls back to a temporary cache when the
    /// directory's cache cannot be used.
    pub fn open(dir: Option<&Path>) -> Result<IndexCache> {
        if let Some(dir) = dir {
            match Self::open_at(dir) {
                Ok(c) => {
                    tracing::debug!("index cache at {}", dir.display());
                    return Ok(c);
                }
                Err(OpenError::Busy) => {
                    // Another cairn process works on the same repository. Its cache is
                    // fine; this run builds a private one from the index files.
                    tracing::info!(
                        "index cache {} is in use by another cairn process; using a temporary one",
                        dir.display()
                    );
                }
                Err(OpenError::Other(e)) => {
                    tracing::warn!("index cache {} unusable ({e})", dir.display());
                    tracing::warn!("using a temporary index cache for this run");
                }
            }
        }
        let temp = tempfile::Builder::new()
            .prefix("cairn-cache-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let mut cache = IndexCache::empty(temp.path().to_path_buf(), None, dir);
        cache._temp = Some(temp);
        Ok(cache)
    }

    /// The folder the cache lives in (a temporary one when the usual was unusable).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An empty cache in `dir`, with the record of damaged packs kept in `damaged_dir`
    /// (the usual cache folder, also for a temporary cache).
    fn empty(dir: PathBuf, lock: Option<File>, damaged_dir: Option<&Path>) -> IndexCache {
        IndexCache {
            dir,
            state: RwLock::new(State::default()),
            merging: Mutex::new(()),
            damaged: RwLock::new(DamagedPacks::load(damaged_dir)),
            _lock: lock,
            _temp: None,
        }
    }

    fn open_at(dir: &Path) -> Result<IndexCache, OpenError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let other = |e| OpenError::Other(Error::io(dir, e));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(other)?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| OpenError::Other(Error::io(&lock_path, e)))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Busy),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(OpenError::Other(Error::io(&lock_path, e)));
            }
        }
        // Caches of cairn before this format were sled databases.
        let sled = dir.join("index.sled");
        if sled.exists() {
            let _ = std::fs::remove_dir_all(&sled);
        }
        let cache = IndexCache::empty(dir.to_path_buf(), Some(lock), Some(dir));
        match cache.load() {
            Ok(state) => *cache.write() = state,
            Err(e) => {
                // A damaged cache is thrown away and built anew.
                tracing::warn!(
                    "index cache {} unusable ({e}); rebuilding it",
                    dir.display()
                );
            }
        }
        cache.remove_strays();
        Ok(cache)
    }

    /// Reads the manifest and opens its tables. No manifest is an empty cache.
    fn load(&self) -> Result<State> {
        let path = self.dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let damaged = || Error::corrupt(path.display().to_string(), "cannot decode");
        let (body, sum) = bytes
            .split_at_checked(bytes.len().wrapping_sub(32))
            .ok_or_else(damaged)?;
        if blake3::hash(body).as_bytes()[..] != sum[..] {
            return Err(damaged());
        }
        let manifest: Manifest = ciborium::from_reader(body).map_err(|_| damaged())?;
        if manifest.format != CACHE_FORMAT {
            // Written by another version of cairn: start over.
            return Ok(State::default());
        }
        let mut tables = Vec::with_capacity(manifest.tables.len());
        for t in manifest.tables {
            let table = Table::open(&self.dir.join(table_name(t.number)))?;
            tables.push((t, table));
        }
        let mut by_size: Vec<usize> = (0..tables.len()).collect();
        by_size.sort_by_key(|&i| tables[i].1.block_bytes());
        let mut resident = 0;
        for i in by_size {
            let table = &mut tables[i].1;
            if resident + table.block_bytes() <= RESIDENT_BYTES {
                table.make_resident()?;
                resident += table.block_bytes();
            }
        }
        let mut parts: Vec<Arc<Part>> = tables
            .into_iter()
            .map(|(t, table)| {
                Arc::new(Part {
                    number: t.number,
                    indexes: t.indexes,
                    table,
                })
            })
            .collect();
        parts.sort_by_key(|p| std::cmp::Reverse(p.table.count()));
        Ok(State {
            repository: manifest.repository,
            next: manifest.next,
            parts,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the manifest of `state`; the caller holds the write lock, so writes are in order.
    fn save(&self, state: &State) -> Result<()> {
        let manifest = Manifest {
            format: CACHE_FORMAT.into(),
            repository: state.repository,
            next: state.next,
            tables: state
                .parts
                .iter()
                .map(|p| ManifestTable {
                    number: p.number,
                    indexes: p.indexes.clone(),
                })
                .collect(),
        };
        write_sealed_file(
            &self.dir.join(MANIFEST),
            crate::format::cbor::encode(&manifest),
        )
    }

    /// Deletes table files the manifest does not name: leftovers of an interrupted run.
    fn remove_strays(&self) {
        let keep: HashSet<String> = self
            .read()
            .parts
            .iter()
            .flat_map(|p| [table_name(p.number), packs_name(p.number)])
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if is_table_file(&name) && !keep.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Empties the cache and makes it the cache of `repository`.
    pub(crate) fn reset(&self, repository: &Id) -> Result<()> {
        let mut state = self.write();
        state.parts.clear();
        state.repository = Some(*repository);
        self.save(&state)?;
        drop(state);
        self.remove_strays();
        Ok(())
    }

    /// Holds a new table in memory if it fits in what the other tables, but those in
    /// `leaving`, leave of the budget.
    fn maybe_resident(&self, table: &mut Table, leaving: &HashSet<u64>) -> Result<()> {
        let used: usize = self
            .read()
            .parts
            .iter()
            .filter(|p| !leaving.contains(&p.number))
            .map(|p| p.table.resident_bytes())
            .sum();
        if used + table.block_bytes() <= RESIDENT_BYTES {
            table.make_resident()?;
        }
        Ok(())
    }

    /// A number for a new table file. The manifest records it with the table: a table
    /// file written but never recorded is a stray, deleted at the next open before any
    /// number is handed out again.
    fn allocate(&self) -> u64 {
        let mut state = self.write();
        let n = state.next;
        state.next += 1;
        n
    }

    /// Looks `key` up in every table: the best location by [`Record::rank`], with its
    /// rank; rank 0 (live, in a pack not known damaged) if any table has one.
    fn lookup(&self, key: &[u8; KEY_LEN]) -> Result<Option<(u8, Record)>> {
        let state = self.read();
        let damaged = self.damaged_read();
        let is_damaged = |id: &Id| !damaged.is_empty() && damaged.contains(id);
        let mut best: Option<(u8, Record)> = None;
        for part in &state.parts {
            match part.table.find(key) {
                Ok(Some(r)) => {
                    let rank = r.rank(&is_damaged);
                    if rank == 0 {
                        return Ok(Some((0, r)));
                    }
                    if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                        best = Some((rank, r));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    drop(damaged);
                    drop(state);
                    self.discard();
                    return Err(e);
                }
            }
        }
        Ok(best)
    }

    fn damaged_read(&self) -> std::sync::RwLockReadGuard<'_, DamagedPacks> {
        self.damaged.read().unwrap_or_else(|p| p.into_inner())
    }

    fn damaged_write(&self) -> std::sync::RwLockWriteGuard<'_, DamagedPacks> {
        self.damaged.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records packs found missing from the store or damaged, with why: from now on no
    /// backup on this machine deduplicates against their blobs, and readers take any
    /// other location first. Kept across runs (see [`damaged`]).
    ///
    /// Returns whether a pack was new to the record. Then the tables may hold a blob's
    /// location in such a pack where another copy exists (a table keeps one location per
    /// blob, chosen without this knowledge), so the next open rebuilds them; a caller
    /// that needs the better locations at once rebuilds now (`Repository::rebuild_index`).
    pub fn note_damaged(&self, packs: impl IntoIterator<Item = (Id, String)>) -> Result<bool> {
        let new = self.damaged_write().add(packs)?;
        if new {
            self.discard();
        }
        Ok(new)
    }

    /// Forgets packs found sound again, or gone from every index file.
    pub fn clear_damaged(&self, packs: impl IntoIterator<Item = Id>) -> Result<()> {
        self.damaged_write().remove(packs)
    }

    /// The packs known to be missing or damaged, and why.
    pub fn damaged_packs(&self) -> std::collections::BTreeMap<Id, String> {
        self.damaged_read().all().clone()
    }

    /// Whether `pack` is known to be missing or damaged.
    pub fn is_damaged(&self, pack: &Id) -> bool {
        self.damaged_read().contains(pack)
    }

    /// Makes the next open rebuild the cache, after a table was found damaged.
    fn discard(&self) {
        let _ = std::fs::remove_file(self.dir.join(MANIFEST));
    }

    /// Where a blob can be read from: a live pack, or failing that a pack marked for
    /// deletion that still exists.
    pub fn get(&self, kind: BlobType, id: &Id) -> Result<Option<BlobLocation>> {
        Ok(self
            .lookup(&table::key(kind, id))?
            .and_then(|(_, r)| r.location()))
    }

    /// Whether a blob is in a live pack not known to be damaged: only those may be
    /// deduplicated against, because a marked pack may be deleted before the snapshot
    /// that would use it is written, and a damaged one cannot give the blob back.
    pub fn contains(&self, kind: BlobType, id: &Id) -> Result<bool> {
        // Rank 0 is exactly that, and the lookup ranked it under the damage lock already.
        Ok(matches!(self.lookup(&table::key(kind, id))?, Some((0, _))))
    }

    /// Calls `each` with every cached blob's location (live or marked pack), in key order.
    /// Reads from disk as it goes, so memory stays flat.
    pub fn for_each(&self, each: &mut dyn FnMut(&BlobLocation) -> Result<()>) -> Result<()> {
        let parts = self.read().parts.clone();
        let tables: Vec<&Table> = parts.iter().map(|p| &p.table).collect();
        let damaged = self.damaged_packs();
        merge::merge(
            &tables,
            &|id| damaged.contains_key(id),
            &mut |r| match r.location() {
                Some(loc) => each(&loc),
                None => Ok(()),
            },
        )
    }

    /// Every pack that the cached index files list, live or marked (with or without its
    /// blobs). Read from disk on each call: 32 bytes per pack, for the caller to drop.
    pub fn listed_packs(&self) -> Result<HashSet<Id>> {
        // No merge may remove a list while it is read.
        let _no_merge = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        let parts = self.read().parts.clone();
        let mut listed = HashSet::new();
        for part in &parts {
            match pack_lists::read(&self.dir.join(packs_name(part.number))) {
                Ok(ids) => listed.extend(ids),
                Err(e) => {
                    self.discard();
                    return Err(e);
                }
            }
        }
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::compaction::{MAX_TABLES, Merge};
    use super::*;
    use crate::format::index::IndexFile;
    use crate::format::index::IndexedPack;
    use crate::format::pack::{Compression, PackEntry};

    fn id(i: u64) -> Id {
        Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    /// An index file of `blobs` data blobs in one pack.
    fn index(pack: u64, blobs: std::ops::Range<u64>) -> IndexFile {
        let mut f = IndexFile::new();
        f.packs.push(IndexedPack {
            id: id(pack),
            size: 1,
            blobs: blobs
                .map(|i| PackEntry {
                    kind: BlobType::Data,
                    id: id(i),
                    offset: i as u32,
                    length: 1,
                    raw_length: 1,
                    compression: Compression::None,
                })
                .collect(),
        });
        f
    }

    #[test]
    fn many_index_files_merge_into_few_tables_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id(u64::MAX);
        let names: Vec<Id> = (0..30).map(|n| id(1_000_000 + n)).collect();
        {
            let cache = IndexCache::open(Some(dir.path())).unwrap();
            cache.sync(&repo, &[], |_| unreachable!()).unwrap();
            for (n, name) in names.iter().enumerate() {
                let n = n as u64;
                cache
                    .add_index(name, &index(500 + n, n * 100..n * 100 + 100))
                    .unwrap();
            }
            assert!(cache.read().parts.len() <= MAX_TABLES);
            cache.flush().unwrap();
        }
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        cache
            .sync(&repo, &names, |_| panic!("every index file is cached"))
            .unwrap();
        for i in 0..3000 {
            let loc = cache.get(BlobType::Data, &id(i)).unwrap().unwrap();
            assert_eq!(loc.pack, id(500 + i / 100));
            assert!(cache.contains(BlobType::Data, &id(i)).unwrap());
            assert!(!cache.contains(BlobType::Tree, &id(i)).unwrap());
        }
        assert!(!cache.contains(BlobType::Data, &id(3000)).unwrap());
        let mut n = 0;
        cache
            .for_each(&mut |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 3000);
    }

    /// A cache in `dir` built from index file 1: blobs 0..10 in pack 7.
    fn cache_of_one_index(dir: &Path, repo: &Id) -> IndexCache {
        let cache = IndexCache::open(Some(dir)).unwrap();
        cache.sync(repo, &[id(1)], |_| Ok(index(7, 0..10))).unwrap();
        cache
    }

    #[test]
    fn a_second_process_gets_a_temporary_cache_and_stale_caches_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id(u64::MAX);
        let first = cache_of_one_index(dir.path(), &repo);
        let second = IndexCache::open(Some(dir.path())).unwrap();
        assert!(second._temp.is_some(), "locked folder: a temporary cache");
        drop((first, second));

        // Index file 1 replaced by 2: blobs 0..5 only in a marked pack, 5..10 live.
        let replaced = || {
            let mut f = index(9, 5..10);
            f.delete.push(crate::format::index::MarkedPack {
                id: id(8),
                size: 1,
                marked: 0,
                blobs: index(8, 0..5).packs.remove(0).blobs,
            });
            f
        };
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        cache.sync(&repo, &[id(2)], |_| Ok(replaced())).unwrap();
        for i in 0..5 {
            assert_eq!(
                cache.get(BlobType::Data, &id(i)).unwrap().unwrap().pack,
                id(8)
            );
            assert!(
                !cache.contains(BlobType::Data, &id(i)).unwrap(),
                "marked only"
            );
        }
        for i in 5..10 {
            assert_eq!(
                cache.get(BlobType::Data, &id(i)).unwrap().unwrap().pack,
                id(9)
            );
        }
        // The same blob also listed live in a later index file: live wins.
        cache.add_index(&id(3), &index(10, 0..1)).unwrap();
        assert!(cache.contains(BlobType::Data, &id(0)).unwrap());
        assert_eq!(
            cache.get(BlobType::Data, &id(0)).unwrap().unwrap().pack,
            id(10)
        );
    }

    #[test]
    fn a_pack_known_damaged_yields_to_any_other_copy_through_merges_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id(u64::MAX);
        // Blobs 0..10 in pack 7 (index file 1); blobs 0..5 again in pack 9 (file 2).
        let cache = cache_of_one_index(dir.path(), &repo);
        cache.add_index(&id(2), &index(9, 0..5)).unwrap();
        assert!(cache.note_damaged([(id(7), "flipped".into())]).unwrap());
        assert!(
            !cache.note_damaged([(id(7), "flipped".into())]).unwrap(),
            "not new"
        );
        for i in 0..5 {
            assert_eq!(
                cache.get(BlobType::Data, &id(i)).unwrap().unwrap().pack,
                id(9)
            );
            assert!(cache.contains(BlobType::Data, &id(i)).unwrap());
        }
        for i in 5..10 {
            // Still readable from the damaged pack (an intact blob may open), but never
            // deduplicated against.
            assert_eq!(
                cache.get(BlobType::Data, &id(i)).unwrap().unwrap().pack,
                id(7)
            );
            assert!(!cache.contains(BlobType::Data, &id(i)).unwrap());
        }
        // Merged into one table, the sound copy is the one kept.
        cache.merge_tables(Merge::AtLeastTwo).unwrap();
        cache.flush().unwrap();
        drop(cache);
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        assert!(cache.is_damaged(&id(7)), "the record outlives the process");
        cache
            .sync(&repo, &[id(1), id(2)], |n| {
                Ok(if *n == id(1) {
                    index(7, 0..10)
                } else {
                    index(9, 0..5)
                })
            })
            .unwrap();
        for i in 0..5 {
            assert_eq!(
                cache.get(BlobType::Data, &id(i)).unwrap().unwrap().pack,
                id(9)
            );
        }
        cache.clear_damaged([id(7)]).unwrap();
        assert!(cache.contains(BlobType::Data, &id(7)).unwrap());
    }

    #[test]
    fn a_damaged_manifest_or_table_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id(u64::MAX);
        drop(cache_of_one_index(dir.path(), &repo));
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"garbage").unwrap();
        }
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        assert!(cache._temp.is_none());
        let mut loads = 0;
        let loads_ref = std::sync::Mutex::new(&mut loads);
        cache
            .sync(&repo, &[id(1)], |_| {
                **loads_ref.lock().unwrap() += 1;
                Ok(index(7, 0..10))
            })
            .unwrap();
        assert_eq!(loads, 1, "rebuilt from the index file");
        assert!(cache.contains(BlobType::Data, &id(3)).unwrap());
    }

    #[test]
    fn every_listed_pack_is_known_through_merges_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let repo = id(u64::MAX);
        let names: Vec<Id> = (0..20).map(|n| id(1_000_000 + n)).collect();
        let file = |n: u64| {
            let mut f = index(500 + n, n * 10..n * 10 + 10);
            // A pack a prune marked without knowing its blobs: no table record names it.
            f.delete.push(crate::format::index::MarkedPack {
                id: id(900 + n),
                size: 1,
                marked: 0,
                blobs: Vec::new(),
            });
            f
        };
        let want: HashSet<Id> = (0..20).flat_map(|n| [id(500 + n), id(900 + n)]).collect();
        {
            let cache = IndexCache::open(Some(dir.path())).unwrap();
            cache
                .sync(&repo, &names[..10], |i| {
                    Ok(file(names.iter().position(|n| n == i).unwrap() as u64))
                })
                .unwrap();
            for (n, name) in names.iter().enumerate().skip(10) {
                cache.add_index(name, &file(n as u64)).unwrap();
            }
            cache.flush().unwrap();
            assert_eq!(cache.listed_packs().unwrap(), want);
        }
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        cache.sync(&repo, &names, |_| panic!("cached")).unwrap();
        assert_eq!(cache.listed_packs().unwrap(), want);
        let lists = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".packs")
            })
            .count();
        assert_eq!(lists, cache.read().parts.len(), "merged lists are removed");

        // A damaged list stops the caller and makes the next open rebuild the cache.
        let number = cache.read().parts[0].number;
        std::fs::write(dir.path().join(packs_name(number)), b"garbage").unwrap();
        assert!(cache.listed_packs().is_err());
        drop(cache);
        let cache = IndexCache::open(Some(dir.path())).unwrap();
        assert!(cache.read().parts.is_empty(), "rebuilt");
    }
}
