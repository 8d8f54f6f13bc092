//! Prune: delete the data that no snapshot needs, safely beside running backups.
//!
//! Two phases, as rustic does. A prune never deletes a pack the moment it finds it unneeded:
//! it writes new index files that list the pack as *marked* with the time, and deletes the
//! old index files. Backups no longer deduplicate against a marked pack, but a backup that
//! started earlier may still write a snapshot that uses it. A later prune, once the mark is
//! older than the grace period (`keep_delete`, 23 h by default), looks at all snapshots
//! again: a marked pack that some snapshot needs becomes live again, the others are
//! deleted. The only assumption is that no backup runs longer than the grace period.
//!
//! Order of writes, so that a crash at any point leaves a repository that checks clean:
//! repacked packs are uploaded, then expired marked packs deleted, then the new index
//! files written, then the index files they replace deleted. Readers take the union of
//! all index files and a pack live in any of them is live, so old and new side by side
//! mean the same as either.

mod plan;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexedPack, MarkedPack};
use crate::format::now_nanos;
use crate::format::pack::{BlobLocation, BlobType, PackBuilder};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::writer::{self, FlushPolicy, IndexWriter, PackFiller};
use crate::store::counting::RequestStats;
use crate::store::{Kind, ObjectName};

pub use plan::{Action, PrunePlan};
use plan::{Emit, PackState};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Unused space tolerated after the prune, as a share (0.05 = 5%) of the bytes the
    /// live packs hold.
    pub max_unused: f64,
    /// How long a marked pack waits before it may be deleted. Zero deletes at once, which
    /// is safe only while no backup runs.
    pub keep_delete: chrono::Duration,
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            keep_delete: chrono::Duration::hours(23),
            dry_run: false,
        }
    }
}

/// What a prune found and did (or, on a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneStats {
    pub dry_run: bool,
    pub snapshots: u64,
    pub needed_blobs: u64,
    /// Live packs and their bytes before the prune.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Bytes of needed blobs and of unneeded ones in live packs, and the rest of those
    /// packs (their headers): `pack_bytes = used_bytes + unused_bytes + header_bytes`.
    pub used_bytes: u64,
    pub unused_bytes: u64,
    pub header_bytes: u64,
    /// Live packs with nothing needed: marked now.
    pub packs_marked: u64,
    pub bytes_marked: u64,
    /// Partly used packs copied into new ones and marked.
    pub packs_repacked: u64,
    pub bytes_repacked: u64,
    pub new_packs: u64,
    pub new_pack_bytes: u64,
    /// Packs no index lists (left by interrupted runs): marked now.
    pub packs_unindexed: u64,
    pub bytes_unindexed: u64,
    /// Marked packs deleted in this run, and their bytes.
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Marked packs a snapshot needs again: live again.
    pub packs_recovered: u64,
    /// Marked packs still in their grace period.
    pub packs_waiting: u64,
    pub bytes_waiting: u64,
    /// Objects under object-lock retention that were left in place.
    pub retained: Vec<String>,
    /// Indexed packs that no longer exist and held nothing needed: dropped from the index.
    pub packs_missing_dropped: u64,
    pub index_files_read: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Temporary files of interrupted writes, older than the grace period, removed.
    pub temp_files_removed: u64,
    /// Requests the prune makes, from opening the repository on (dry run: those made,
    /// plus an estimate of those a real run would make besides).
    pub requests: RequestStats,
    pub duration_secs: f64,
}

