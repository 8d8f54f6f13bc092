//! Reading a sparse file without reading its holes: `SEEK_DATA` and `SEEK_HOLE` say where
//! its data lies, and only that is read, so a 100 GiB disk image holding 1 GiB costs the
//! time of 1 GiB. The holes are recorded in the file's node; its content is the bytes
//! between them.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::unistd::{Whence, lseek};

use crate::format::tree::Hole;

/// Holes shorter than this are read as the zeros they hold: each recorded hole costs 16
/// bytes of tree, and a file of many tiny holes would otherwise make a huge tree.
pub const MIN_HOLE: u64 = 64 * 1024;

/// Whether a file is worth asking for holes: fewer blocks allocated than its size needs.
pub fn may_have_holes(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.blocks().saturating_mul(512) < meta.len()
}

/// Reads the data regions of a file in order, up to the size it had when opened, and
/// records the holes between them.
pub struct SparseReader {
    file: File,
    size: u64,
    pos: u64,
    /// Where the data region being read ends.
    data_end: u64,
    holes: Vec<Hole>,
}

impl SparseReader {
    pub fn new(file: File, size: u64) -> SparseReader {
        SparseReader {
            file,
            size,
            pos: 0,
            data_end: 0,
            holes: Vec::new(),
        }
    }

    /// The holes met so far (all of them once the reader is at its end).
    /// The file being read.
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn holes(&self) -> &[Hole] {
        &self.holes
    }

    /// Moves to the next data region. Holes of at least `MIN_HOLE`, and the one at the
    /// end of the file whatever its length, are recorded and skipped; shorter ones become
    /// part of the region around them and are read.
    fn next_region(&mut self) -> std::io::Result<()> {
        let data = self.seek(self.pos, Whence::SeekData)?;
        if data - self.pos >= MIN_HOLE || data >= self.size {
            if data > self.pos {
                self.holes.push(Hole {
                    offset: self.pos,
                    length: data - self.pos,
                });
            }
            self.pos = data;
            if self.pos >= self.size {
                return Ok(());
            }
        }
        let mut end = self.seek(data, Whence::SeekHole)?;
        while end < self.size {
            let next = self.seek(end, Whence::SeekData)?;
            if next >= self.size || next - end >= MIN_HOLE {
                break;
            }
            end = self.seek(next, Whence::SeekHole)?;
        }
        // The kernel contradicting itself (a file changing under us): read the rest.
        self.data_end = if end > self.pos { end } else { self.size };
        Ok(())
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE`, within the size the file was opened with:
    /// "no data after here" (ENXIO) is the size.
    fn seek(&self, offset: u64, whence: Whence) -> std::io::Result<u64> {
        let at = i64::try_from(offset).unwrap_or(i64::MAX);
        match lseek(self.file.as_fd(), at, whence) {
            Ok(o) => Ok((o as u64).min(self.size)),
            Err(Errno::ENXIO) => Ok(self.size),
            Err(e) => Err(e.into()),
        }
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.data_end {
                let room = usize::try_from(self.data_end - self.pos).unwrap_or(usize::MAX);
                let want = buf.len().min(room);
                let n = self.file.read_at(&mut buf[..want], self.pos)?;
                if n == 0 {
                    // Shrunk since it was opened: what is left is gone.
                    self.size = self.pos;
                    self.data_end = self.pos;
                    return Ok(0);
                }
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            self.next_region()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// A file with data at the given (offset, length) places, holes elsewhere.
    fn sparse_file(size: u64, data: &[(u64, usize)]) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut whole = vec![0u8; size as usize];
        f.as_file().set_len(size).unwrap();
        for &(off, len) in data {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&bytes).unwrap();
            whole[off as usize..off as usize + len].copy_from_slice(&bytes);
        }
        f.flush().unwrap();
        (f, whole)
    }

    /// Puts the content back where the holes say, as restore does.
    fn rebuild(content: &[u8], holes: &[Hole], size: u64) -> Vec<u8> {
        let mut out = vec![0u8; size as usize];
        let layout_node = crate::format::tree::Node {
            holes: holes.to_vec(),
            ..crate::repo::tree_walk::root_node(crate::format::id::Id::default())
        };
        for (at, range) in layout_node.layout().pieces(0, content.len()) {
            out[at as usize..at as usize + range.len()].copy_from_slice(&content[range]);
        }
        out
    }

    #[test]
    fn holes_are_skipped_and_the_file_comes_back_whole() {
        let mib = 1024 * 1024;
        for (size, data) in [
            (10 * mib, vec![(3 * mib, 5000usize)]),
            (10 * mib, vec![(0, 4096), (9 * mib, 100)]),
            (4 * mib, vec![]),
            // Data up to the end; data ending in a short hole; two regions a short hole apart.
            (2 * mib, vec![(mib, mib as usize)]),
            (2 * mib, vec![(mib, 4096)]),
            (3 * mib, vec![(0, 8192), (8192 + 16384, 8192)]),
        ] {
            let (f, whole) = sparse_file(size, &data);
            let file = File::open(f.path()).unwrap();
            let mut r = SparseReader::new(file, size);
            let mut content = Vec::new();
            r.read_to_end(&mut content).unwrap();
            let holes = r.holes().to_vec();
            let hole_bytes: u64 = holes.iter().map(|h| h.length).sum();
            assert_eq!(
                content.len() as u64 + hole_bytes,
                size,
                "{data:?}: {holes:?}"
            );
            // Only the hole at the end may be shorter.
            assert!(
                holes
                    .iter()
                    .all(|h| h.length >= MIN_HOLE || h.offset + h.length == size),
                "{holes:?}"
            );
            assert_eq!(rebuild(&content, &holes, size), whole, "{data:?}");
            if data.is_empty() {
                assert_eq!(
                    holes,
                    vec![Hole {
                        offset: 0,
                        length: size
                    }]
                );
            }
            if data.len() == 1 && data[0].1 == 5000 {
                // Only the block around the data is read.
                assert!(content.len() < 64 * 1024, "{}", content.len());
            }
        }
    }
}
