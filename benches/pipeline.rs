//! Throughput of the CPU-bound stages of a backup and a restore, one core each:
//! chunking, blob ids, sealing (zstd + AES-256-GCM-SIV), opening, pack assembly, and
//! lookups in the local index cache holding 10k, 1M and 5M blobs.
//!
//! Run with `cargo bench --bench pipeline`. Figures go into BENCHMARKS.md; nothing here
//! is asserted by the test suite. The test suite's smoke run (`cargo test --benches`) runs
//! each benchmark once and builds only the smallest index.

use std::hint::black_box;

use cairn::format::blob::{BlobSealer, open_blob};
use cairn::format::chunker::Chunker;
use cairn::format::config::ChunkerParams;
use cairn::format::crypto::MasterKey;
use cairn::format::id::Id;
use cairn::format::index::{IndexFile, IndexedPack};
use cairn::format::pack::BlobLocation;
use cairn::format::pack::{BlobType, Compression, PackBuilder, PackEntry};
use cairn::repo::cache::IndexCache;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Half random bytes, half text-like runs: roughly what a home directory compresses like.
fn mixed_data(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = rng.usize(4096..65536).min(len - out.len());
        if rng.bool() {
            out.extend((0..run).map(|_| rng.u8(..)));
        } else {
            let words: &[&[u8]] = &[b"backup ", b"chunk ", b"the ", b"snapshot ", b"data\n"];
            while out.len() < len && run > 0 {
                let w = words[rng.usize(..words.len())];
                out.extend_from_slice(&w[..w.len().min(len - out.len())]);
                if rng.u8(..64) == 0 {
                    break;
                }
            }
        }
    }
    out
}

/// True under `cargo bench`; false in the test suite's smoke run, which gets small inputs.
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn benches(c: &mut Criterion) {
    let key = MasterKey::generate().expect("key");
    let mib = if full_run() { 256 } else { 16 };
    let data = mixed_data(mib * 1024 * 1024);
    let blob = &data[..1024 * 1024];

    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function(format!("fastcdc_{mib}MiB_mixed"), |b| {
        let mut chunker = Chunker::new(ChunkerParams::default(), key.chunker_seed);
        b.iter(|| {
            let mut n = 0usize;
            chunker
                .chunks(&data[..], |ch| {
                    n += ch.len();
                    Ok(())
                })
                .expect("chunking");
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("blob_1MiB");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("keyed_blake3_id", |b| {
        b.iter(|| black_box(key.blob_id(black_box(blob))))
    });
    let mut sealer = BlobSealer::new(&key, 3).expect("sealer");
    let id = key.blob_id(blob);
    g.bench_function("seal_zstd3_aes", |b| {
        b.iter(|| {
            black_box(
                sealer
                    .seal(BlobType::Data, id, black_box(blob))
                    .expect("seal"),
            )
        })
    });
    let sealed = sealer.seal(BlobType::Data, id, blob).expect("seal");
    let loc = BlobLocation {
        pack: Id::default(),
        entry: PackEntry {
            kind: BlobType::Data,
            id,
            offset: 0,
            length: sealed.bytes.len() as u32,
            raw_length: blob.len() as u32,
            compression: sealed.compression,
        },
    };
    g.bench_function("open_and_verify", |b| {
        b.iter(|| black_box(open_blob(&key, &loc, black_box(&sealed.bytes)).expect("open")))
    });
    g.finish();

    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(16 * 1024 * 1024));
    g.sample_size(20);
    let sealed_blobs: Vec<_> = data
        .chunks(1024 * 1024)
        .take(16)
        .map(|ch| {
            sealer
                .seal(BlobType::Data, key.blob_id(ch), ch)
                .expect("seal")
        })
        .collect();
    g.bench_function("assemble_16MiB", |b| {
        b.iter_batched(
            || {
                sealed_blobs
                    .iter()
                    .map(|s| cairn::format::pack::SealedBlob {
                        bytes: s.bytes.clone(),
                        ..*s
                    })
                    .collect::<Vec<_>>()
            },
            |blobs| {
                let mut p = PackBuilder::new(17 * 1024 * 1024);
                for s in blobs {
                    p.add(s).expect("add");
                }
                black_box(p.finish(&key).expect("finish"))
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The id of the `i`th made-up blob: random-looking, as real ids are, and reproducible.
fn made_up_id(i: u64) -> Id {
    Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// An index cache on disk holding `n` data blobs, 1,000 per pack and 50,000 per index
/// file, as a backup leaves them.
fn filled_cache(dir: &std::path::Path, n: u64) -> IndexCache {
    let cache = IndexCache::open(Some(dir)).expect("open cache");
    let mut next = 0u64;
    let mut file = 0u64;
    while next < n {
        let mut index = IndexFile::new();
        while next < n && index.blob_count() < 50_000 {
            let count = (n - next).min(1000);
            let blobs = (next..next + count)
                .map(|i| {
                    let at = (i % 1000) as u32 * 600_000;
                    PackEntry {
                        kind: BlobType::Data,
                        id: made_up_id(i),
                        offset: at,
                        length: 600_000,
                        raw_length: 1 << 20,
                        compression: Compression::Zstd,
                    }
                })
                .collect();
            index.packs.push(IndexedPack {
                id: made_up_id(u64::MAX - next),
                size: 16 << 20,
                blobs,
            });
            next += count;
        }
        cache
            .add_index(&made_up_id(u64::MAX / 2 + file), &index)
            .expect("add index");
        file += 1;
    }
    cache.flush().expect("flush");
    cache
}

fn vm_rss_mb() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(|| "?".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0))
}

/// Point lookups as a backup makes them, one per chunk: known blobs (hit) in random order,
/// and new ones (miss).
fn index_lookups(c: &mut Criterion) {
    let sizes: &[u64] = if full_run() {
        &[10_000, 1_000_000, 5_000_000]
    } else {
        &[10_000]
    };
    let mut g = c.benchmark_group("index_lookup");
    for &n in sizes {
        let dir = tempfile::tempdir().expect("temporary folder");
        let started = std::time::Instant::now();
        let cache = filled_cache(dir.path(), n);
        eprintln!(
            "index cache of {n} blobs built in {:.1} s; process RSS {}",
            started.elapsed().as_secs_f64(),
            vm_rss_mb()
        );
        g.bench_with_input(BenchmarkId::new("hit", n), &n, |b, &n| {
            let mut i = 0u64;
            b.iter(|| {
                // A stride prime to n visits the blobs in scattered order.
                i = (i + 2_654_435_761) % n;
                assert!(cache.contains(BlobType::Data, &made_up_id(i)).expect("get"));
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &n, |b, &n| {
            let mut i = n;
            b.iter(|| {
                i += 1;
                assert!(!cache.contains(BlobType::Data, &made_up_id(i)).expect("get"));
            })
        });
        eprintln!("after lookups in {n} blobs: process RSS {}", vm_rss_mb());
    }
    g.finish();
}

criterion_group!(pipeline, benches, index_lookups);
criterion_main!(pipeline);