/// Runs a prune: reads what the plan needs, decides (`PrunePlan::build`), then carries
/// the plan out. The caller holds the repository lock.
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneStats> {
    let started = std::time::Instant::now();

    // 1. What the snapshots need.
    let snapshots = repo.every_snapshot().map_err(|e| {
        e.during(
            "",
            ". Prune deletes nothing while a snapshot cannot be read, because the data \
             only it needs would look unused: run it again after a network failure, upgrade \
             cairn for a newer format, and remove a snapshot damaged beyond repair with \
             `cairn forget ID`",
        )
    })?;
    progress.start("reading snapshots", snapshots.len() as u64);
    let needed = crate::repo::needed::collect(repo, &snapshots, progress)?;
    tracing::info!(
        "{} blobs needed by {} snapshots ({} KiB in memory)",
        needed.len(),
        snapshots.len(),
        needed.memory() / 1024
    );

    // 2. Where the index files say they are, and what the store holds.
    let index_ids: Vec<Id> = repo
        .backend()
        .list_ids(Kind::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let index_files = index_ids
        .iter()
        .map(|id| repo.load_meta::<IndexFile>(id).map(|file| (*id, file)));
    let stored = repo.stored_packs()?;

    // 3. Decide.
    let damaged: HashSet<Id> = repo.index()?.damaged_packs().into_keys().collect();
    let mut plan = PrunePlan::build(needed, index_files, &stored, &damaged, opts, now_nanos())?;
    plan.stats.snapshots = snapshots.len() as u64;
    drop(snapshots);
    if opts.dry_run {
        estimate_requests(repo, &mut plan)?;
        plan.stats.duration_secs = started.elapsed().as_secs_f64();
        return Ok(plan.stats);
    }
    let grace = opts.keep_delete.to_std().unwrap_or_default();
    execute(repo, &mut plan, grace, progress)?;
    plan.stats.requests = repo.request_stats();
    plan.stats.duration_secs = started.elapsed().as_secs_f64();
    Ok(plan.stats)
}

/// Carries a plan out, in the order that keeps every moment of it a repository that
/// checks clean (see the module's comment).
fn execute(
    repo: &Repository,
    plan: &mut PrunePlan,
    grace: std::time::Duration,
    progress: &dyn Progress,
) -> Result<()> {
    // 4. Repack.
    progress.message("repacking");
    let new_packs = repack(repo, &plan.packs, &mut plan.stats)?;

    // 5. Delete expired marked packs (never listed live anywhere).
    progress.message("deleting packs");
    let expired: Vec<(Id, u64)> = plan
        .packs
        .iter()
        .filter(|(_, p)| p.action == Action::Delete)
        .map(|(id, p)| (*id, p.size))
        .collect();
    for (id, _) in &expired {
        crate::interrupt::stop_if_requested("prune")?;
        if !delete_pack(repo, id, &mut plan.stats)? {
            // Under retention: it stays marked for a later prune.
            plan.retained(id);
        }
    }

    // 6. New index files for the files that change, then remove those files. Each is
    // read again rather than kept from the planning: all index files at once could take
    // more memory than the index cache is built to spare.
    progress.message("writing the index");
    let writer = IndexWriter::new(repo, FlushPolicy::by_blobs());
    let mut emitted: HashSet<Id> = HashSet::new();
    let rewrite: Vec<Id> = plan.rewritten().copied().collect();
    for index_id in &rewrite {
        crate::interrupt::stop_if_requested("prune")?;
        let file: IndexFile = repo.load_meta(index_id)?;
        for p in file.packs {
            match plan.emit_live(&p.id, &mut emitted) {
                Emit::Live => writer.live(p)?,
                Emit::Marked(marked) => writer.marked(MarkedPack {
                    id: p.id,
                    size: p.size,
                    marked,
                    blobs: p.blobs,
                })?,
                Emit::Nothing => {}
            }
        }
        for m in file.delete {
            match plan.emit_marked(&m.id, &mut emitted) {
                Emit::Marked(marked) => writer.marked(MarkedPack { marked, ..m })?,
                Emit::Live => writer.live(IndexedPack {
                    id: m.id,
                    size: m.size,
                    blobs: m.blobs,
                })?,
                Emit::Nothing => {}
            }
        }
    }
    for p in new_packs {
        writer.live(p)?;
    }
    if !plan.instant {
        for (id, size) in plan.unindexed.clone() {
            let marked = MarkedPack {
                id,
                size,
                marked: plan.now,
                blobs: Vec::new(),
            };
            writer.marked(marked)?;
        }
    }
    let written: HashSet<Id> = writer.finish()?.into_iter().collect();
    plan.stats.index_files_written += written.len() as u64;
    for index_id in &rewrite {
        if written.contains(index_id) {
            continue;
        }
        match repo
            .backend()
            .remove(&ObjectName::new(Kind::Index, index_id))
        {
            Ok(()) => plan.stats.index_files_removed += 1,
            Err(Error::Retained { object, until }) => {
                plan.stats.retained.push(format!("{object} until {until}"))
            }
            Err(e) => return Err(e),
        }
    }

    // 7. Without a grace period, what was marked goes now that no index lists it.
    if plan.instant {
        progress.message("deleting packs");
        let marked: Vec<Id> = plan
            .packs
            .iter()
            .filter(|(_, p)| matches!(p.action, Action::Mark | Action::Repack | Action::Unindexed))
            .map(|(id, _)| *id)
            .collect();
        for id in &marked {
            crate::interrupt::stop_if_requested("prune")?;
            if !delete_pack(repo, id, &mut plan.stats)? {
                plan.retained(id);
            }
        }
    }
    // Leftovers of interrupted writes, after the same grace period as marked packs: a
    // backup running now may still be writing its own.
    plan.stats.temp_files_removed = repo.backend().remove_leftovers(grace)?;
    repo.index()?.flush()
}

/// Deletes a pack and its local copy. One under object-lock retention is left in place
/// and reported; returns whether it went.
fn delete_pack(repo: &Repository, id: &Id, stats: &mut PruneStats) -> Result<bool> {
    match repo.backend().remove(&ObjectName::new(Kind::Pack, id)) {
        Ok(()) => {
            repo.forget_cached_pack(id);
            Ok(true)
        }
        Err(Error::Retained { object, until }) => {
            stats.retained.push(format!("{object} until {until}"));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Copies the needed blobs of the packs chosen for repacking into new packs. Blobs are
/// checked (decrypted, decompressed, hashed) before their sealed bytes are copied, so
/// damage is never carried into a new pack.
fn repack(
    repo: &Repository,
    packs: &BTreeMap<Id, PackState>,
    stats: &mut PruneStats,
) -> Result<Vec<IndexedPack>> {
    let mut out = Vec::new();
    for kind in [BlobType::Tree, BlobType::Data] {
        let mut filler = PackFiller::for_repo(repo, kind);
        for (id, p) in packs {
            if p.action != Action::Repack {
                continue;
            }
            crate::interrupt::stop_if_requested("prune")?;
            let mut locs: Vec<BlobLocation> = p
                .used
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| BlobLocation {
                    pack: *id,
                    entry: *e,
                })
                .collect();
            if locs.is_empty() {
                continue;
            }
            locs.sort_by_key(|l| l.entry.offset);
            let mut failed = None;
            repo.read_run_sealed(&locs, &mut |i, sealed| {
                let sealed = sealed?;
                let loc = &locs[i];
                if let Err(e) = crate::format::blob::open_blob(repo.key(), loc, sealed) {
                    failed.get_or_insert(e);
                    return Ok(());
                }
                let entry = &loc.entry;
                if let Some(full) =
                    filler.add(entry.id, entry.raw_length, entry.compression, sealed)?
                {
                    out.push(store_pack(repo, full, stats)?);
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                return Err(e.during(
                    format!("repacking pack {id}: "),
                    "; nothing was deleted (run `cairn check --read-data`)",
                ));
            }
        }
        if let Some(last) = filler.take() {
            out.push(store_pack(repo, last, stats)?);
        }
    }
    Ok(out)
}

fn store_pack(
    repo: &Repository,
    builder: PackBuilder,
    stats: &mut PruneStats,
) -> Result<IndexedPack> {
    let (entry, _) = writer::write_pack(repo, builder.finish(repo.key())?)?;
    stats.new_packs += 1;
    stats.new_pack_bytes += entry.size;
    Ok(entry)
}

/// The requests a prune would make, for `--dry-run`.
fn estimate_requests(repo: &Repository, plan: &mut PrunePlan) -> Result<()> {
    let repacked = || plan.packs.values().filter(|p| p.action == Action::Repack);
    let repacked_bytes: u64 = repacked().map(|p| p.used_bytes).sum();
    let new_packs = repacked_bytes.div_ceil(u64::from(repo.config().pack_size).max(1))
        + u64::from(repacked_bytes > 0);
    let stats = &plan.stats;
    let new_index = plan.new_index_files(
        new_packs
            + if plan.instant {
                0
            } else {
                stats.packs_unindexed
            },
        repacked().map(|p| p.used.len()).sum(),
    );
    let rewritten = plan.rewritten().count() as u64;
    let mut r = RequestStats {
        get: stats.packs_repacked + rewritten,
        put: new_packs + new_index,
        delete: stats.packs_deleted + rewritten,
        ..RequestStats::default()
    };
    if repo.backend().remote() {
        // S3 deletes look at the object's retention first.
        r.head = r.delete;
    }
    // A real run also takes the repository's lock and releases it.
    r = r + crate::repo::lock::requests(repo.backend().as_ref())?;
    // Everything read so far, a real run reads too.
    plan.stats.requests = repo.request_stats() + r;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The executor on the memory store: what a plan decided is what the store holds
    //! afterwards. The decisions themselves are tested in `plan.rs`.
    use std::sync::Arc;

    use super::*;
    use crate::format::config::{ObjectLockConfig, RetentionMode};
    use crate::repo::InitOptions;
    use crate::repo::testing::store_packs;
    use crate::store::Backend;
    use crate::store::memory::MemoryBackend;
    use crate::store::retry::RetryPolicy;

    const PASSWORD: &[u8] = b"prune executor test";

    /// A repository holding `packs` data packs of one blob each, listed in one index
    /// file, and no snapshot: every pack is unneeded.
    fn repository_of_unneeded_packs(store: Arc<dyn Backend>, packs: u8, lock: bool) -> Repository {
        let opts = InitOptions {
            object_lock: lock.then_some(ObjectLockConfig {
                mode: RetentionMode::Compliance,
                days: 1,
            }),
            ..InitOptions::default()
        };
        let retry = RetryPolicy::default();
        Repository::init(store.clone(), PASSWORD, &opts, &retry).unwrap();
        let repo = Repository::open(store, PASSWORD, None, &retry).unwrap();
        let plains: Vec<Vec<Vec<u8>>> = (0..packs).map(|n| vec![vec![n; 1000]]).collect();
        store_packs(&repo, BlobType::Data, &plains);
        repo
    }

    fn run(repo: &Repository, keep_delete_hours: i64) -> PruneStats {
        let opts = PruneOptions {
            keep_delete: chrono::Duration::hours(keep_delete_hours),
            ..PruneOptions::default()
        };
        prune(repo, &opts, &crate::progress::Silent).unwrap()
    }

    fn count(repo: &Repository, kind: Kind) -> usize {
        repo.backend().list(kind).unwrap().len()
    }

    #[test]
    fn marks_first_and_deletes_once_the_mark_may_go() {
        let repo = repository_of_unneeded_packs(Arc::new(MemoryBackend::new()), 3, false);
        let first = run(&repo, 23);
        assert_eq!((first.packs_marked, first.packs_deleted), (3, 0));
        assert_eq!(
            count(&repo, Kind::Pack),
            3,
            "marked packs stay for the grace period"
        );
        assert_eq!(
            (first.index_files_written, first.index_files_removed),
            (1, 1),
            "the marks replace the file that listed the packs live"
        );

        let waiting = run(&repo, 23);
        assert_eq!((waiting.packs_waiting, waiting.packs_deleted), (3, 0));
        assert_eq!(waiting.index_files_written, 0, "nothing changed");

        let last = run(&repo, 0);
        assert_eq!((last.packs_deleted, last.packs_waiting), (3, 0));
        assert_eq!(count(&repo, Kind::Pack), 0);
        assert_eq!(count(&repo, Kind::Index), 0, "no index file lists anything");
    }

    #[test]
    fn without_a_grace_period_the_packs_and_their_index_go_at_once() {
        let repo = repository_of_unneeded_packs(Arc::new(MemoryBackend::new()), 2, false);
        let stats = run(&repo, 0);
        assert_eq!((stats.packs_marked, stats.packs_deleted), (2, 2));
        assert_eq!(
            (count(&repo, Kind::Pack), count(&repo, Kind::Index)),
            (0, 0)
        );
        assert!(stats.retained.is_empty());
    }

    #[test]
    fn objects_under_retention_are_left_and_reported() {
        let store = Arc::new(MemoryBackend::new().with_object_lock());
        let repo = repository_of_unneeded_packs(store, 2, true);
        let stats = run(&repo, 0);
        assert_eq!(stats.packs_deleted, 0, "{stats:?}");
        assert_eq!(stats.bytes_deleted, 0, "{stats:?}");
        // Both packs and the index file that listed them.
        assert_eq!(stats.retained.len(), 3, "{:?}", stats.retained);
        assert!(
            stats.retained.iter().all(|r| r.contains(" until ")),
            "{:?}",
            stats.retained
        );
        assert_eq!(count(&repo, Kind::Pack), 2, "nothing under retention went");
        // The old index file still lists them, so the repository reads as before.
        assert_eq!(count(&repo, Kind::Index), 1);
    }
}
