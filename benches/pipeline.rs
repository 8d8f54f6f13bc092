//! Throughput of the CPU-bound stages of a backup and a restore, one core each:
//! chunking, blob ids, sealing (zstd + AES-256-GCM-SIV), opening, and pack assembly.
//!
//! Run with `cargo bench --bench pipeline`. Figures go into BENCHMARKS.md; nothing here
//! is asserted by the test suite.

use std::hint::black_box;

use cairn::blob::{BlobSealer, open_blob};
use cairn::cache::BlobLocation;
use cairn::chunker::Chunker;
use cairn::config::ChunkerParams;
use cairn::crypto::MasterKey;
use cairn::id::Id;
use cairn::pack::{BlobType, PackBuilder, PackEntry};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

fn benches(c: &mut Criterion) {
    let key = MasterKey::generate().expect("key");
    let data = mixed_data(64 * 1024 * 1024);
    let blob = &data[..1024 * 1024];

    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc_64MiB_mixed", |b| {
        let chunker = Chunker::new(ChunkerParams::default(), key.chunker_seed);
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
        entry: PackEntry(
            BlobType::Data,
            id,
            0,
            sealed.bytes.len() as u32,
            blob.len() as u32,
            sealed.compression,
        ),
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
                    .map(|s| cairn::pack::SealedBlob {
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

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
