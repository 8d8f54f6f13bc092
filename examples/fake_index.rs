//! Adds index files listing made-up blobs to a local repository, to measure how cairn's
//! memory and speed behave as the index grows (`benches/compare.sh --datasets scale`).
//!
//!   CAIRN_PASSWORD_FILE=F cargo run --release --example fake_index -- REPO BLOBS
//!
//! The blobs point at packs that do not exist, so such a repository is for measuring only:
//! `check` reports every one of them missing. Ids are keyed BLAKE3 of a counter, so they
//! never equal a real chunk's.

use std::sync::Arc;

use anyhow::{Context, bail};
use cairn::format::index::{BLOBS_PER_INDEX_FILE, IndexFile, IndexedPack};
use cairn::format::pack::{BlobType, Compression, PackEntry};
use cairn::repo::Repository;
use cairn::store::local::LocalBackend;
use cairn::store::retry::RetryPolicy;

const BLOBS_PER_PACK: u64 = 1000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, count] = &args[..] else {
        bail!("usage: fake_index REPO BLOBS (password from CAIRN_PASSWORD_FILE)");
    };
    let count: u64 = count.parse().context("BLOBS must be a number")?;
    let file = std::env::var("CAIRN_PASSWORD_FILE").context("set CAIRN_PASSWORD_FILE")?;
    let password = std::fs::read_to_string(&file).with_context(|| file.clone())?;
    let backend = Arc::new(LocalBackend::new(std::path::absolute(repo)?));
    let repo = Repository::open(
        backend,
        password.trim_end_matches('\n').as_bytes(),
        None,
        &RetryPolicy::default(),
    )?;
    // A random start, so that repeated runs add new blobs rather than the same ones.
    let mut start = [0u8; 8];
    cairn::format::crypto::random_bytes(&mut start)?;
    let base = u64::from_le_bytes(start) >> 1;
    let made_up = |i: u64| repo.key().blob_id(&(base + i).to_le_bytes());
    let mut next = 0u64;
    while next < count {
        let mut index = IndexFile::new();
        while next < count && index.blob_count() < BLOBS_PER_INDEX_FILE {
            let n = (count - next).min(BLOBS_PER_PACK);
            let blobs = (next..next + n)
                .map(|i| {
                    let at = (i % BLOBS_PER_PACK) as u32 * 16_000;
                    PackEntry {
                        kind: BlobType::Data,
                        id: made_up(i),
                        offset: at,
                        length: 16_000,
                        raw_length: 32_000,
                        compression: Compression::Zstd,
                    }
                })
                .collect();
            index.packs.push(IndexedPack {
                id: made_up(u64::MAX / 2 - next),
                size: 16_000 * BLOBS_PER_PACK,
                blobs,
            });
            next += n;
        }
        repo.save_index(&index)?;
    }
    println!("added {count} made-up blobs");
    Ok(())
}
