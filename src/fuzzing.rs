//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora (`tests/fuzz_replay.rs`), one per decoder that reads bytes from a repository or
//! a user. Each takes arbitrary bytes and must return without panicking, hanging or
//! allocating without bound; an error is a fine answer. Each returns whether the input
//! was accepted all the way through, which the replay test demands of [`seeds`], so that a
//! harness that rejects everything early cannot pass for one that reaches deep. The
//! chunker's and the blob's entries also check their results and panic when they are
//! wrong.
//!
//! Objects sealed with the master key cannot be forged without it, so the entries for
//! them feed the fuzzer's bytes twice: as the sealed object (the envelope must reject
//! them), and sealed under a fixed key, so that everything behind the authentication
//! (decompression, CBOR, the checks after it) sees hostile plaintext too. That is what a
//! bug in a writer, or a holder of the key, could produce.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use crate::format::cbor;
use crate::format::chunker::Chunker;
use crate::format::config::{ChunkerParams, Config};
use crate::format::crypto::{Aad, MasterKey};
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexedPack, MarkedPack};
use crate::format::keyfile::KeyFile;
use crate::format::pack::BlobLocation;
use crate::format::pack::{BlobType, Compression, PackEntry, PackHeader, decode_header};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::ops::archiver::exclude::{ExcludeRules, Excludes};
use crate::ops::patterns::PatternRules;
use crate::repo::tree_walk::{root_node, safe_name};
use crate::repo::{META_RAW, decode_meta};
use crate::store::Location;

/// A fuzz entry point: arbitrary bytes in, whether they were accepted out.
pub type Target = fn(&[u8]) -> bool;

/// Every target by name: the fuzz crate's binaries and the replay test use this list.
pub const TARGETS: &[(&str, Target)] = &[
    ("key_file", key_file),
    ("config", config),
    ("pack_header", pack_header),
    ("index_file", index_file),
    ("tree", tree),
    ("blob", blob),
    ("snapshot", snapshot),
    ("repository_url", repository_url),
    ("exclude_patterns", exclude_patterns),
    ("chunker", chunker),
];

fn key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::fixed(7))
}

/// Opens `data` as a sealed metadata object, then seals it as plaintext and decodes that.
fn meta<T: serde::de::DeserializeOwned + cbor::Versioned>(aad: Aad, data: &[u8]) -> Option<T> {
    let k = key();
    if let Ok(plain) = k.open(aad, data, "fuzz") {
        let _ = decode_meta::<T>(&plain, "fuzz");
    }
    let sealed = k.seal(aad, data).ok()?;
    let plain = k.open(aad, &sealed, "fuzz").ok()?;
    decode_meta::<T>(&plain, "fuzz").ok()
}

/// `keys/<id>`: plain CBOR, then the bounds on its Argon2 parameters, then the sealed
/// master key under a fixed key-wrapping key (deriving one per input would be too slow).
pub fn key_file(data: &[u8]) -> bool {
    let Ok(file) = KeyFile::decode(data, "fuzz") else {
        return false;
    };
    let _ = key().open(Aad::MasterKey, &file.master, "fuzz");
    file.kdf.check().is_ok()
}

/// `config`: decoded and validated as `Repository::open` does.
pub fn config(data: &[u8]) -> bool {
    meta::<Config>(Aad::Config, data).is_some_and(|c| c.validate().is_ok())
}

/// A pack's tail: first as read from the store; then with the first 8 bytes as the pack's
/// size and the rest as the header's plaintext, sealed into a tail.
pub fn pack_header(data: &[u8]) -> bool {
    let k = key();
    let _ = decode_header(k, data, data.len() as u64, "fuzz");
    let Some((size, plain)) = data.split_first_chunk::<8>() else {
        return false;
    };
    let Ok(mut tail) = k.seal(Aad::PackHeader, plain) else {
        return false;
    };
    let Ok(len) = u32::try_from(tail.len()) else {
        return false;
    };
    tail.extend_from_slice(&len.to_le_bytes());
    decode_header(k, &tail, u64::from_le_bytes(*size), "fuzz").is_ok()
}

/// `index/<id>`: decoded, then every entry read as the cache reads it.
pub fn index_file(data: &[u8]) -> bool {
    let Some(index) = meta::<IndexFile>(Aad::Index, data) else {
        return false;
    };
    let _ = index.blob_count();
    for pack in &index.packs {
        for e in &pack.blobs {
            let _ = (e.kind, e.id, e.offset, e.length, e.raw_length);
        }
    }
    true
}

