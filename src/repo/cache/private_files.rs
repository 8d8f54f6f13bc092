//! The cache's small files, written private to their owner and whole or not at all.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Creates (or truncates) a cache file readable by its owner only. The cache folder is
/// 0700 already; the files are 0600 as well so that a copy of the folder keeps them private.
pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` followed by their BLAKE3 hash as the file at `path`, private to its
/// owner, under a temporary name renamed into place once whole: the way every small file
/// of the cache (manifest, pack lists, the record of damaged packs) is written.
pub(crate) fn write_sealed_file(path: &Path, mut bytes: Vec<u8>) -> Result<()> {
    let sum = *blake3::hash(&bytes).as_bytes();
    bytes.extend_from_slice(&sum);
    write_private(path, &bytes)
}

/// Writes `bytes` as the file at `path`, private to its owner, under a temporary name
/// renamed into place once whole.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    create_private(&temp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .map_err(|e| Error::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))
}
