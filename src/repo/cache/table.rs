//! Immutable sorted tables of blob locations, the files the index cache is made of.
//!
//! A table is a run of fixed-size records sorted by key (blob type ‖ blob id), each key at
//! most once, cut into 4 KiB blocks that each carry a checksum. Its last bytes hold the
//! first 8 key bytes of every block (the fences) and a footer. An open table keeps the
//! fences in memory (8 bytes per 51 blobs) and reads one block per lookup with `pread`,
//! so memory stays flat however many blobs the repository holds; the kernel's page cache,
//! which is not counted against the process, keeps hot blocks. Small tables can be held
//! in memory whole instead.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::{BlobType, Compression, PackEntry};

use crate::format::pack::BlobLocation;

/// Key: blob type ‖ blob id.
pub const KEY_LEN: usize = 33;
/// Key ‖ pack id ‖ offset u32 LE ‖ length u32 LE ‖ raw length u32 LE ‖ compression ‖ state.
pub const RECORD_LEN: usize = KEY_LEN + 32 + 4 + 4 + 4 + 1 + 1;
pub const BLOCK_LEN: usize = 4096;
/// CRC-32 of the block's other bytes, LE.
const CHECKSUM_LEN: usize = 4;
pub const RECORDS_PER_BLOCK: usize = (BLOCK_LEN - CHECKSUM_LEN) / RECORD_LEN;
const MAGIC: &[u8; 8] = b"cairntb1";
/// Record count u64 LE ‖ block count u64 LE ‖ BLAKE3 of fences and both counts ‖ magic.
const FOOTER_LEN: usize = 8 + 8 + 32 + 8;

/// The blob is in a live pack.
pub const LIVE: u8 = 0;
/// The blob is only in a pack a prune marked for deletion.
pub const MARKED: u8 = 1;

pub fn key(kind: BlobType, id: &Id) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[0] = kind as u8;
    k[1..].copy_from_slice(&id.0);
    k
}

/// One blob's location as stored in a table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Record(pub [u8; RECORD_LEN]);

impl Record {
    pub fn new(pack: &Id, e: &PackEntry, state: u8) -> Record {
        let mut r = [0u8; RECORD_LEN];
        r[..KEY_LEN].copy_from_slice(&key(e.kind, &e.id));
        r[33..65].copy_from_slice(&pack.0);
        r[65..69].copy_from_slice(&e.offset.to_le_bytes());
        r[69..73].copy_from_slice(&e.length.to_le_bytes());
        r[73..77].copy_from_slice(&e.raw_length.to_le_bytes());
        r[77] = e.compression as u8;
        r[78] = state;
        Record(r)
    }

    pub fn key(&self) -> &[u8] {
        &self.0[..KEY_LEN]
    }

    pub fn state(&self) -> u8 {
        self.0[RECORD_LEN - 1]
    }

    /// By key, a live location before a marked one (tests build tables in this order).
    #[cfg(test)]
    pub fn order(&self) -> (&[u8], u8) {
        (self.key(), self.state())
    }

    /// The pack the blob is in.
    pub fn pack(&self) -> Id {
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.0[33..65]);
        Id(id)
    }

    /// How good a location this is, lower first: live before marked, and a pack known to
    /// be damaged after every other.
    pub fn rank(&self, damaged: &dyn Fn(&Id) -> bool) -> u8 {
        self.state() + if damaged(&self.pack()) { 2 } else { 0 }
    }

    pub fn location(&self) -> Option<BlobLocation> {
        let r = &self.0;
        let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let kind = BlobType::try_from(r[0]).ok()?;
        let id = Id(r[1..33].try_into().ok()?);
        let pack = Id(r[33..65].try_into().ok()?);
        let compression = Compression::try_from(r[77]).ok()?;
        Some(BlobLocation {
            pack,
            entry: PackEntry {
                kind,
                id,
                offset: u32_at(65),
                length: u32_at(69),
                raw_length: u32_at(73),
                compression,
            },
        })
    }
}

/// The first 8 key bytes, big-endian, so that fences order as keys do.
fn prefix(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&key[..8]);
    u64::from_be_bytes(p)
}

/// A block's checksum guards against damage on disk, not against an adversary (who could
/// as well edit the cache's manifest): CRC-32 takes 0.6 µs per block here, BLAKE3 5.6 µs,
/// which was most of a lookup.
fn block_checksum(block: &[u8]) -> [u8; CHECKSUM_LEN] {
    crc32fast::hash(&block[..BLOCK_LEN - CHECKSUM_LEN]).to_le_bytes()
}

