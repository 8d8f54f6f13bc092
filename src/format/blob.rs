//! Turning plaintext blobs into sealed pack entries and back.
//!
//! Sealing compresses with zstd (keeping the plaintext when zstd does not shrink it) and
//! seals under associated data naming the blob's type and id. Opening checks the id again
//! after decryption, so a restore can never return bytes other than those backed up.

use std::cell::RefCell;

use crate::error::{Error, Result};
use crate::format::crypto::{Aad, MasterKey, Sealer};
use crate::format::id::Id;
use crate::format::pack::BlobLocation;
use crate::format::pack::{BlobType, Compression, SealedBlob};

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
                .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
        })
    }

    pub fn seal(&mut self, kind: BlobType, id: Id, plaintext: &[u8]) -> Result<SealedBlob> {
        let mut bytes = Vec::new();
        let (raw_length, compression) = self.seal_into(kind, id, plaintext, &mut bytes)?;
        Ok(SealedBlob {
            kind,
            id,
            raw_length,
            compression,
            bytes,
        })
    }

    /// Appends the sealed blob to `out`, compressing straight into it and encrypting in
    /// place, so the only copy of the plaintext is zstd's reading of it. Returns what a
    /// pack header records besides the position: the plaintext length and the compression.
    pub fn seal_into(
        &mut self,
        kind: BlobType,
        id: Id,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(u32, Compression)> {
        let raw_length = u32::try_from(plaintext.len())
            .map_err(|_| Error::Internal("a blob larger than 4 GiB".into()))?;
        let mut compression = Compression::Zstd;
        let zstd = &mut self.zstd;
        self.sealer
            .seal_appending(Aad::Blob(kind as u8, id), out, |out| {
                let at = out.len();
                out.reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
                let mut tail = std::io::Cursor::new(&mut *out);
                tail.set_position(at as u64);
                let n = zstd
                    .compress_to_buffer(plaintext, &mut tail)
                    .map_err(|e| Error::Internal(format!("zstd: {e}")))?;
                if n >= plaintext.len() {
                    // Incompressible: store the plaintext rather than a larger frame.
                    out.truncate(at);
                    out.extend_from_slice(plaintext);
                    compression = Compression::None;
                }
                Ok(())
            })?;
        Ok((raw_length, compression))
    }
}

thread_local! {
    /// One zstd decompression context per thread: making one per blob cost 2% of a
    /// restore's CPU.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
    /// The decrypted, still compressed body of the blob being opened. Reused, because a
    /// fresh buffer of a MiB per blob cost a restore a tenth of its CPU in page faults.
    static COMPRESSED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Decompresses a blob body of `raw_length` bytes into `out` with this thread's context.
fn decompress(body: &[u8], raw_length: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    DECOMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let d = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        // The frame says how much it holds (cairn writes single frames with their size):
        // a claimed length that disagrees is damage, found before `raw_length` bytes
        // (up to 1 GiB, from an index) are reserved for it.
        match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(Some(n)) if n != raw_length as u64 => {
                return Err(std::io::Error::other(format!(
                    "the frame holds {n} bytes, the index says {raw_length}"
                )));
            }
            Ok(_) => {}
            Err(_) => return Err(std::io::Error::other("not a zstd frame")),
        }
        out.clear();
        out.reserve(raw_length);
        d.decompress_to_buffer(body, out).map(|_| ())
    })
}

/// Opens a sealed blob read from `loc`, decompresses it and checks its id.
pub fn open_blob(key: &MasterKey, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut plain = Vec::new();
    open_blob_into(key, loc, sealed, &mut plain)?;
    Ok(plain)
}

/// [`open_blob`] into a buffer the caller reuses; on failure `plain` holds nothing of the
/// blob that could be taken for it.
pub fn open_blob_into(
    key: &MasterKey,
    loc: &BlobLocation,
    sealed: &[u8],
    plain: &mut Vec<u8>,
) -> Result<()> {
    let result = open_checked(key, loc, sealed, plain);
    if result.is_err() {
        plain.clear();
    }
    result
}

fn open_checked(
    key: &MasterKey,
    loc: &BlobLocation,
    sealed: &[u8],
    plain: &mut Vec<u8>,
) -> Result<()> {
    let e = &loc.entry;
    let what = || format!("blob {} in pack {}", e.id, loc.pack);
    if e.raw_length > MAX_RAW_LENGTH {
        return Err(Error::corrupt(what(), "claims an impossible size"));
    }
    let aad = Aad::Blob(e.kind as u8, e.id);
    match e.compression {
        Compression::None => key.open_into(aad, sealed, &what(), plain)?,
        Compression::Zstd => COMPRESSED.with(|body| {
            let mut body = body.borrow_mut();
            key.open_into(aad, sealed, &what(), &mut body)?;
            decompress(&body, e.raw_length as usize, plain)
                .map_err(|err| Error::corrupt(what(), format!("zstd: {err}")))
        })?,
    }
    if plain.len() != e.raw_length as usize {
        return Err(Error::corrupt(what(), "has the wrong length"));
    }
    if key.blob_id(plain) != e.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(())
}
