//! Reading several sorted tables as one: a k-way merge that yields each key once, its best
//! location by [`Record::rank`]: live before marked, a pack known damaged last.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::error::Result;
use crate::format::id::Id;

use super::table::{Cursor, Record, Table};

/// The next record of one input, ordered by key, rank and then input.
struct Head {
    record: Record,
    rank: u8,
    input: usize,
}

impl Head {
    fn rank(&self) -> (&[u8], u8, usize) {
        (self.record.key(), self.rank, self.input)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// Calls `each` with the records of all `tables` in key order, one per key: the first by
/// [`Record::rank`] under `damaged`, so a live location wins over a marked one and any
/// location over one in a pack known damaged.
pub fn merge(
    tables: &[&Table],
    damaged: &dyn Fn(&Id) -> bool,
    each: &mut dyn FnMut(&Record) -> Result<()>,
) -> Result<()> {
    let mut cursors: Vec<Cursor<'_>> = tables.iter().map(|t| t.cursor()).collect();
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (input, c) in cursors.iter_mut().enumerate() {
        if let Some(record) = c.next_record()? {
            let rank = record.rank(damaged);
            heap.push(Reverse(Head {
                record,
                rank,
                input,
            }));
        }
    }
    let mut last: Option<Record> = None;
    while let Some(Reverse(head)) = heap.pop() {
        if last.as_ref().is_none_or(|l| l.key() != head.record.key()) {
            each(&head.record)?;
            last = Some(head.record);
        }
        if let Some(record) = cursors[head.input].next_record()? {
            heap.push(Reverse(Head {
                rank: record.rank(damaged),
                record,
                input: head.input,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{BlobType, Compression, PackEntry};
    use crate::repo::cache::table::{LIVE, MARKED, TableWriter};

    fn record(i: u64, pack: u8, state: u8) -> Record {
        let id = Id(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let e = PackEntry {
            kind: BlobType::Data,
            id,
            offset: 0,
            length: 1,
            raw_length: 1,
            compression: Compression::None,
        };
        Record::new(&Id([pack; 32]), &e, state)
    }

    fn table(dir: &std::path::Path, name: &str, mut records: Vec<Record>) -> Table {
        records.sort_by(|a, b| a.order().cmp(&b.order()));
        let mut w = TableWriter::create(&dir.join(name)).unwrap();
        for r in &records {
            w.push(r).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn yields_each_key_once_preferring_live() {
        let dir = tempfile::tempdir().unwrap();
        // 0..300 live in pack 1; 200..400 marked in pack 2; 350..500 live in pack 3.
        let a = table(
            dir.path(),
            "a",
            (0..300).map(|i| record(i, 1, LIVE)).collect(),
        );
        let b = table(
            dir.path(),
            "b",
            (200..400).map(|i| record(i, 2, MARKED)).collect(),
        );
        let c = table(
            dir.path(),
            "c",
            (350..500).map(|i| record(i, 3, LIVE)).collect(),
        );
        let mut out = Vec::new();
        merge(&[&b, &a, &c], &|_| false, &mut |r| {
            out.push(*r);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len(), 500);
        assert!(out.windows(2).all(|w| w[0].key() < w[1].key()));
        let pack_of = |i: u64| {
            let key = record(i, 0, LIVE);
            let r = out.iter().find(|r| r.key() == key.key()).unwrap();
            (
                r.location().unwrap().pack.0[0],
                r.state() == crate::repo::cache::table::LIVE,
            )
        };
        assert_eq!(pack_of(10), (1, true));
        assert_eq!(pack_of(250), (1, true));
        assert_eq!(pack_of(320), (2, false));
        assert_eq!(pack_of(380), (3, true));
    }
}
