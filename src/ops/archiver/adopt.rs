//! Adopting the packs of interrupted backups: a backup killed, or cut off from the store,
//! after uploading packs but before the index file that lists them leaves packs that no
//! index file lists. Before storing anything, a backup finds them and indexes those that
//! are sound, so it reuses their blobs and uploads only what is missing.
//!
//! Cost: one listing of `data/`, compared with the pack lists of the local index cache,
//! and one ranged read (two for a header over 64 KiB) per pack no index file lists;
//! nothing more when there are none.
//!
//! A pack is adopted only if its header opens under the repository key (so this
//! repository wrote it) and its blobs fill it exactly up to the header (so its listed size
//! is the size it was written with). Anything else, damaged or foreign or unreadable (a data
//! pack in a cold storage class), is left alone and named at `-v`; a prune marks it and
//! later deletes it. The adopted packs go into normal index files, written before the
//! backup stores anything, so the repository is consistent even if this backup dies too.
//!
//! Beside a prune (which never waits for a backup, see `prune`):
//! - A pack that a prune has marked is listed (in an index file's `delete`): it is not a
//!   candidate. Its blobs stay marked and are not deduplicated against, as for every
//!   marked pack, and the backup stores them anew.
//! - A prune that found the pack unlisted and is about to mark it writes the mark beside
//!   the adoption's live listing, whichever comes first. A pack listed live anywhere is
//!   live (format-spec section 7), and prune only replaces the index files it read, so the
//!   live listing stands; the next prune treats the pack as any live pack: kept while a
//!   snapshot needs it, marked anew (with a new grace period) when none does.
//! - A prune deletes a pack only after its mark has aged past the grace period. A mark that
//!   old was in the index files when this backup opened the repository, so this backup saw
//!   the pack as listed and did not adopt it; the only assumption is prune's own, that no
//!   backup runs longer than the grace period. `--keep-delete 0` deletes unlisted packs in
//!   the same run and is, as documented, only for when no backup runs.
//! - Packs written by a prune or another backup that are not yet in an index file look
//!   unlisted too. Adopting them lists them twice once their own index file lands: readers
//!   take the union of all index files, so that is harmless.
//!
//! The same listing shows the opposite damage: packs an index file lists that the store no
//! longer holds (deleted by hand, lost by a sync or a lifecycle rule). They are recorded in
//! the local cache as damaged (`IndexCache::note_damaged`), so this backup does not
//! deduplicate against their blobs: it stores again whatever its sources still hold, and
//! its snapshot is complete. A pack recorded missing that is back in the store is forgotten
//! again.

use crate::error::Result;
use crate::format::id::Id;
use crate::format::index::IndexedPack;
use crate::format::pack::{BlobType, check_layout};
use crate::repo::cache::MISSING_FROM_STORE;
use crate::repo::writer::{FlushPolicy, IndexWriter};
use crate::repo::{Repository, pool};
use crate::store::{Kind, ObjectName};

/// No pack is shorter: a sealed header (nonce and tag alone are 28 bytes) and its length.
const SMALLEST_PACK: u64 = 28 + 4;

/// What an adoption found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// Packs indexed, their blobs and bytes.
    pub packs: u64,
    pub blobs: u64,
    pub bytes: u64,
    /// Packs no index file lists that were left alone.
    pub left_alone: u64,
}

/// A pack that no index file lists, examined.
pub(crate) struct Examined {
    pub(crate) pack: IndexedPack,
    /// The whole pack, when reading its header read all of it.
    pub(crate) bytes: Option<Vec<u8>>,
}

