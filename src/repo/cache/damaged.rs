//! Packs known to be missing from the store or damaged, as this machine has found them
//! (a backup's listing, a check, a read that failed). A backup never deduplicates against
//! a blob whose only live location is such a pack, so the next backup of intact source
//! files stores them again and its snapshot is complete; readers prefer any other location
//! of a blob; `repair index` reads such packs whole and salvages what still opens.
//!
//! The record is the file `damaged-packs` in the cache folder: a CBOR map
//! (`format`, `packs`: `[{id, why}]`) followed by the BLAKE3 hash of the CBOR bytes. It
//! outlives rebuilds of the index tables (it is knowledge about packs, not a copy of the
//! index files); a record that fails its hash is dropped with a warning, losing only what
//! the next check finds again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::Id;

const FILE: &str = "damaged-packs";
const FORMAT: &str = "cairn-damaged-1";

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: String,
    packs: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: Id,
    why: String,
}

/// The packs known to be damaged, and why; kept on disk when the cache has a folder.
#[derive(Default)]
pub(super) struct DamagedPacks {
    path: Option<PathBuf>,
    packs: BTreeMap<Id, String>,
}

impl DamagedPacks {
    /// The record in `dir`, or an empty one kept in memory only when `dir` is `None`.
    pub(super) fn load(dir: Option<&Path>) -> DamagedPacks {
        let Some(dir) = dir else {
            return DamagedPacks::default();
        };
        let path = dir.join(FILE);
        let packs = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(
                    "{} is damaged and is ignored; `cairn check` finds damaged packs again",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        DamagedPacks {
            path: Some(path),
            packs,
        }
    }

    pub(super) fn contains(&self, id: &Id) -> bool {
        self.packs.contains_key(id)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    pub(super) fn all(&self) -> &BTreeMap<Id, String> {
        &self.packs
    }

    /// Records packs; writes the record when it changed. Returns whether any pack was
    /// new to it.
    pub(super) fn add(&mut self, packs: impl IntoIterator<Item = (Id, String)>) -> Result<bool> {
        let (mut changed, mut new) = (false, false);
        for (id, why) in packs {
            if self.packs.get(&id) != Some(&why) {
                new |= self.packs.insert(id, why).is_none();
                changed = true;
            }
        }
        if changed {
            self.save()?;
        }
        Ok(new)
    }

    /// Forgets packs (found sound again, or gone from every index file).
    pub(super) fn remove(&mut self, packs: impl IntoIterator<Item = Id>) -> Result<()> {
        let mut changed = false;
        for id in packs {
            changed |= self.packs.remove(&id).is_some();
        }
        if changed { self.save() } else { Ok(()) }
    }

    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.packs.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(path, e)),
            };
        }
        let on_disk = OnDisk {
            format: FORMAT.into(),
            packs: self
                .packs
                .iter()
                .map(|(id, why)| Entry {
                    id: *id,
                    why: why.clone(),
                })
                .collect(),
        };
        super::write_sealed_file(path, crate::format::cbor::encode(&on_disk))
    }
}

fn decode(bytes: &[u8]) -> Option<BTreeMap<Id, String>> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes()[..] != sum[..] {
        return None;
    }
    let on_disk: OnDisk = ciborium::from_reader(body).ok()?;
    (on_disk.format == FORMAT).then(|| on_disk.packs.into_iter().map(|e| (e.id, e.why)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reopen_and_a_damaged_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DamagedPacks::load(Some(dir.path()));
        d.add([(Id([1; 32]), "missing".into()), (Id([2; 32]), "bad".into())])
            .unwrap();
        d.remove([Id([1; 32])]).unwrap();
        let again = DamagedPacks::load(Some(dir.path()));
        assert!(!again.contains(&Id([1; 32])));
        assert_eq!(
            again.all().get(&Id([2; 32])).map(String::as_str),
            Some("bad")
        );
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        assert!(DamagedPacks::load(Some(dir.path())).is_empty());
        // Emptied: the file goes.
        let mut d = DamagedPacks::load(Some(dir.path()));
        d.add([(Id([3; 32]), "x".into())]).unwrap();
        d.remove([Id([3; 32])]).unwrap();
        assert!(!dir.path().join(FILE).exists());
    }
}
