//! `repair config`: a repository whose `config` is lost (a partial copy, a sync, a
//! lifecycle rule) or damaged keeps everything else: the config holds no secret, only the
//! repository id and the settings writers share (chunk sizes, compression level, pack
//! size, object lock). It is written again, sealed under the master key that the password
//! opens from a key file, once that key is shown to open the repository's snapshots or
//! index files (so a planted key file cannot make a config for a repository it is not
//! from).
//!
//! The same bytes come back when the local cache of a machine that used the repository
//! kept a copy (`<cache>/<repository id>/config`, written on every open). Otherwise a new
//! config is made with a new repository id and the settings given (the defaults unless
//! told): reading and restoring need none of them; chunk sizes other than the original
//! ones only make the next backups store their data once more. The index tells the
//! largest chunk stored, so a `--chunk-max` below it is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::format::crypto::{Aad, MasterKey};
use crate::format::id::Id;
use crate::format::index::IndexFile;
use crate::format::keyfile::KeyFile;
use crate::format::pack::BlobType;
use crate::repo::{
    CONFIG_COPY, InitOptions, decode_meta, opens_repository_objects, seal_meta_bytes,
};
use crate::store::retry::{RetryPolicy, Retrying};
use crate::store::{Backend, Kind, ObjectName};

/// Where the config written came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// The config opens: nothing was done.
    Intact,
    /// The copy a local cache kept: the very same config.
    CachedCopy,
    /// Made anew from the settings given.
    New,
}

#[derive(Debug, Serialize)]
pub struct ConfigRepair {
    pub source: ConfigSource,
    /// The cached copy used.
    pub cached_copy: Option<PathBuf>,
    /// Whether a config was there that did not open (replaced).
    pub replaced_damaged: bool,
    pub written: bool,
    pub dry_run: bool,
    pub repository_id: Id,
    pub config: Config,
    /// The largest data blob the index files list, in bytes.
    pub largest_data_blob: Option<u32>,
}