fn footer_hash(fences: &[u8], count: u64, blocks: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(fences);
    h.update(&count.to_le_bytes());
    h.update(&blocks.to_le_bytes());
    *h.finalize().as_bytes()
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::CacheDamaged(format!(
        "index cache file {} is damaged ({why}); delete it and cairn rebuilds the cache \
         from the repository",
        path.display()
    ))
}

/// Writes records, given in order, to a new table file. The file gets its final name only
/// once complete, so a crash never leaves a half-written table under a table's name.
pub struct TableWriter {
    out: BufWriter<File>,
    temp: PathBuf,
    path: PathBuf,
    block: Box<[u8; BLOCK_LEN]>,
    in_block: usize,
    fences: Vec<u8>,
    count: u64,
    last: Option<Record>,
}

impl TableWriter {
    pub fn create(path: &Path) -> Result<TableWriter> {
        let temp = path.with_extension("tmp");
        let file = super::private_files::create_private(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(TableWriter {
            out: BufWriter::with_capacity(16 * BLOCK_LEN, file),
            temp,
            path: path.to_path_buf(),
            block: Box::new([0u8; BLOCK_LEN]),
            in_block: 0,
            fences: Vec::new(),
            count: 0,
            last: None,
        })
    }

    /// Appends a record whose key is greater than the previous one's.
    pub fn push(&mut self, r: &Record) -> Result<()> {
        if let Some(last) = &self.last
            && last.key() >= r.key()
        {
            return Err(Error::Internal(
                "index cache: table records out of order".into(),
            ));
        }
        if self.in_block == 0 {
            self.fences
                .extend_from_slice(&prefix(r.key()).to_be_bytes());
        }
        let at = self.in_block * RECORD_LEN;
        self.block[at..at + RECORD_LEN].copy_from_slice(&r.0);
        self.in_block += 1;
        self.count += 1;
        self.last = Some(*r);
        if self.in_block == RECORDS_PER_BLOCK {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        let used = self.in_block * RECORD_LEN;
        self.block[used..].fill(0);
        let sum = block_checksum(&self.block[..]);
        self.block[BLOCK_LEN - CHECKSUM_LEN..].copy_from_slice(&sum);
        self.out
            .write_all(&self.block[..])
            .map_err(|e| Error::io(&self.temp, e))?;
        self.in_block = 0;
        Ok(())
    }

    /// Writes the last block, the fences and the footer, and names the file.
    pub fn finish(mut self) -> Result<Table> {
        if self.in_block > 0 {
            self.end_block()?;
        }
        let blocks = (self.fences.len() / 8) as u64;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&self.count.to_le_bytes());
        footer.extend_from_slice(&blocks.to_le_bytes());
        footer.extend_from_slice(&footer_hash(&self.fences, self.count, blocks));
        footer.extend_from_slice(MAGIC);
        let temp = self.temp.clone();
        let io = |e| Error::io(&temp, e);
        self.out.write_all(&self.fences).map_err(io)?;
        self.out.write_all(&footer).map_err(io)?;
        drop(self.out.into_inner().map_err(|e| io(e.into_error()))?);
        std::fs::rename(&self.temp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        // Opened anew for reading: the writing handle is write-only.
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(Table {
            file,
            path: self.path,
            count: self.count,
            fences: fences_to_u64(&self.fences),
            resident: None,
        })
    }
}

fn fences_to_u64(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

/// An open table: its file and its fences, and for small tables all of its blocks.
pub struct Table {
    file: File,
    path: PathBuf,
    count: u64,
    fences: Vec<u64>,
    /// Every block, checked, when the cache chose to hold this table in memory.
    resident: Option<Box<[u8]>>,
}

impl Table {
    /// Opens a table file, checking its footer and fences.
    pub fn open(path: &Path) -> Result<Table> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < FOOTER_LEN as u64 {
            return Err(damaged(path, "shorter than its footer"));
        }
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, len - FOOTER_LEN as u64)
            .map_err(|e| Error::io(path, e))?;
        if &footer[48..] != MAGIC {
            return Err(damaged(path, "not a table"));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&footer[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let (count, blocks) = (u64_at(0), u64_at(8));
        let per_block = RECORDS_PER_BLOCK as u64;
        let sizes_agree = blocks
            .checked_mul((BLOCK_LEN + 8) as u64)
            .and_then(|n| n.checked_add(FOOTER_LEN as u64))
            == Some(len);
        let count_fits = (count <= blocks * per_block
            && count > blocks.saturating_sub(1) * per_block)
            || (count == 0 && blocks == 0);
        if !sizes_agree || !count_fits {
            return Err(damaged(path, "its size does not match its footer"));
        }
        let mut fences = vec![0u8; blocks as usize * 8];
        file.read_exact_at(&mut fences, blocks * BLOCK_LEN as u64)
            .map_err(|e| Error::io(path, e))?;
        if footer_hash(&fences, count, blocks)[..] != footer[16..48] {
            return Err(damaged(path, "its footer fails its checksum"));
        }
        Ok(Table {
            file,
            path: path.to_path_buf(),
            count,
            fences: fences_to_u64(&fences),
            resident: None,
        })
    }

    /// Bytes of blocks: what holding the table in memory costs.
    pub fn block_bytes(&self) -> usize {
        self.fences.len() * BLOCK_LEN
    }

    /// Bytes held in memory.
    pub fn resident_bytes(&self) -> usize {
        self.resident.as_ref().map_or(0, |r| r.len())
    }

    /// Reads and checks every block once, so that lookups make no system call. A `pread`
    /// costs about 2 µs on a virtual machine, most of a lookup.
    pub fn make_resident(&mut self) -> Result<()> {
        let mut bytes = vec![0u8; self.block_bytes()];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| Error::io(&self.path, e))?;
        for (b, block) in bytes.chunks_exact(BLOCK_LEN).enumerate() {
            if block_checksum(block)[..] != block[BLOCK_LEN - CHECKSUM_LEN..] {
                return Err(damaged(&self.path, format!("block {b} fails its checksum")));
            }
        }
        self.resident = Some(bytes.into_boxed_slice());
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blocks(&self) -> usize {
        self.fences.len()
    }

    /// Records in block `b`.
    fn records_in(&self, b: usize) -> usize {
        if b + 1 < self.fences.len() {
            RECORDS_PER_BLOCK
        } else {
            (self.count - (b as u64) * RECORDS_PER_BLOCK as u64) as usize
        }
    }

    /// Reads and checks block `b`; returns it and its record count.
    pub fn read_block(&self, b: usize, buf: &mut [u8; BLOCK_LEN]) -> Result<usize> {
        self.file
            .read_exact_at(buf, (b * BLOCK_LEN) as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        if block_checksum(buf)[..] != buf[BLOCK_LEN - CHECKSUM_LEN..] {
            return Err(damaged(&self.path, format!("block {b} fails its checksum")));
        }
        Ok(self.records_in(b))
    }

    /// The record of `key`, if this table has one.
    pub fn find(&self, key: &[u8; KEY_LEN]) -> Result<Option<Record>> {
        let p = prefix(key);
        // Blocks starting at or before the key; the key can only be in the last of them,
        // or, when several blocks start with the same 8 bytes, in any of those.
        let end = self.fences.partition_point(|&f| f <= p);
        if end == 0 {
            return Ok(None);
        }
        let start = self.fences.partition_point(|&f| f < p).saturating_sub(1);
        let mut buf = [0u8; BLOCK_LEN];
        for b in start..end {
            let (block, n): (&[u8], usize) = match &self.resident {
                Some(all) => (&all[b * BLOCK_LEN..(b + 1) * BLOCK_LEN], self.records_in(b)),
                None => {
                    let n = self.read_block(b, &mut buf)?;
                    (&buf[..], n)
                }
            };
            let at = |i: usize| &block[i * RECORD_LEN..i * RECORD_LEN + KEY_LEN];
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                match at(mid).cmp(&key[..]) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => {
                        let mut r = [0u8; RECORD_LEN];
                        r.copy_from_slice(&block[mid * RECORD_LEN..(mid + 1) * RECORD_LEN]);
                        return Ok(Some(Record(r)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Reads the table front to back, a batch of blocks at a time.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            table: self,
            next_block: 0,
            batch: Vec::new(),
            at: 0,
        }
    }
}

/// Blocks read per `pread` when scanning a table.
const SCAN_BLOCKS: usize = 8;

/// A front-to-back reader of one table.
pub struct Cursor<'a> {
    table: &'a Table,
    next_block: usize,
    batch: Vec<Record>,
    at: usize,
}

impl Cursor<'_> {
    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.at == self.batch.len() {
            self.fill()?;
            if self.batch.is_empty() {
                return Ok(None);
            }
        }
        let r = self.batch[self.at];
        self.at += 1;
        Ok(Some(r))
    }

    fn fill(&mut self) -> Result<()> {
        self.batch.clear();
        self.at = 0;
        let t = self.table;
        let blocks = SCAN_BLOCKS.min(t.blocks() - self.next_block);
        if blocks == 0 {
            return Ok(());
        }
        let mut bytes = vec![0u8; blocks * BLOCK_LEN];
        t.file
            .read_exact_at(&mut bytes, (self.next_block * BLOCK_LEN) as u64)
            .map_err(|e| Error::io(&t.path, e))?;
        for (i, block) in bytes.chunks_exact(BLOCK_LEN).enumerate() {
            let b = self.next_block + i;
            if block_checksum(block)[..] != block[BLOCK_LEN - CHECKSUM_LEN..] {
                return Err(damaged(&t.path, format!("block {b} fails its checksum")));
            }
            for r in block[..t.records_in(b) * RECORD_LEN].chunks_exact(RECORD_LEN) {
                let mut rec = [0u8; RECORD_LEN];
                rec.copy_from_slice(r);
                self.batch.push(Record(rec));
            }
        }
        self.next_block += blocks;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64, state: u8) -> Record {
        let id = Id(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let e = PackEntry {
            kind: BlobType::Data,
            id,
            offset: i as u32,
            length: 100,
            raw_length: 200,
            compression: Compression::Zstd,
        };
        Record::new(&Id::default(), &e, state)
    }

    fn sorted(n: u64) -> Vec<Record> {
        let mut v: Vec<Record> = (0..n).map(|i| record(i, LIVE)).collect();
        v.sort_by(|a, b| a.order().cmp(&b.order()));
        v
    }

    fn write(dir: &Path, records: &[Record]) -> Table {
        let mut w = TableWriter::create(&dir.join("t.tbl")).unwrap();
        for r in records {
            w.push(r).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn finds_every_record_and_no_other_at_any_size() {
        for n in [0, 1, 50, 51, 52, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let records = sorted(n);
            let written = write(dir.path(), &records);
            let t = Table::open(&dir.path().join("t.tbl")).unwrap();
            assert_eq!(t.count(), n);
            assert_eq!(written.fences, t.fences);
            let mut resident = Table::open(&dir.path().join("t.tbl")).unwrap();
            resident.make_resident().unwrap();
            for table in [&t, &resident] {
                for r in &records {
                    let k: [u8; KEY_LEN] = r.key().try_into().unwrap();
                    assert!(table.find(&k).unwrap() == Some(*r), "n={n}");
                }
                for i in n..n + 100 {
                    let k: [u8; KEY_LEN] = record(i, LIVE).key().try_into().unwrap();
                    assert!(table.find(&k).unwrap().is_none());
                }
            }
            let mut c = t.cursor();
            let mut back = Vec::new();
            while let Some(r) = c.next_record().unwrap() {
                back.push(r);
            }
            assert!(back == records, "n={n}");
        }
    }

    #[test]
    fn records_round_trip_their_location() {
        let r = record(7, MARKED);
        let loc = r.location().unwrap();
        assert_eq!(loc.entry.offset, 7);
        assert_eq!(loc.entry.raw_length, 200);
        assert_ne!(r.state(), LIVE);
    }

    #[test]
    fn damage_is_detected_in_footer_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let records = sorted(200);
        write(dir.path(), &records);
        let path = dir.path().join("t.tbl");
        let clean = std::fs::read(&path).unwrap();

        let mut bytes = clean.clone();
        let n = bytes.len();
        bytes[n - 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Table::open(&path).is_err(), "footer damage");

        let mut bytes = clean.clone();
        bytes[BLOCK_LEN + 100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let t = Table::open(&path).unwrap();
        let hit_any = records
            .iter()
            .any(|r| t.find(&r.key().try_into().unwrap()).is_err());
        assert!(hit_any, "block damage found on lookup");
        let mut t = Table::open(&path).unwrap();
        assert!(t.make_resident().is_err(), "block damage found on loading");

        std::fs::write(&path, b"garbage").unwrap();
        assert!(Table::open(&path).is_err());
    }

    #[test]
    fn out_of_order_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let records = sorted(3);
        let mut w = TableWriter::create(&dir.path().join("t.tbl")).unwrap();
        w.push(&records[1]).unwrap();
        assert!(w.push(&records[0]).is_err());
    }
}