/// Finds the stored packs that no index file lists and indexes the sound ones; records
/// the listed packs that the store lacks as damaged.
pub fn adopt_unlisted_packs(repo: &Repository) -> Result<Adopted> {
    let stored = repo.stored_packs()?;
    let listed = repo.index()?.listed_packs()?;
    note_missing_packs(repo, &stored, &listed)?;
    let mut unlisted: Vec<(Id, u64)> = stored
        .into_iter()
        .filter(|(id, _)| !listed.contains(id))
        .collect();
    drop(listed);
    let mut adopted = Adopted::default();
    if unlisted.is_empty() {
        return Ok(adopted);
    }
    unlisted.sort_unstable();
    let examined = examine_all(repo, &unlisted);
    // Index files as big as a backup's, not cut by time or size: they are written at once.
    let index = IndexWriter::new(repo, FlushPolicy::by_blobs());
    for ((id, _), outcome) in unlisted.iter().zip(examined) {
        let name = ObjectName::new(Kind::Pack, id);
        match outcome {
            Ok(e) => {
                adopted.packs += 1;
                adopted.blobs += e.pack.blobs.len() as u64;
                adopted.bytes += e.pack.size;
                let is_tree = e.pack.blobs.first().map(|b| b.kind) == Some(BlobType::Tree);
                index.live(e.pack)?;
                // A larger tree pack is fetched whole by the first read of one of its trees.
                if let (true, Some(bytes)) = (is_tree, e.bytes) {
                    repo.cache_tree_pack(id, &bytes);
                }
                tracing::debug!("adopting {name}");
            }
            Err(e) => {
                adopted.left_alone += 1;
                tracing::info!("{name} is in no index and is left alone: {e}");
            }
        }
    }
    index.finish()?;
    if adopted.packs > 0 {
        tracing::info!(
            "reusing {} packs ({} bytes, {} blobs) that an interrupted run uploaded but did not index",
            adopted.packs,
            adopted.bytes,
            adopted.blobs
        );
    }
    Ok(adopted)
}

/// Records the packs that index files list and the store lacks, and forgets recorded
/// packs that are back in the store (when recorded missing) or gone from every index file.
fn note_missing_packs(
    repo: &Repository,
    stored: &std::collections::HashMap<Id, u64>,
    listed: &std::collections::HashSet<Id>,
) -> Result<()> {
    let index = repo.index()?;
    let missing: Vec<(Id, String)> = listed
        .iter()
        .filter(|id| !stored.contains_key(id))
        .map(|id| (*id, MISSING_FROM_STORE.to_string()))
        .collect();
    for (id, _) in missing.iter().take(5) {
        tracing::warn!(
            "{} is listed in the index but missing from the store: its data is stored again where the sources still have it (`cairn check` tells what else is affected)",
            ObjectName::new(Kind::Pack, id)
        );
    }
    repo.note_damaged_packs(missing)?;
    let settled: Vec<Id> = index
        .damaged_packs()
        .into_iter()
        .filter(|(id, why)| {
            let back = stored.contains_key(id) && why == MISSING_FROM_STORE;
            back || (!listed.contains(id) && !stored.contains_key(id))
        })
        .map(|(id, _)| id)
        .collect();
    index.clear_damaged(settled)
}

/// Reads the headers of `packs`, several at once on a network store.
fn examine_all(repo: &Repository, packs: &[(Id, u64)]) -> Vec<Result<Examined>> {
    let workers = crate::threads().max(repo.backend().write_concurrency());
    pool::map(packs, workers, |(id, size)| examine(repo, id, *size))
}

/// Reads one pack's header and checks that the pack is whole and this repository's.
pub(crate) fn examine(repo: &Repository, id: &Id, size: u64) -> Result<Examined> {
    let name = ObjectName::new(Kind::Pack, id).path();
    if size < SMALLEST_PACK {
        return Err(crate::Error::corrupt(name, "too short to be a pack"));
    }
    let (blobs, tail) = repo.read_pack_header(id, size)?;
    check_layout(&blobs, &tail, size, &name)?;
    if blobs.is_empty() {
        return Err(crate::Error::corrupt(name, "its header lists no blobs"));
    }
    let whole = tail.len() as u64 == size && Id::of_stored(&tail) == *id;
    Ok(Examined {
        pack: IndexedPack {
            id: *id,
            size,
            blobs,
        },
        bytes: whole.then_some(tail),
    })
}
