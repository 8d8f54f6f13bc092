//! Pack lists: beside each table, the ids of every pack its index files list, live or
//! marked. Tables are keyed by blob, and a pack that a prune marked without knowing its
//! blobs has no record at all, so only these lists tell which stored packs no index file
//! knows (a backup adopts those, see `archiver::adopt`).
//!
//! A list is the sorted, distinct pack ids (32 bytes each) followed by the BLAKE3 hash of
//! those bytes. Like a table it is written under a temporary name and renamed once whole.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::id::Id;

const ID_LEN: usize = 32;

/// Writes `packs` (sorted and made distinct here) as the pack list at `path`.
pub fn write(path: &Path, mut packs: Vec<Id>) -> Result<()> {
    packs.sort_unstable();
    packs.dedup();
    let mut bytes = Vec::with_capacity((packs.len() + 1) * ID_LEN);
    for p in &packs {
        bytes.extend_from_slice(&p.0);
    }
    super::write_sealed_file(path, bytes)
}

/// Reads the pack list at `path`, checking its hash.
pub fn read(path: &Path) -> Result<Vec<Id>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let damaged = || {
        Error::CacheDamaged(format!(
            "index cache file {} is damaged; the next run rebuilds the cache from the repository",
            path.display()
        ))
    };
    let body_len = bytes.len().checked_sub(ID_LEN).ok_or_else(damaged)?;
    let (body, sum) = bytes.split_at(body_len);
    if body.len() % ID_LEN != 0 || blake3::hash(body).as_bytes()[..] != sum[..] {
        return Err(damaged());
    }
    Ok(body
        .chunks_exact(ID_LEN)
        .map(|c| {
            let mut id = Id::default();
            id.0.copy_from_slice(c);
            id
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> Id {
        Id(*blake3::hash(&[i]).as_bytes())
    }

    #[test]
    fn lists_round_trip_sorted_and_distinct_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index-0000000001.packs");
        write(&path, vec![id(3), id(1), id(3), id(2)]).unwrap();
        let mut want = vec![id(1), id(2), id(3)];
        want.sort();
        assert_eq!(read(&path).unwrap(), want);

        write(&path, Vec::new()).unwrap();
        assert!(read(&path).unwrap().is_empty());

        write(&path, vec![id(1)]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("damaged"));
        std::fs::write(&path, b"short").unwrap();
        assert!(read(&path).is_err());
    }
}
