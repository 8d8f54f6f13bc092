//! An open repository: backend, master key, config and index cache, and the operations on
//! its sealed objects that every command shares.

pub mod cache;
pub mod lock;
pub(crate) mod needed;
pub(crate) mod pool;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tree_pack_cache;
pub mod tree_walk;
pub(crate) mod writer;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::format::blob::{open_blob, open_blob_into};
use crate::format::cbor::{self, Versioned};
use crate::format::config::{ChunkerParams, Config, ObjectLockConfig};
use crate::format::crypto::{Aad, MasterKey};
use crate::format::id::Id;
use crate::format::index::IndexFile;
use crate::format::keyfile::KeyFile;
use crate::format::pack::BlobLocation;
use crate::format::pack::{BlobType, FinishedPack, PackEntry, decode_header, trailer_len};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::repo::cache::IndexCache;
use crate::repo::tree_pack_cache::TreePackCache;
use crate::store::counting::{Counting, RequestStats};
use crate::store::retry::{RetryPolicy, Retrying};
use crate::store::{Backend, Kind, ObjectName};

/// Receives each blob of a run with its position in the run: its bytes (the plaintext
/// from `read_run`, the sealed bytes from `read_run_sealed`), or why they could not be
/// had. The bytes are lent for the call only (their buffer is reused for the next blob).
pub type BlobSink<'a> = dyn FnMut(usize, Result<&[u8]>) -> Result<()> + 'a;

/// A metadata object of the repository: the folder it is stored in and the associated
/// data it is sealed with belong to its type, so no caller can pair them wrongly.
pub trait RepoFile: Serialize + DeserializeOwned + Versioned {
    const KIND: Kind;
    const AAD: Aad;
}

impl RepoFile for Config {
    const KIND: Kind = Kind::Config;
    const AAD: Aad = Aad::Config;
}

impl RepoFile for IndexFile {
    const KIND: Kind = Kind::Index;
    const AAD: Aad = Aad::Index;
}

impl RepoFile for Snapshot {
    const KIND: Kind = Kind::Snapshot;
    const AAD: Aad = Aad::Snapshot;
}

/// Pack header bytes fetched in one read; larger headers take a second.
const HEADER_TAIL: u64 = 64 * 1024;

/// Metadata objects (config, index, snapshot) carry one byte before their CBOR body.
pub(crate) const META_RAW: u8 = 0;
const META_ZSTD: u8 = 1;

thread_local! {
    /// The plaintext buffer of `Repository::read_run`, reused by each thread.
    static RUN_PLAINTEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub struct Repository {
    /// Retries transient failures of `counting`, which sees every attempt.
    backend: Arc<dyn Backend>,
    counting: Arc<Counting>,
    key: Arc<MasterKey>,
    /// The key file the password opened.
    key_file: Id,
    config: Config,
    /// The local index cache, brought up to date with the store's index files on first use
    /// (`index()`): `snapshots`, `forget`, `key` and `unlock` never need it.
    index: IndexCache,
    index_synced: AtomicBool,
    index_syncing: Mutex<()>,
    /// Packs found damaged by a read of this run that the index cache was rebuilt for,
    /// so that it names other copies of their blobs: once per pack, however many of its
    /// blobs fail.
    rebuilt_for_damage: Mutex<HashSet<Id>>,
    /// `repair index` runs: damaged index files are reported by it, not by the cache.
    repairing_index: AtomicBool,
    /// Local copies of tree packs, for remote stores with a cache folder.
    tree_packs: Option<TreePackCache>,
}

/// Options for a new repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    /// Object-lock retention recorded in the config, so that every later write gets it.
    pub object_lock: Option<ObjectLockConfig>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            object_lock: None,
        }
    }
}

pub(crate) fn seal_meta_bytes<T: Serialize>(
    key: &MasterKey,
    aad: Aad,
    value: &T,
    level: i32,
) -> Result<Vec<u8>> {
    let cbor = cbor::encode(value);
    let mut body = Vec::with_capacity(cbor.len() / 2 + 1);
    body.push(META_ZSTD);
    body.extend_from_slice(
        &zstd::bulk::compress(&cbor, level).map_err(|e| Error::Internal(format!("zstd: {e}")))?,
    );
    key.seal(aad, &body)
}

