//! Pack files: many sealed blobs followed by a sealed header that lists them.
//!
//! ```text
//! blob_0 ‖ blob_1 ‖ … ‖ blob_n-1 ‖ sealed header ‖ header length (u32 little-endian)
//! ```
//! A pack is built whole in memory and written in one call, so it exists whole or not at all.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::cbor::{self, Versioned};
use crate::format::crypto::{Aad, MasterKey};
use crate::format::id::Id;

/// What a blob holds. Stored as one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum BlobType {
    Data = 0,
    Tree = 1,
}

impl From<BlobType> for u8 {
    fn from(t: BlobType) -> u8 {
        t as u8
    }
}

impl TryFrom<u8> for BlobType {
    type Error = String;
    fn try_from(v: u8) -> std::result::Result<BlobType, String> {
        match v {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            _ => Err(format!("unknown blob type {v}")),
        }
    }
}

/// How a blob's plaintext was stored. Stored as one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl From<Compression> for u8 {
    fn from(c: Compression) -> u8 {
        c as u8
    }
}

impl TryFrom<u8> for Compression {
    type Error = String;
    fn try_from(v: u8) -> std::result::Result<Compression, String> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            _ => Err(format!("unknown compression {v}")),
        }
    }
}

/// One blob inside a pack. Encoded as a CBOR array
/// `[type, id, offset, length, raw_length, compression]` to keep indexes small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PackEntryWire", into = "PackEntryWire")]
pub struct PackEntry {
    pub kind: BlobType,
    pub id: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob (nonce and tag included).
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    pub compression: Compression,
}

/// [`PackEntry`] as it is encoded: a positional array, in the field order above.
#[derive(Serialize, Deserialize)]
struct PackEntryWire(BlobType, Id, u32, u32, u32, Compression);

impl From<PackEntryWire> for PackEntry {
    fn from(w: PackEntryWire) -> PackEntry {
        let PackEntryWire(kind, id, offset, length, raw_length, compression) = w;
        PackEntry {
            kind,
            id,
            offset,
            length,
            raw_length,
            compression,
        }
    }
}

impl From<PackEntry> for PackEntryWire {
    fn from(e: PackEntry) -> PackEntryWire {
        PackEntryWire(
            e.kind,
            e.id,
            e.offset,
            e.length,
            e.raw_length,
            e.compression,
        )
    }
}

/// Where one blob is: its pack and its entry in that pack's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub entry: PackEntry,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PackHeader {
    pub v: u64,
    pub blobs: Vec<PackEntry>,
}

crate::format::cbor::versioned!(PackHeader, "pack header", 1);

/// A blob ready for a pack: sealed bytes and what the header must say about them.
pub struct SealedBlob {
    pub kind: BlobType,
    pub id: Id,
    pub raw_length: u32,
    pub compression: Compression,
    pub bytes: Vec<u8>,
}

/// Accumulates sealed blobs of one type into a pack.
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    pub id: Id,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn new(capacity: usize) -> PackBuilder {
        PackBuilder {
            buf: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn add(&mut self, blob: SealedBlob) -> Result<()> {
        self.add_sealed(
            blob.kind,
            blob.id,
            blob.raw_length,
            blob.compression,
            &blob.bytes,
        )
    }

    /// Appends one sealed blob given as bytes and what its header entry says.
    pub fn add_sealed(
        &mut self,
        kind: BlobType,
        id: Id,
        raw_length: u32,
        compression: Compression,
        sealed: &[u8],
    ) -> Result<()> {
        let offset = u32::try_from(self.buf.len())
            .map_err(|_| Error::Internal("a pack grew beyond 4 GiB".into()))?;
        let length = u32::try_from(sealed.len())
            .map_err(|_| Error::Internal("a blob larger than 4 GiB".into()))?;
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry {
            kind,
            id,
            offset,
            length,
            raw_length,
            compression,
        });
        Ok(())
    }

    /// A builder that fills `buf` (emptied first), reusing its memory.
    pub fn reusing(mut buf: Vec<u8>) -> PackBuilder {
        buf.clear();
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Appends the sealed header and names the pack by the hash of all its bytes.
    pub fn finish(mut self, key: &MasterKey) -> Result<FinishedPack> {
        let header = PackHeader {
            v: PackHeader::VERSION,
            blobs: self.entries,
        };
        let sealed = key.seal(Aad::PackHeader, &cbor::encode(&header))?;
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        Ok(FinishedPack {
            id: Id::of_stored(&self.buf),
            bytes: self.buf,
            entries: header.blobs,
        })
    }
}

/// Reads the header of a pack given its last bytes (at least the header and the length).
/// `tail` must end where the pack ends; `pack_len` is the pack's full size.
pub fn decode_header(
    key: &MasterKey,
    tail: &[u8],
    pack_len: u64,
    name: &str,
) -> Result<Vec<PackEntry>> {
    if tail.len() < 4 {
        return Err(Error::corrupt(name, "too short to hold a pack header"));
    }
    let (rest, len) = tail.split_at(tail.len() - 4);
    let hlen = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if hlen > rest.len() {
        return Err(Error::corrupt(
            name,
            format!("header length {hlen} exceeds the pack"),
        ));
    }
    let sealed = &rest[rest.len() - hlen..];
    let plain = key.open(Aad::PackHeader, sealed, name)?;
    let header: PackHeader = cbor::decode(&plain, name)?;
    let data_end = pack_len
        .checked_sub(4 + hlen as u64)
        .ok_or_else(|| Error::corrupt(name, "header longer than the pack"))?;
    for e in &header.blobs {
        if u64::from(e.offset) + u64::from(e.length) > data_end {
            return Err(Error::corrupt(
                name,
                format!("blob {} lies outside the pack", e.id),
            ));
        }
    }
    Ok(header.blobs)
}

/// How many bytes at a pack's end its sealed header and length take, as the last 4
/// bytes of `tail` (bytes that end where the pack ends) say; `None` if `tail` is shorter.
pub fn trailer_len(tail: &[u8]) -> Option<u64> {
    let len_bytes = tail
        .len()
        .checked_sub(4)
        .and_then(|at| tail.get(at..))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())?;
    Some(4 + u64::from(u32::from_le_bytes(len_bytes)))
}

