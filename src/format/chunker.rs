//! Content-defined chunking with FastCDC 2020, keyed by the repository's chunker seed.
//!
//! The cut points are FastCDC's (`fastcdc::v2020::cut_gear`, normalisation level 1), the
//! same as its `StreamCDC` finds; only the buffering is ours. `StreamCDC` copies every
//! chunk into a new `Vec` and shifts the rest of its buffer down after each one, which
//! profiling showed as a third of a backup's page faults. Here one buffer per worker is
//! reused for every file, chunks are handed out as slices of it, and bytes are moved only
//! when the chunk being built reaches the buffer's end.

use std::borrow::Cow;
use std::io::{ErrorKind, Read};

use fastcdc::v2020::{Normalization, cut_gear, get_gear_with_seed, select_masks};

use crate::format::config::ChunkerParams;

/// Splits readers into chunks. Holds a buffer of `max + max / 4` bytes once the first
/// input arrives, reused for every later one.
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
    buf: Vec<u8>,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker {
        let avg = params.avg as usize;
        let (mask_s, mask_l) = select_masks(avg, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Chunker {
            min: params.min as usize,
            avg,
            max: params.max as usize,
            mask_s,
            mask_l,
            gear,
            gear_ls,
            buf: Vec::new(),
        }
    }

    /// Calls `each` with every chunk of `reader` in order.
    pub fn chunks<R: Read>(
        &mut self,
        mut reader: R,
        mut each: impl FnMut(&[u8]) -> crate::Result<()>,
    ) -> Result<(), ChunkError> {
        if self.buf.is_empty() {
            // Zeroed memory comes from the OS untouched: pages are only mapped as the
            // largest input so far needs them.
            self.buf = vec![0; self.max + self.max / 4];
        }
        let (mut start, mut end, mut eof) = (0, 0, false);
        loop {
            let avail = end - start;
            if avail > 0 {
                let n = self.cut(start, end);
                // A cut found before the end of the data read is final: FastCDC decides
                // each position from the bytes before it. At the end, it is final only
                // once the chunk reached `max` or the input ended.
                if n < avail || avail >= self.max || eof {
                    each(&self.buf[start..start + n]).map_err(ChunkError::Sink)?;
                    start += n;
                    continue;
                }
            } else if eof {
                return Ok(());
            }
            if end == self.buf.len() {
                // Only the unfinished chunk moves, and it is shorter than `max`.
                self.buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            match reader.read(&mut self.buf[end..]) {
                Ok(0) => eof = true,
                Ok(k) => end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ChunkError::Io(e)),
            }
        }
    }

    /// Length of the chunk starting at `start`, given the bytes up to `end` (at least 1).
    fn cut(&self, start: usize, end: usize) -> usize {
        let (_, n) = cut_gear(
            &self.buf[start..end],
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        // cut_gear never returns 0 for a non-empty input; guard the loop anyway.
        n.max(1)
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

    const SMALL: ChunkerParams = ChunkerParams {
        min: 4096,
        avg: 16384,
        max: 65536,
    };

    fn cut_with(c: &mut Chunker, reader: impl Read) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        c.chunks(reader, |ch| {
            out.push(ch.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    fn cut(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        cut_with(&mut Chunker::new(SMALL, seed), data)
    }

    /// Hands out its data in reads of varying, seeded lengths (1 byte to 3 × max).
    struct Jagged<'a> {
        data: &'a [u8],
        state: u64,
    }

    impl Read for Jagged<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let want = match self.state % 4 {
                0 => 1 + (self.state >> 8) as usize % 64,
                1 => 1 + (self.state >> 8) as usize % 8192,
                _ => 1 + (self.state >> 8) as usize % (3 * 65536),
            };
            let n = want.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn cuts_where_fastcdc_streaming_cuts_for_any_read_sizes() {
        // Random bytes, long zero runs (chunks of exactly max) and a short tail.
        let mut data = pseudo_random(3 << 20, 11);
        data[200_000..600_000].fill(0);
        data.extend(std::iter::repeat_n(7u8, 150_000));
        data.extend(pseudo_random(5_000, 12));
        let seed = 0x5eed;
        let reference: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
            &data[..],
            SMALL.min as usize,
            SMALL.avg as usize,
            SMALL.max as usize,
            Normalization::Level1,
            seed,
        )
        .map(|c| c.unwrap().data)
        .collect();
        // One chunker reused across inputs, as a worker reuses it across files.
        let mut c = Chunker::new(SMALL, seed);
        assert_eq!(cut_with(&mut c, &data[..]), reference);
        for state in 1..6 {
            let jagged = Jagged { data: &data, state };
            assert_eq!(cut_with(&mut c, jagged), reference, "read pattern {state}");
        }
        // Inputs no longer than min are one chunk; empty input is none.
        assert_eq!(cut_with(&mut c, &data[..4096]), vec![data[..4096].to_vec()]);
        assert!(cut_with(&mut c, &[][..]).is_empty());
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