fn open_meta<T: DeserializeOwned + Versioned>(
    key: &MasterKey,
    aad: Aad,
    sealed: &[u8],
    name: &str,
) -> Result<T> {
    let plain = key.open(aad, sealed, name)?;
    decode_meta(&plain, name)
}

/// The largest decompressed metadata object read. The biggest real ones are index files
/// of [`crate::format::index::BLOBS_PER_INDEX_FILE`] blobs, a few MiB; the bound keeps a
/// compressed bomb from taking all memory.
const MAX_META_LEN: u64 = 256 * 1024 * 1024;

/// Decodes the plaintext of a metadata object: its encoding byte, then CBOR, raw or zstd.
pub(crate) fn decode_meta<T: DeserializeOwned + Versioned>(plain: &[u8], name: &str) -> Result<T> {
    let (flag, body) = plain
        .split_first()
        .ok_or_else(|| Error::corrupt(name, "empty"))?;
    match *flag {
        META_RAW => cbor::decode(body, name),
        META_ZSTD => {
            let zstd_err = |e: std::io::Error| Error::corrupt(name, format!("zstd: {e}"));
            let decoder = zstd::stream::read::Decoder::new(body).map_err(zstd_err)?;
            let mut raw = Vec::new();
            decoder
                .take(MAX_META_LEN + 1)
                .read_to_end(&mut raw)
                .map_err(zstd_err)?;
            if raw.len() as u64 > MAX_META_LEN {
                return Err(Error::corrupt(
                    name,
                    format!("decompresses to more than {MAX_META_LEN} bytes"),
                ));
            }
            cbor::decode(&raw, name)
        }
        other => Err(Error::corrupt(
            name,
            format!("unknown encoding byte {other}"),
        )),
    }
}

/// The name of the copy of the config's bytes in a repository's cache folder.
pub const CONFIG_COPY: &str = "config";

/// Keeps a copy of the config's stored bytes in the cache folder, so that `repair config`
/// can put back the very same config (same id, same settings) if the repository loses
/// it. The config is sealed and holds no secret; failing to write the copy only costs
/// that.
fn keep_config_copy(dir: &Path, bytes: &[u8]) {
    let path = dir.join(CONFIG_COPY);
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return;
    }
    // Private like every cache file (section 11 of format-spec.md).
    if let Err(e) = cache::write_private(&path, bytes) {
        tracing::debug!("no copy of the config kept in {}: {e}", dir.display());
    }
}