/// Checks that the blobs a header lists fill their pack of `pack_len` bytes as
/// [`PackBuilder::finish`] lays one out: back to back from the start up to the sealed
/// header, whose length the last 4 bytes of `tail` give. A pack this does not hold for was
/// not written whole by cairn.
pub fn check_layout(entries: &[PackEntry], tail: &[u8], pack_len: u64, name: &str) -> Result<()> {
    let header_end =
        trailer_len(tail).ok_or_else(|| Error::corrupt(name, "too short to hold a pack header"))?;
    let data_end = pack_len
        .checked_sub(header_end)
        .ok_or_else(|| Error::corrupt(name, "header longer than the pack"))?;
    let mut spans: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (u64::from(e.offset), u64::from(e.length)))
        .collect();
    spans.sort_unstable();
    let mut end = 0;
    for (offset, length) in spans {
        if offset != end {
            return Err(Error::corrupt(
                name,
                format!("its blobs leave a gap or overlap at offset {end}"),
            ));
        }
        end = offset + length;
    }
    if end != data_end {
        return Err(Error::corrupt(
            name,
            format!("its blobs end at {end}, its header starts at {data_end}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_encoded_as_a_six_element_array_in_field_order() {
        let e = PackEntry {
            kind: BlobType::Tree,
            id: Id([9; 32]),
            offset: 1_000_000,
            length: 70_000,
            raw_length: 300,
            compression: Compression::Zstd,
        };
        let mut expected = vec![0x86];
        expected.extend(crate::format::cbor::encode(&BlobType::Tree));
        expected.extend(crate::format::cbor::encode(&Id([9; 32])));
        for n in [1_000_000u32, 70_000, 300] {
            expected.extend(crate::format::cbor::encode(&n));
        }
        expected.extend(crate::format::cbor::encode(&Compression::Zstd));
        let bytes = crate::format::cbor::encode(&e);
        assert_eq!(bytes, expected);
        let back: PackEntry = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(back, e);
    }

    fn builder_with(sizes: &[usize]) -> PackBuilder {
        let mut b = PackBuilder::new(0);
        for (i, &n) in sizes.iter().enumerate() {
            let id = Id(*blake3::hash(&[i as u8]).as_bytes());
            b.add_sealed(BlobType::Data, id, n as u32, Compression::None, &vec![7; n])
                .unwrap();
        }
        b
    }

    #[test]
    fn written_packs_pass_the_layout_check_and_altered_headers_do_not() {
        let key = MasterKey::generate().unwrap();
        let pack = builder_with(&[100, 1, 5000]).finish(&key).unwrap();
        let len = pack.bytes.len() as u64;
        let entries = decode_header(&key, &pack.bytes, len, "p").unwrap();
        check_layout(&entries, &pack.bytes, len, "p").unwrap();

        // A blob left out, a gap, a blob beyond the header's start, a wrong pack size.
        let mut gap = entries.clone();
        gap.remove(1);
        let mut shifted = entries.clone();
        shifted[2].offset += 1;
        for bad in [&gap, &shifted, &entries[..2].to_vec()] {
            assert!(check_layout(bad, &pack.bytes, len, "p").is_err());
        }
        assert!(check_layout(&entries, &pack.bytes, len + 1, "p").is_err());
        assert!(check_layout(&entries, &[1, 2], len, "p").is_err());
    }
}
