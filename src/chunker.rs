//! Content-defined chunking with FastCDC 2020, keyed by the repository's chunker seed.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use crate::config::ChunkerParams;

/// Streams chunks of a reader. Inputs no longer than `min` are one chunk, read without
/// setting up the chunker (FastCDC never cuts below `min`), which spares small files the
/// chunker's `max`-sized buffer.
pub struct Chunker {
    params: ChunkerParams,
    seed: u64,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker {
        Chunker { params, seed }
    }

    pub fn min_size(&self) -> u64 {
        u64::from(self.params.min)
    }

    /// Calls `each` with every chunk of `reader` in order.
    pub fn chunks<R: Read>(
        &self,
        reader: R,
        mut each: impl FnMut(Vec<u8>) -> crate::Result<()>,
    ) -> Result<(), ChunkError> {
        let cdc = StreamCDC::with_level_and_seed(
            reader,
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            Normalization::Level1,
            self.seed,
        );
        for chunk in cdc {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => ChunkError::Io(io),
                other => ChunkError::Io(std::io::Error::other(other.to_string())),
            })?;
            each(chunk.data).map_err(ChunkError::Sink)?;
        }
        Ok(())
    }
}

/// Reading failed (the file's fault) or handling a chunk failed (the repository's).
#[derive(Debug)]
pub enum ChunkError {
    Io(std::io::Error),
    Sink(crate::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn cut(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        let c = Chunker::new(
            ChunkerParams {
                min: 4096,
                avg: 16384,
                max: 65536,
            },
            seed,
        );
        let mut out = Vec::new();
        c.chunks(data, |ch| {
            out.push(ch);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn chunks_concatenate_and_depend_on_seed() {
        let data = pseudo_random(1 << 20, 7);
        let a = cut(&data, 1);
        assert_eq!(a.concat(), data);
        assert!(a.len() > 20);
        let b = cut(&data, 2);
        assert_eq!(b.concat(), data);
        assert_ne!(
            a.iter().map(Vec::len).collect::<Vec<_>>(),
            b.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_edit_changes_few_chunks() {
        let data = pseudo_random(1 << 20, 9);
        let mut edited = data.clone();
        edited[500_000] ^= 0xff;
        let a = cut(&data, 3);
        let b = cut(&edited, 3);
        let same = b.iter().filter(|c| a.contains(c)).count();
        assert!(
            b.len() - same <= 2,
            "{} of {} chunks changed",
            b.len() - same,
            b.len()
        );
    }
}