/// Writes the config of the repository on `backend` again (see the module's comment).
/// `settings` are those of a new config; `cache_base` holds the caches to look for a
/// copy in.
pub fn repair_config(
    backend: Arc<dyn Backend>,
    password: &[u8],
    cache_base: Option<&Path>,
    settings: &InitOptions,
    dry_run: bool,
    retry: &RetryPolicy,
) -> Result<ConfigRepair> {
    let backend = Retrying::new(backend, retry.clone());
    let existing = match backend.read(&ObjectName::config()) {
        Ok(b) => Some(b),
        Err(Error::ObjectNotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let masters = master_keys(&backend, password)?;
    if let Some(bytes) = &existing {
        for master in &masters {
            if let Ok(config) = open_config(master, bytes) {
                return Ok(ConfigRepair {
                    source: ConfigSource::Intact,
                    cached_copy: None,
                    replaced_damaged: false,
                    written: false,
                    dry_run,
                    repository_id: config.id,
                    config,
                    largest_data_blob: None,
                });
            }
        }
    }
    let master = repository_master(&backend, masters)?;
    let largest_data_blob = largest_data_blob(&backend, &master)?;
    let (source, cached_copy, bytes, config) = match cached_config(cache_base, &master) {
        Some((path, bytes, config)) => (ConfigSource::CachedCopy, Some(path), bytes, config),
        None => {
            let config = Config::new(
                settings.chunker,
                settings.zstd_level,
                settings.object_lock.clone(),
            )?;
            if let Some(largest) = largest_data_blob
                && largest > config.chunker.max
            {
                return Err(Error::Invalid(format!(
                    "the repository holds chunks of up to {largest} bytes, more than --chunk-max {}: give the chunk sizes it was made with (--chunk-min, --chunk-avg, --chunk-max)",
                    config.chunker.max
                )));
            }
            let bytes = seal_meta_bytes(&master, Aad::Config, &config, config.zstd_level)?;
            (ConfigSource::New, None, bytes, config)
        }
    };
    backend.require_object_lock(config.object_lock.as_ref())?;
    if !dry_run {
        if existing.is_some() {
            backend.remove(&ObjectName::config())?;
        }
        backend.write(&ObjectName::config(), &bytes)?;
    }
    Ok(ConfigRepair {
        source,
        cached_copy,
        replaced_damaged: existing.is_some(),
        written: !dry_run,
        dry_run,
        repository_id: config.id,
        config,
        largest_data_blob,
    })
}

fn open_config(master: &MasterKey, bytes: &[u8]) -> Result<Config> {
    let plain = master.open(Aad::Config, bytes, "config")?;
    let config: Config = decode_meta(&plain, "config")?;
    config.validate()?;
    Ok(config)
}

/// Every master key the password opens from a key file.
fn master_keys(backend: &dyn Backend, password: &[u8]) -> Result<Vec<MasterKey>> {
    let keys = backend.list_ids(Kind::Key)?;
    if keys.is_empty() {
        return Err(Error::KeysDamaged {
            location: backend.location(),
            why: "keys/ holds no key file".into(),
        });
    }
    let (mut masters, mut damaged) = (Vec::new(), Vec::new());
    for (id, _) in &keys {
        let name = ObjectName::new(Kind::Key, id);
        let bytes = backend.read(&name)?;
        match KeyFile::decode(&bytes, &name.path()) {
            Ok(kf) => masters.extend(kf.open(password, &name.path())?),
            Err(e) => damaged.push(format!("{}: {}", name.path(), e.detail())),
        }
    }
    if damaged.len() == keys.len() {
        return Err(Error::KeysDamaged {
            location: backend.location(),
            why: format!("every key file is damaged: {}", damaged.join("; ")),
        });
    }
    if masters.is_empty() {
        return Err(Error::WrongPassword(backend.location()));
    }
    Ok(masters)
}

/// The master key that opens the repository's snapshots or index files; with none of
/// those to try (a repository that never finished a backup), the first one.
fn repository_master(backend: &dyn Backend, masters: Vec<MasterKey>) -> Result<MasterKey> {
    let mut first = None;
    for master in masters {
        if opens_repository_objects(backend, &master)? {
            return Ok(master);
        }
        first.get_or_insert(master);
    }
    let nothing_to_try =
        backend.list_ids(Kind::Snapshot)?.is_empty() && backend.list_ids(Kind::Index)?.is_empty();
    match first {
        Some(master) if nothing_to_try => Ok(master),
        _ => Err(Error::Unsafe(format!(
            "the password opens a key file of {}, but its master key opens none of the repository's snapshots and index files: it belongs to another repository, so no config is written with it",
            backend.location()
        ))),
    }
}

/// A copy of this repository's config kept by a local cache: one whose bytes open under
/// `master` and hold a sound config.
fn cached_config(base: Option<&Path>, master: &MasterKey) -> Option<(PathBuf, Vec<u8>, Config)> {
    let entries = std::fs::read_dir(base?).ok()?;
    for entry in entries.flatten() {
        let path = entry.path().join(CONFIG_COPY);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Ok(config) = open_config(master, &bytes)
            // The cache folder is named by the id of the config it copies.
            && entry.file_name().to_string_lossy() == config.id.to_hex()
        {
            return Some((path, bytes, config));
        }
    }
    None
}

/// The largest raw length of a data blob in the index files that open.
fn largest_data_blob(backend: &dyn Backend, master: &MasterKey) -> Result<Option<u32>> {
    let mut largest = None;
    for (id, _) in backend.list_ids(Kind::Index)? {
        let name = ObjectName::new(Kind::Index, &id);
        let bytes = match backend.read(&name) {
            Ok(b) => b,
            Err(Error::ObjectNotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let Ok(plain) = master.open(Aad::Index, &bytes, &name.path()) else {
            continue;
        };
        let Ok(file) = decode_meta::<IndexFile>(&plain, &name.path()) else {
            continue;
        };
        let lengths = file
            .packs
            .iter()
            .flat_map(|p| &p.blobs)
            .chain(file.delete.iter().flat_map(|m| &m.blobs))
            .filter(|e| e.kind == BlobType::Data)
            .map(|e| e.raw_length);
        largest = lengths.chain(largest).max();
    }
    Ok(largest)
}
