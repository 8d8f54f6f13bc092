//! Test fixtures on an open repository (unit tests only).

use crate::format::blob::BlobSealer;
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexedPack};
use crate::format::pack::{BlobType, PackBuilder};

use super::Repository;

/// Stores `packs` (each a list of plaintexts, sealed as blobs of `kind`) as packs listed
/// in one new index file; returns the blob ids, pack by pack.
pub(crate) fn store_packs(repo: &Repository, kind: BlobType, packs: &[Vec<Vec<u8>>]) -> Vec<Id> {
    let mut sealer = BlobSealer::new(repo.key(), 3).expect("sealer");
    let mut index = IndexFile::new();
    let mut ids = Vec::new();
    for plains in packs {
        let mut builder = PackBuilder::new(1 << 20);
        for plain in plains {
            let id = repo.key().blob_id(plain);
            builder
                .add(sealer.seal(kind, id, plain).expect("seal"))
                .expect("add");
            ids.push(id);
        }
        let pack = builder.finish(repo.key()).expect("finish");
        repo.upload_pack(&pack).expect("upload");
        index.packs.push(IndexedPack {
            id: pack.id,
            size: pack.bytes.len() as u64,
            blobs: pack.entries,
        });
    }
    repo.save_index(&index).expect("index");
    ids
}
