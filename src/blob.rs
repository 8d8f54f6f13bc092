//! Turning plaintext blobs into sealed pack entries and back.
//!
//! Sealing compresses with zstd (keeping the plaintext when zstd does not shrink it) and
//! seals under associated data naming the blob's type and id. Opening checks the id again
//! after decryption, so a restore can never return bytes other than those backed up.

use crate::cache::BlobLocation;
use crate::crypto::{Aad, MasterKey, Sealer};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::{BlobType, Compression, SealedBlob};

/// Largest plaintext accepted when opening a blob: guards allocations against a hostile
/// index claiming a huge size.
const MAX_RAW_LENGTH: u32 = 1 << 30;

/// Per-thread sealing state: a cipher and a reusable zstd context.
pub struct BlobSealer {
    sealer: Sealer,
    zstd: zstd::bulk::Compressor<'static>,
}

impl BlobSealer {
    pub fn new(key: &MasterKey, zstd_level: i32) -> Result<BlobSealer> {
        Ok(BlobSealer {
            sealer: key.sealer(),
            zstd: zstd::bulk::Compressor::new(zstd_level)
                .map_err(|e| Error::Other(format!("zstd: {e}")))?,
        })
    }

    pub fn seal(&mut self, kind: BlobType, id: Id, plaintext: &[u8]) -> Result<SealedBlob> {
        let raw_length = u32::try_from(plaintext.len())
            .map_err(|_| Error::Other("blob larger than 4 GiB".into()))?;
        let compressed = self
            .zstd
            .compress(plaintext)
            .map_err(|e| Error::Other(format!("zstd: {e}")))?;
        let (compression, body) = if compressed.len() < plaintext.len() {
            (Compression::Zstd, &compressed[..])
        } else {
            (Compression::None, plaintext)
        };
        Ok(SealedBlob {
            kind,
            id,
            raw_length,
            compression,
            bytes: self.sealer.seal(Aad::Blob(kind as u8, id), body)?,
        })
    }
}

/// Opens a sealed blob read from `loc`, decompresses it and checks its id.
pub fn open_blob(key: &MasterKey, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
    let e = &loc.entry;
    let what = || format!("blob {} in pack {}", e.id(), loc.pack);
    let body = key.open(Aad::Blob(e.kind() as u8, e.id()), sealed, &what())?;
    if e.raw_length() > MAX_RAW_LENGTH {
        return Err(Error::corrupt(what(), "claims an impossible size"));
    }
    let plain = match e.compression() {
        Compression::None => body,
        Compression::Zstd => zstd::bulk::decompress(&body, e.raw_length() as usize)
            .map_err(|err| Error::corrupt(what(), format!("zstd: {err}")))?,
    };
    if plain.len() != e.raw_length() as usize {
        return Err(Error::corrupt(what(), "has the wrong length"));
    }
    if key.blob_id(&plain) != e.id() {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(plain)
}
