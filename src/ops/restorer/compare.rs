//! Comparing a file that stands in the target with the snapshot's: blob by blob where
//! the snapshot's holes put each, so a restore can keep an identical file, fetch only
//! the blobs that differ, or check what it wrote (`--verify`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::pack::BlobType;
use crate::format::tree::Node;
use crate::repo::Repository;

/// How a file matches a node.
pub struct Comparison {
    /// Per blob of the content: the file holds it where the snapshot has it.
    pub present: Vec<bool>,
    /// The file's holes (the snapshot's) read as zeros.
    pub holes_zero: bool,
    /// Same length, every blob present, zeros in the holes.
    pub identical: bool,
}

impl Comparison {
    /// Bytes of the content the file does not hold.
    pub fn missing_bytes(&self, repo: &Repository, node: &Node) -> Result<u64> {
        let mut n = 0;
        for (id, present) in node.content.iter().zip(&self.present) {
            if !present {
                n += u64::from(repo.locate(BlobType::Data, id)?.entry.raw_length);
            }
        }
        Ok(n)
    }
}

/// Reads `file` where the snapshot's content would be and compares each blob's id.
pub fn compare(repo: &Repository, file: &File, dest: &Path, node: &Node) -> Result<Comparison> {
    let len = file.metadata().map_err(|e| Error::io(dest, e))?.len();
    let layout = node.layout();
    let mut buf = Vec::new();
    let mut offset = 0u64;
    let mut present = Vec::with_capacity(node.content.len());
    for id in &node.content {
        let loc = repo.locate(BlobType::Data, id)?;
        buf.resize(loc.entry.raw_length as usize, 0);
        let mut whole = true;
        for (at, range) in layout.pieces(offset, buf.len()) {
            match file.read_exact_at(&mut buf[range], at) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => whole = false,
                Err(e) => return Err(Error::io(dest, e)),
            }
        }
        present.push(whole && repo.key().blob_id(&buf) == *id);
        offset += buf.len() as u64;
    }
    let mut holes_zero = true;
    for h in &node.holes {
        let end = (h.offset + h.length).min(len);
        if h.offset < end && !reads_as_zeros(file, h.offset, end).map_err(|e| Error::io(dest, e))? {
            holes_zero = false;
            break;
        }
    }
    let identical = len == node.size && holes_zero && present.iter().all(|p| *p);
    Ok(Comparison {
        present,
        holes_zero,
        identical,
    })
}

/// Whether `file` holds exactly the snapshot's content.
pub fn same_content(repo: &Repository, file: &File, dest: &Path, node: &Node) -> Result<bool> {
    let len = file.metadata().map_err(|e| Error::io(dest, e))?.len();
    Ok(len == node.size && compare(repo, file, dest, node)?.identical)
}

/// Whether `start..end` of `file` holds only zeros; its own holes are not read.
fn reads_as_zeros(file: &File, start: u64, end: u64) -> std::io::Result<bool> {
    use nix::unistd::{Whence, lseek};
    let seek = |at: u64, whence| -> std::io::Result<u64> {
        match lseek(file, i64::try_from(at).unwrap_or(i64::MAX), whence) {
            Ok(o) => Ok((o as u64).min(end)),
            Err(nix::errno::Errno::ENXIO) => Ok(end),
            // A file system that cannot tell: read all of it.
            Err(nix::errno::Errno::EINVAL) if matches!(whence, Whence::SeekData) => Ok(at),
            Err(nix::errno::Errno::EINVAL) => Ok(end),
            Err(e) => Err(e.into()),
        }
    };
    let mut buf = vec![0u8; 1024 * 1024];
    let mut at = seek(start, Whence::SeekData)?;
    while at < end {
        let data_end = seek(at, Whence::SeekHole)?.max(at + 1).min(end);
        while at < data_end {
            let n = (data_end - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        at = seek(at, Whence::SeekData)?;
    }
    Ok(true)
}