/// Whether `master` opens one of the repository's snapshots or index files (of the first
/// three listed of each), which proves that it is this repository's master key. `false`
/// when there are none to try.
pub(crate) fn opens_repository_objects(backend: &dyn Backend, master: &MasterKey) -> Result<bool> {
    for (kind, aad) in [(Kind::Snapshot, Aad::Snapshot), (Kind::Index, Aad::Index)] {
        // A few of each, in case one of them is damaged too.
        for (id, _) in backend.list_ids(kind)?.iter().take(3) {
            let name = ObjectName::new(kind, id);
            let bytes = match backend.read(&name) {
                Ok(b) => b,
                Err(Error::ObjectNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if master.open(aad, &bytes, &name.path()).is_ok() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The damage of a place that has no config but holds repository objects: a lost config
/// (`repair config` brings it back), or with no key file either, a repository no password
/// can open. `None` when the place holds no repository object: it is empty.
fn config_lost(backend: &dyn Backend) -> Result<Option<Error>> {
    let mut found = Vec::new();
    let mut keys = 0;
    for (kind, what) in [
        (Kind::Key, "key files"),
        (Kind::Snapshot, "snapshots"),
        (Kind::Index, "index files"),
        (Kind::Pack, "packs"),
    ] {
        // Packs are listed only when nothing else is there: a long listing, and a place
        // with key files, snapshots or index files holds a repository already.
        if kind == Kind::Pack && !found.is_empty() {
            break;
        }
        let n = match backend.list_ids(kind) {
            Ok(ids) => ids.len(),
            Err(Error::BucketNotFound(_) | Error::RepositoryNotFound(_)) => 0,
            Err(e) => return Err(e),
        };
        if kind == Kind::Key {
            keys = n;
        }
        if n > 0 {
            found.push(format!("{n} {what}"));
        }
    }
    let location = backend.location();
    Ok(match (found.is_empty(), keys) {
        (true, _) => None,
        (false, 0) => Some(Error::KeysDamaged {
            location,
            why: format!(
                "it holds {} but neither a config nor a key file",
                found.join(", ")
            ),
        }),
        (false, _) => Some(Error::ConfigMissing {
            location,
            found: found.join(", "),
        }),
    })
}

/// The default cache base: `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
pub fn default_cache_base() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("cairn"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("cairn"))
}

impl Repository {
    /// Creates a repository: a new master key wrapped under `password`, then the config.
    /// The config is written last: its presence is what makes the repository exist.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: &InitOptions,
        retry: &RetryPolicy,
    ) -> Result<Config> {
        let backend = Retrying::new(backend, retry.clone());
        match backend.stat(&ObjectName::config()) {
            Ok(Some(_)) => return Err(Error::RepositoryExists(backend.location())),
            Ok(None) => {}
            // A bucket `init` is about to create.
            Err(Error::BucketNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(damage) = config_lost(&backend)? {
            return Err(damage);
        }
        // Before anything is made: a store that cannot lock objects refuses here.
        backend.require_object_lock(opts.object_lock.as_ref())?;
        backend.create()?;
        let master = MasterKey::generate()?;
        let config = Config::new(opts.chunker, opts.zstd_level, opts.object_lock.clone())?;
        let (kid, kbytes) = KeyFile::create(&master, password)?.encode();
        backend.write(&ObjectName::new(Kind::Key, &kid), &kbytes)?;
        let sealed = seal_meta_bytes(&master, Aad::Config, &config, config.zstd_level)?;
        backend.write(&ObjectName::config(), &sealed)?;
        Ok(config)
    }

    /// Opens a repository with a password. `cache_base` holds one cache folder per
    /// repository id; `None` uses a temporary cache.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        cache_base: Option<&Path>,
        retry: &RetryPolicy,
    ) -> Result<Repository> {
        let counting = Arc::new(Counting::new(backend));
        let backend: Arc<dyn Backend> = Arc::new(Retrying::new(counting.clone(), retry.clone()));
        let config_bytes = match backend.read(&ObjectName::config()) {
            Ok(b) => b,
            Err(Error::ObjectNotFound(_)) => {
                return Err(config_lost(backend.as_ref())?
                    .unwrap_or_else(|| Error::RepositoryNotFound(backend.location())));
            }
            Err(e) => return Err(e),
        };
        let (key, config, key_file) = Self::unlock(backend.as_ref(), password, &config_bytes)?;
        config.validate()?;
        backend.require_object_lock(config.object_lock.as_ref())?;
        let cache_dir = cache_base.map(|b| b.join(config.id.to_hex()));
        let index = IndexCache::open(cache_dir.as_deref())?;
        if let Some(dir) = &cache_dir {
            keep_config_copy(dir, &config_bytes);
        }
        let tree_packs = cache_dir
            .filter(|_| backend.remote())
            .map(|d| TreePackCache::new(d.join("packs")));
        let repo = Repository {
            backend,
            counting,
            key: Arc::new(key),
            key_file,
            config,
            index,
            index_synced: AtomicBool::new(false),
            index_syncing: Mutex::new(()),
            rebuilt_for_damage: Mutex::new(HashSet::new()),
            repairing_index: AtomicBool::new(false),
            tree_packs,
        };
        Ok(repo)
    }

    /// Tries every key file. A key file that opens but whose master key does not open the
    /// config (left over from an interrupted `init`) is skipped.
    fn unlock(
        backend: &dyn Backend,
        password: &[u8],
        config_bytes: &[u8],
    ) -> Result<(MasterKey, Config, Id)> {
        let mut damaged = Vec::new();
        // A key file the password opens, whose master key does not open the config.
        let mut foreign = None;
        let keys = backend.list_ids(Kind::Key)?;
        if keys.is_empty() {
            return Err(Error::KeysDamaged {
                location: backend.location(),
                why: "keys/ holds no key file".into(),
            });
        }
        let key_count = keys.len();
        for (id, _) in keys {
            let name = ObjectName::new(Kind::Key, &id);
            let bytes = backend.read(&name)?;
            let kf = match KeyFile::decode(&bytes, &name.path()) {
                Ok(kf) => kf,
                Err(e) => {
                    damaged.push(format!("{}: {}", name.path(), e.detail()));
                    continue;
                }
            };
            let Some(master) = kf.open(password, &name.path())? else {
                tracing::debug!("key file {} is for another password", name.path());
                continue;
            };
            tracing::debug!("opened key file {}", name.path());
            match open_meta::<Config>(&master, Aad::Config, config_bytes, "config") {
                Ok(config) => return Ok((master, config, id)),
                Err(e @ Error::UnknownVersion { .. }) => return Err(e),
                // The master key opens this repository's other objects: the config is
                // what is damaged, not the key.
                Err(_) if opens_repository_objects(backend, &master)? => {
                    return Err(Error::ConfigDamaged(backend.location()));
                }
                Err(_) => foreign = Some(name.path()),
            }
        }
        if damaged.len() == key_count {
            return Err(Error::KeysDamaged {
                location: backend.location(),
                why: format!("every key file is damaged: {}", damaged.join("; ")),
            });
        }
        for d in damaged {
            tracing::warn!("key file {d}: damaged, passed over");
        }
        match foreign {
            Some(key) => Err(Error::ForeignKey {
                key,
                location: backend.location(),
            }),
            None => Err(Error::WrongPassword(backend.location())),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn key(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// The key file (password) this repository was opened with.
    pub fn key_file(&self) -> &Id {
        &self.key_file
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The index, read from the store's index files into the local cache on first use.
    pub fn index(&self) -> Result<&IndexCache> {
        // Every blob lookup comes here: once synced, a load and no lock.
        if self.index_synced.load(Ordering::Acquire) {
            return Ok(&self.index);
        }
        let _one_at_a_time = self
            .index_syncing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !self.index_synced.load(Ordering::Acquire) {
            self.sync_index()?;
            self.index_synced.store(true, Ordering::Release);
        }
        Ok(&self.index)
    }

    pub fn request_stats(&self) -> RequestStats {
        self.counting.stats()
    }

    /// Reads the repository's index files into the cache where it lacks them.
    fn sync_index(&self) -> Result<()> {
        let ids: Vec<Id> = self
            .backend
            .list_ids(Kind::Index)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let damaged = self
            .index
            .sync(&self.config.id, &ids, |id| self.load_meta(id))?;
        if !self.repairing_index.load(Ordering::Relaxed) {
            for (id, why) in damaged {
                tracing::warn!(
                    "index/{id} is damaged ({why}) and left out; `cairn repair index` rebuilds the index"
                );
            }
        }
        Ok(())
    }

    /// Says that the caller is rebuilding the index: damaged index files it meets are
    /// its work, not something to warn about.
    pub fn repairing_index(&self) {
        self.repairing_index.store(true, Ordering::Relaxed);
    }

    /// Seals a metadata object and returns its name and bytes without writing it.
    pub fn seal_meta<T: RepoFile>(&self, value: &T) -> Result<(Id, Vec<u8>)> {
        let sealed = seal_meta_bytes(&self.key, T::AAD, value, self.config.zstd_level)?;
        Ok((Id::of_stored(&sealed), sealed))
    }

    /// Reads and opens the metadata object `id` of type `T`, checking that its bytes
    /// match its name.
    pub fn load_meta<T: RepoFile>(&self, id: &Id) -> Result<T> {
        let name = ObjectName::new(T::KIND, id);
        let bytes = self.backend.read(&name)?;
        if Id::of_stored(&bytes) != *id {
            return Err(Error::corrupt(
                name.path(),
                "its bytes do not match its name",
            ));
        }
        open_meta(&self.key, T::AAD, &bytes, &name.path())
    }

    /// Writes an index file and records its blobs in the cache.
    pub fn save_index(&self, index: &IndexFile) -> Result<Id> {
        let (id, bytes) = self.seal_meta(index)?;
        self.backend
            .write(&ObjectName::new(Kind::Index, &id), &bytes)?;
        self.index()?.add_index(&id, index)?;
        Ok(id)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        let (id, bytes) = self.seal_meta(snap)?;
        self.backend
            .write(&ObjectName::new(Kind::Snapshot, &id), &bytes)?;
        Ok(id)
    }

    /// All snapshots, oldest first. Unreadable ones (damaged, or from a newer cairn) are
    /// reported and skipped.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        self.load_snapshots(false)
    }

    /// All snapshots, or an error if any one cannot be read (damaged, unreachable, or
    /// from a newer cairn). For prune: the data of a snapshot it cannot read would look
    /// unused.
    pub fn every_snapshot(&self) -> Result<Vec<(Id, Snapshot)>> {
        self.load_snapshots(true)
    }

    fn load_snapshots(&self, strict: bool) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for (id, _) in self.backend.list_ids(Kind::Snapshot)? {
            match self.load_meta::<Snapshot>(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) if strict => return Err(e),
                // A damaged snapshot or one of a newer cairn is skipped (and named), one a
                // forget removed since the listing is gone; a store that cannot be read
                // is no reason to show fewer snapshots.
                Err(e @ (Error::Corrupt(..) | Error::UnknownVersion { .. })) => {
                    tracing::warn!("skipping snapshot {}: {e}", id.short())
                }
                Err(Error::ObjectNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Every pack in the store and its size. Names that are not pack ids are left out.
    pub fn stored_packs(&self) -> Result<std::collections::HashMap<Id, u64>> {
        Ok(self
            .backend
            .list_ids(Kind::Pack)?
            .into_iter()
            .map(|(id, l)| (id, l.size))
            .collect())
    }

    /// Reads and opens the header of a stored pack of `size` bytes from the pack's end:
    /// one ranged read, or a second when the header is longer than the first. Returns the
    /// entries and the bytes read, which are the whole pack when it is small.
    pub fn read_pack_header(&self, id: &Id, size: u64) -> Result<(Vec<PackEntry>, Vec<u8>)> {
        let name = ObjectName::new(Kind::Pack, id);
        let want = size.min(HEADER_TAIL);
        let mut tail = self.backend.read_range(&name, size - want, want)?;
        if let Some(hlen) = trailer_len(&tail)
            && hlen > want
            && hlen <= size
        {
            tail = self.backend.read_range(&name, size - hlen, hlen)?;
        }
        let entries = decode_header(&self.key, &tail, size, &name.path())?;
        Ok((entries, tail))
    }

    pub fn locate(&self, kind: BlobType, id: &Id) -> Result<BlobLocation> {
        self.index()?.get(kind, id)?.ok_or_else(|| {
            Error::corrupt(
                format!(
                    "{} blob {id}",
                    if kind == BlobType::Tree {
                        "tree"
                    } else {
                        "data"
                    }
                ),
                "not in any index: the repository is missing data",
            )
        })
    }

    /// Reads, opens and checks one blob. When its pack turns out missing or damaged, and
    /// that was not known before, the index cache is rebuilt with that knowledge and the
    /// blob read from another pack that holds it, if any (a backup may have stored it
    /// again).
    pub fn load_blob(&self, kind: BlobType, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(kind, id)?;
        match self.load_blob_at(&loc) {
            Err(e @ (Error::Corrupt(..) | Error::ObjectNotFound(_))) => {
                self.load_blob_elsewhere(kind, id, &loc.pack)?.ok_or(e)
            }
            other => other,
        }
    }

    /// Blob `id` read from another pack than `failed`, whose read of it just went wrong
    /// (see [`Self::locate_elsewhere`]); `None` when no other pack holds it.
    pub fn load_blob_elsewhere(
        &self,
        kind: BlobType,
        id: &Id,
        failed: &Id,
    ) -> Result<Option<Vec<u8>>> {
        let Some(other) = self.locate_elsewhere(kind, id, failed)? else {
            return Ok(None);
        };
        let data = self.load_blob_at(&other)?;
        tracing::info!(
            "blob {} read from pack {} instead of damaged pack {}",
            id.short(),
            other.pack.short(),
            failed.short()
        );
        Ok(Some(data))
    }

    /// Where else blob `id` can be read from, after a read from `failed` found that pack
    /// missing or the blob damaged (the read recorded it): `None` when no other pack holds
    /// it. The index cache keeps one location per blob in each table, so the first such
    /// failure of a pack in a run rebuilds it with the damage known; later failures of the
    /// same pack (or of the same pack on another thread, which waits for the rebuild) look
    /// the blob up only.
    pub fn locate_elsewhere(
        &self,
        kind: BlobType,
        id: &Id,
        failed: &Id,
    ) -> Result<Option<BlobLocation>> {
        let loc = self.locate(kind, id)?;
        if loc.pack != *failed {
            return Ok(Some(loc));
        }
        {
            let mut rebuilt = self
                .rebuilt_for_damage
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if rebuilt.insert(*failed) {
                self.rebuild_index()?;
            }
        }
        let loc = self.locate(kind, id)?;
        Ok((loc.pack != *failed).then_some(loc))
    }

    pub fn load_blob_at(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        if loc.entry.kind == BlobType::Tree
            && let Some(cache) = &self.tree_packs
        {
            return self.noting_damage(&loc.pack, self.load_cached_tree_blob(cache, loc));
        }
        let opened = self
            .backend
            .read_range(
                &ObjectName::new(Kind::Pack, &loc.pack),
                u64::from(loc.entry.offset),
                u64::from(loc.entry.length),
            )
            .and_then(|sealed| open_blob(&self.key, loc, &sealed));
        self.noting_damage(&loc.pack, opened)
    }

    /// Passes `result` through, first recording `pack` as damaged in the local cache when
    /// the error says the pack is missing or a blob of it does not open, so that the next
    /// backup stores those blobs again (see `IndexCache::note_damaged`).
    fn noting_damage<T>(&self, pack: &Id, result: Result<T>) -> Result<T> {
        let why = match &result {
            Err(Error::ObjectNotFound(_)) => cache::MISSING_FROM_STORE.to_string(),
            Err(Error::Corrupt(_, why)) => why.clone(),
            _ => return result,
        };
        self.note_damaged_pack(pack, why);
        result
    }

    /// Records a pack as missing or damaged. Failing to record it is only logged: the
    /// read that found the damage reports it already.
    fn note_damaged_pack(&self, pack: &Id, why: String) {
        tracing::debug!("pack {pack} noted as damaged: {why}");
        if let Err(e) = self.index.note_damaged([(*pack, why)]) {
            tracing::warn!("cannot record damaged pack {}: {e}", pack.short());
        }
    }

    /// Records packs as missing or damaged (see `IndexCache::note_damaged`); when one is
    /// new to the record, rebuilds the index cache at once, so that every blob with a copy
    /// in a sound pack is found there from now on.
    pub fn note_damaged_packs(&self, packs: Vec<(Id, String)>) -> Result<()> {
        if self.index.note_damaged(packs)? {
            self.rebuild_index()?;
        }
        Ok(())
    }

    /// The packs this machine knows to be missing or damaged, and why (the local record;
    /// the index need not be read for it).
    pub fn known_damaged_packs(&self) -> std::collections::BTreeMap<Id, String> {
        self.index.damaged_packs()
    }

    /// Builds the index cache anew from the repository's index files.
    pub fn rebuild_index(&self) -> Result<()> {
        let _one_at_a_time = self
            .index_syncing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.index.reset(&self.config.id)?;
        self.sync_index()?;
        self.index_synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Reads neighbouring blobs of one pack with a single ranged read, then opens and
    /// checks each, handing it to `each` with its position in `locs`. `locs` must all be in
    /// one pack, in ascending offset order (see `restorer::fetch::runs`). A failed read
    /// fails the call; a blob that does not open is handed over as its error.
    pub fn read_run(&self, locs: &[BlobLocation], each: &mut BlobSink<'_>) -> Result<()> {
        // Each blob is opened into the same buffer, kept per thread between runs.
        let mut plain = RUN_PLAINTEXT.with(|p| p.take());
        let result = self.read_run_sealed(locs, &mut |i, sealed| {
            let opened = sealed.and_then(|s| open_blob_into(&self.key, &locs[i], s, &mut plain));
            let opened = self.noting_damage(&locs[i].pack, opened);
            each(i, opened.map(|()| plain.as_slice()))
        });
        RUN_PLAINTEXT.with(|p| p.replace(plain));
        match locs.first() {
            Some(first) => self.noting_damage(&first.pack, result),
            None => result,
        }
    }

    /// Like `read_run`, but hands over each blob's sealed bytes unopened (prune copies
    /// them into new packs as they are).
    pub fn read_run_sealed(&self, locs: &[BlobLocation], each: &mut BlobSink<'_>) -> Result<()> {
        let Some(first) = locs.first() else {
            return Ok(());
        };
        let start = u64::from(first.entry.offset);
        let end = locs
            .iter()
            .map(|l| u64::from(l.entry.offset) + u64::from(l.entry.length))
            .max()
            .unwrap_or(start);
        let bytes = self.backend.read_range(
            &ObjectName::new(Kind::Pack, &first.pack),
            start,
            end - start,
        )?;
        for (i, loc) in locs.iter().enumerate() {
            let sealed = u64::from(loc.entry.offset)
                .checked_sub(start)
                .map(|from| from as usize)
                .and_then(|from| bytes.get(from..from + loc.entry.length as usize))
                .ok_or_else(|| {
                    Error::Internal(format!("blobs of pack {} asked for out of order", loc.pack))
                });
            each(i, sealed)?;
        }
        Ok(())
    }

    /// Stores a finished pack. Data packs may go to colder storage; tree packs stay hot,
    /// because listing, `ls` and restore planning read them, and remote stores keep a
    /// local copy of them.
    pub fn upload_pack(&self, pack: &FinishedPack) -> Result<()> {
        let name = ObjectName::new(Kind::Pack, &pack.id);
        if pack.entries.first().map(|e| e.kind) == Some(BlobType::Data) {
            self.backend.write_cold(&name, &pack.bytes)
        } else {
            self.backend.write(&name, &pack.bytes)?;
            self.cache_tree_pack(&pack.id, &pack.bytes);
            Ok(())
        }
    }

    /// Drops the local copy of a pack that was deleted from the store.
    pub fn forget_cached_pack(&self, id: &Id) {
        if let Some(cache) = &self.tree_packs {
            cache.remove_copy(id);
        }
    }

    /// Opens a sealed metadata object read by the caller.
    pub fn open_meta<T: RepoFile>(&self, sealed: &[u8], name: &str) -> Result<T> {
        open_meta(&self.key, T::AAD, sealed, name)
    }

    /// A tree blob from the local copy of its pack, fetching the whole pack on a miss.
    fn load_cached_tree_blob(&self, cache: &TreePackCache, loc: &BlobLocation) -> Result<Vec<u8>> {
        let (offset, length) = (u64::from(loc.entry.offset), u64::from(loc.entry.length));
        if let Some(sealed) = cache.read_range(&loc.pack, offset, length) {
            match open_blob(&self.key, loc, &sealed) {
                Ok(plain) => return Ok(plain),
                // The local copy is damaged; the store's copy decides.
                Err(_) => cache.drop_copy(&loc.pack),
            }
        }
        let pack = match cache.fetch(self.backend.as_ref(), &loc.pack) {
            Ok(pack) => pack,
            // A pack whose bytes do not match its name is not kept; its other trees may
            // well be sound, so this one is read by itself, as from a local store.
            Err(Error::Corrupt(..)) => {
                let sealed = self.backend.read_range(
                    &ObjectName::new(Kind::Pack, &loc.pack),
                    offset,
                    length,
                )?;
                return open_blob(&self.key, loc, &sealed);
            }
            Err(e) => return Err(e),
        };
        let sealed = usize::try_from(offset + length)
            .ok()
            .and_then(|end| pack.get(offset as usize..end))
            .ok_or_else(|| {
                Error::corrupt(
                    format!("pack {}", loc.pack),
                    "is shorter than the index says",
                )
            })?;
        open_blob(&self.key, loc, sealed)
    }

    /// Keeps a local copy of a tree pack just written (remote stores only), so that the
    /// next backup's comparison with this snapshot reads nothing from the store.
    pub fn cache_tree_pack(&self, id: &Id, bytes: &[u8]) {
        if let Some(cache) = &self.tree_packs {
            cache.store(id, bytes);
        }
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob(BlobType::Tree, id)?;
        cbor::decode(&bytes, &format!("tree {id}"))
    }
}