/// A tree blob's plaintext: decoded, with every name checked as a restore checks it.
pub fn tree(data: &[u8]) -> bool {
    let Ok(tree) = cbor::decode::<Tree>(data, "fuzz") else {
        return false;
    };
    let mut names_ok = true;
    for node in &tree.nodes {
        names_ok &= safe_name(&node.name).is_ok();
        let _ = tree.find(&node.name);
    }
    names_ok
}

/// What a zstd frame of at most 16 MiB decodes to, by a path independent of `blob`'s.
fn reference_decode(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(body)
        .ok()?
        .take(16 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A blob as an index describes it: the first 4 bytes are the plaintext length the entry
/// claims, the 5th the compression, the rest the stored body (a zstd frame or raw bytes),
/// sealed under the fixed key. Its id is that of what the body really holds, so a valid
/// input opens; opening must otherwise fail cleanly, never trust the claimed length
/// alone, and never return other bytes than the body holds.
pub fn blob(data: &[u8]) -> bool {
    let Some((head, body)) = data.split_first_chunk::<5>() else {
        return false;
    };
    let raw_length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let (compression, expected) = if head[4] & 1 == 0 {
        (Compression::None, Some(body.to_vec()))
    } else {
        (Compression::Zstd, reference_decode(body))
    };
    let k = key();
    let id = expected.as_deref().map_or(Id([0; 32]), |e| k.blob_id(e));
    let Ok(sealed) = k.seal(Aad::Blob(BlobType::Data as u8, id), body) else {
        return false;
    };
    let Ok(length) = u32::try_from(sealed.len()) else {
        return false;
    };
    let loc = BlobLocation {
        pack: Id([0; 32]),
        entry: PackEntry {
            kind: BlobType::Data,
            id,
            offset: 0,
            length,
            raw_length,
            compression,
        },
    };
    let mut plain = Vec::new();
    let opened = crate::format::blob::open_blob_into(k, &loc, &sealed, &mut plain).is_ok();
    if opened {
        assert!(
            expected.as_deref() == Some(plain.as_slice()),
            "a blob opened to other bytes than it holds"
        );
    } else {
        assert!(
            plain.is_empty(),
            "a blob that failed to open left bytes behind"
        );
    }
    opened
}

/// `snapshots/<id>`: decoded, and its time shown as `snapshots` shows it.
pub fn snapshot(data: &[u8]) -> bool {
    let Some(s) = meta::<Snapshot>(Aad::Snapshot, data) else {
        return false;
    };
    let _ = s.local_time().to_rfc3339();
    true
}

/// `--repo` and `CAIRN_REPOSITORY`.
pub fn repository_url(data: &[u8]) -> bool {
    Location::parse(&String::from_utf8_lossy(data)).is_ok()
}

/// `--exclude` patterns, one per line, then matched against a few absolute paths.
pub fn exclude_patterns(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let patterns: Vec<String> = text.lines().map(str::to_string).collect();
    let rules = ExcludeRules {
        patterns: PatternRules {
            patterns: patterns.clone(),
            ipatterns: patterns.clone(),
            ..PatternRules::default()
        },
        ..ExcludeRules::default()
    };
    let Ok(excludes) = Excludes::new(&rules) else {
        return false;
    };
    for path in ["/", "/home/me/x.tmp", "/a/b/c/d", "/.cache"] {
        let _ = excludes.matches(Path::new(path), true);
        let _ = excludes.matches(Path::new(path), false);
    }
    for p in patterns.iter().filter(|p| p.starts_with('/')) {
        let _ = excludes.matches(Path::new(p), false);
    }
    true
}

/// Reads its input a few bytes at a time, as a pipe or a slow disk hands data over.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::from(self.sizes[self.turn % self.sizes.len()]).max(1);
        self.turn += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

const SMALL_CHUNKS: ChunkerParams = ChunkerParams {
    min: 64,
    avg: 256,
    max: 1024,
};
const MEDIUM_CHUNKS: ChunkerParams = ChunkerParams {
    min: 512,
    avg: 2048,
    max: 8192,
};

/// Chunk lengths of `reader`'s bytes, and the chunks joined.
fn chunk_all(params: ChunkerParams, seed: u64, reader: &mut dyn Read) -> (Vec<usize>, Vec<u8>) {
    let mut lengths = Vec::new();
    let mut joined = Vec::new();
    let result = Chunker::new(params, seed).chunks(reader, |c| {
        lengths.push(c.len());
        joined.extend_from_slice(c);
        Ok(())
    });
    assert!(result.is_ok(), "chunking bytes in memory failed");
    (lengths, joined)
}

/// The chunker: the chunks concatenate back to the input, none is empty or over `max`,
/// and the boundaries are the same whatever sizes the reads return. The first byte picks
/// the sizes and the seed, the next four the read sizes.
pub fn chunker(data: &[u8]) -> bool {
    let Some((head, input)) = data.split_first_chunk::<5>() else {
        return false;
    };
    let params = if head[0] & 1 == 0 {
        SMALL_CHUNKS
    } else {
        MEDIUM_CHUNKS
    };
    let seed = u64::from(head[0] >> 1);
    let (whole, joined) = chunk_all(params, seed, &mut &input[..]);
    assert!(
        joined == input,
        "the chunks do not concatenate to the input"
    );
    assert!(
        whole.iter().all(|&n| n >= 1 && n <= params.max as usize),
        "a chunk is empty or longer than max"
    );
    let mut pieces = Pieces {
        data: input,
        sizes: &head[1..],
        turn: 0,
    };
    let (in_pieces, _) = chunk_all(params, seed, &mut pieces);
    assert_eq!(whole, in_pieces, "boundaries depend on the read sizes");
    true
}

/// Valid inputs for every target, made by cairn's own encoders: the fuzzers start from
/// them, and the replay test checks that each is accepted.
pub fn seeds() -> crate::Result<Vec<(&'static str, Vec<u8>)>> {
    let k = key();
    let meta_raw = |cbor: Vec<u8>| [vec![META_RAW], cbor].concat();
    let entry = |offset, length, raw| PackEntry {
        kind: BlobType::Data,
        id: k.blob_id(&[offset as u8]),
        offset,
        length,
        raw_length: raw,
        compression: Compression::Zstd,
    };
    let mut out = Vec::new();

    let key_file = KeyFile::create(&MasterKey::fixed(1), b"fuzz")?;
    out.push(("key_file", key_file.encode().1));

    let config = Config::new(ChunkerParams::default(), 3, None)?;
    out.push(("config", meta_raw(cbor::encode(&config))));
    let sealed = crate::repo::seal_meta_bytes(k, Aad::Config, &config, 3)?;
    out.push(("config", k.open(Aad::Config, &sealed, "seed")?));

    let header = PackHeader {
        v: 1,
        blobs: vec![entry(0, 100, 180), entry(100, 60, 60)],
    };
    let pack_size: u64 = 1 << 20;
    out.push((
        "pack_header",
        [pack_size.to_le_bytes().to_vec(), cbor::encode(&header)].concat(),
    ));

    let mut index = IndexFile::new();
    index.packs.push(IndexedPack {
        id: k.blob_id(b"pack"),
        size: pack_size,
        blobs: header.blobs.clone(),
    });
    index.delete.push(MarkedPack {
        id: k.blob_id(b"old pack"),
        size: 5000,
        marked: 1_700_000_000_000_000_000,
        blobs: header.blobs.clone(),
    });
    out.push(("index_file", meta_raw(cbor::encode(&index))));

    let mut file = root_node(k.blob_id(b"tree"));
    file.name = b"notes.txt".to_vec();
    file.kind = NodeKind::File;
    file.subtree = None;
    file.size = 180;
    file.content = vec![header.blobs[0].id];
    let mut dir = root_node(k.blob_id(b"subtree"));
    dir.name = b"sub dir\n".to_vec();
    out.push(("tree", cbor::encode(&Tree::new(vec![file, dir]))));

    let text = b"the same words, the same words, the same words again".repeat(4);
    let frame =
        zstd::bulk::compress(&text, 3).map_err(|e| crate::Error::Internal(e.to_string()))?;
    let raw_len = (text.len() as u32).to_le_bytes();
    out.push(("blob", [&raw_len[..], &[1], &frame].concat()));
    out.push(("blob", [&raw_len[..], &[0], &text].concat()));

    let snap = Snapshot {
        v: 1,
        time: 1_700_000_000_123_456_789,
        tree: k.blob_id(b"tree"),
        paths: vec!["/home/me".into()],
        hostname: "host".into(),
        username: "me".into(),
        uid: 1000,
        gid: 1000,
        tags: vec!["daily".into()],
        parent: Some(k.blob_id(b"parent")),
        summary: Some(crate::format::snapshot::Summary::default()),
        program: "cairn".into(),
    };
    out.push(("snapshot", meta_raw(cbor::encode(&snap))));

    out.push(("repository_url", b"s3://my-bucket/backups/laptop".to_vec()));
    out.push(("repository_url", b"/srv/backup/repo".to_vec()));
    out.push((
        "exclude_patterns",
        b"*.tmp\n/home/*/.cache/\n**/target\n!keep.tmp\n[a-z]?.log".to_vec(),
    ));

    let mut noise = vec![0u8, 1, 7, 64, 255];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    noise.extend((0..6000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    out.push(("chunker", noise));
    Ok(out)
}
