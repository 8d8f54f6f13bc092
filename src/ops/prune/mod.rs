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

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::crypto::Aad;
use crate::format::id::Id;
use crate::format::index::{BLOBS_PER_INDEX_FILE, IndexFile, IndexedPack, MarkedPack};
use crate::format::pack::BlobLocation;
use crate::format::pack::{BlobType, PackBuilder, PackEntry, SealedBlob};
use crate::repo::Repository;
use crate::store::counting::RequestStats;
use crate::store::{Kind, ObjectName};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Live and stays live as it is.
    Keep,
    /// Live, nothing needed: becomes marked.
    Mark,
    /// Live, partly needed: needed blobs copied to new packs, the pack becomes marked.
    Repack,
    /// Listed nowhere but present: becomes marked.
    Unindexed,
    /// Marked, still waiting.
    Wait,
    /// Marked, needed again: live again.
    Recover,
    /// Marked and expired (or a mark that is to go at once): deleted now.
    Delete,
    /// Listed but gone from the store, nothing needed: left out of the index.
    Drop,
}

struct PackState {
    size: u64,
    action: Action,
    /// Mark time for marked packs.
    marked: Option<i64>,
    /// Bytes of blobs, and of needed ones claimed by this pack.
    blob_bytes: u64,
    used_bytes: u64,
    /// The claimed entries, kept for packs that may be repacked.
    used: Vec<PackEntry>,
    /// How many blobs the pack's index entry lists.
    blobs: usize,
}

/// Which packs each index file lists, for deciding which files must be rewritten.
struct IndexListing {
    id: Id,
    live: Vec<Id>,
    marked: Vec<(Id, i64)>,
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Runs a prune. The caller holds the repository lock.
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &indicatif::ProgressBar,
) -> Result<PruneStats> {
    let started = std::time::Instant::now();
    let now = now_nanos();
    let instant = opts.keep_delete <= chrono::Duration::zero();
    let mut stats = PruneStats {
        dry_run: opts.dry_run,
        ..PruneStats::default()
    };

    // 1. What the snapshots need.
    let snapshots = repo.every_snapshot().map_err(|e| {
        Error::Other(format!(
            "{e}. Prune deletes nothing while a snapshot cannot be read, because the data \
             only it needs would look unused: run it again after a network failure, upgrade \
             cairn for a newer format, and remove a snapshot damaged beyond repair with \
             `cairn forget ID`"
        ))
    })?;
    stats.snapshots = snapshots.len() as u64;
    progress.set_length(snapshots.len() as u64);
    progress.set_message("reading snapshots");
    let mut needed = crate::repo::needed::collect(repo, &snapshots, progress)?;
    stats.needed_blobs = needed.len() as u64;
    tracing::info!(
        "{} blobs needed by {} snapshots ({} KiB in memory)",
        needed.len(),
        snapshots.len(),
        needed.memory() / 1024
    );

    // 2. Where the index files say they are. Live packs first: a blob in a live pack never
    // needs a marked one.
    let mut index_ids: Vec<Id> = repo
        .backend()
        .list(Kind::Index)?
        .into_iter()
        .filter_map(|l| Id::from_hex(&l.name).ok())
        .collect();
    index_ids.sort();
    let mut packs: BTreeMap<Id, PackState> = BTreeMap::new();
    let mut marked: BTreeMap<Id, MarkedPack> = BTreeMap::new();
    let mut listings = Vec::with_capacity(index_ids.len());
    for id in &index_ids {
        let file: IndexFile = repo.load_meta(Kind::Index, Aad::Index, id)?;
        stats.index_files_read += 1;
        let mut listing = IndexListing {
            id: *id,
            live: Vec::with_capacity(file.packs.len()),
            marked: Vec::with_capacity(file.delete.len()),
        };
        for p in file.packs {
            listing.live.push(p.id);
            if packs.contains_key(&p.id) {
                continue;
            }
            let mut state = PackState {
                size: p.size,
                action: Action::Keep,
                marked: None,
                blob_bytes: 0,
                used_bytes: 0,
                used: Vec::new(),
                blobs: p.blobs.len(),
            };
            for e in &p.blobs {
                state.blob_bytes += u64::from(e.length);
                if needed.claim(e.kind, &e.id) {
                    state.used_bytes += u64::from(e.length);
                    state.used.push(*e);
                }
            }
            if state.used.len() == p.blobs.len() {
                // Wholly used: nothing to repack, so the entries are not needed later.
                state.used = Vec::new();
            }
            packs.insert(p.id, state);
        }
        for m in file.delete {
            listing.marked.push((m.id, m.marked));
            match marked.get_mut(&m.id) {
                // The latest mark wins: deleting later is the safe side.
                Some(prev) => {
                    prev.marked = prev.marked.max(m.marked);
                    if prev.blobs.is_empty() {
                        prev.blobs = m.blobs;
                    }
                }
                None => {
                    marked.insert(m.id, m);
                }
            }
        }
        listings.push(listing);
    }
    let stored = repo.stored_packs()?;

    // 3. Decide. Live packs first.
    let mut missing_needed = Vec::new();
    for (id, p) in packs.iter_mut() {
        if !stored.contains_key(id) {
            if p.used_bytes > 0 || !p.used.is_empty() {
                missing_needed.push(*id);
            }
            p.action = Action::Drop;
            stats.packs_missing_dropped += 1;
            continue;
        }
        stats.packs += 1;
        stats.pack_bytes += p.size;
        stats.used_bytes += p.used_bytes;
        stats.unused_bytes += p.blob_bytes - p.used_bytes;
        stats.header_bytes += p.size.saturating_sub(p.blob_bytes);
        if p.used_bytes == 0 && p.used.is_empty() {
            p.action = Action::Mark;
            stats.packs_marked += 1;
            stats.bytes_marked += p.size;
        }
    }
    // Marked packs: a mark beside a live listing is stale; a needed one comes back.
    for (id, m) in &marked {
        if packs.contains_key(id) {
            continue;
        }
        let size = stored.get(id).copied();
        let mut state = PackState {
            size: size.unwrap_or(m.size),
            action: Action::Wait,
            marked: Some(m.marked),
            blob_bytes: 0,
            used_bytes: 0,
            used: Vec::new(),
            blobs: m.blobs.len(),
        };
        if size.is_none() {
            state.action = Action::Drop;
        } else {
            for e in &m.blobs {
                if needed.claim(e.kind, &e.id) {
                    state.used.push(*e);
                }
            }
            if !state.used.is_empty() {
                state.action = Action::Recover;
                stats.packs_recovered += 1;
            } else if instant
                || now.saturating_sub(m.marked)
                    >= opts.keep_delete.num_nanoseconds().unwrap_or(i64::MAX)
            {
                state.action = Action::Delete;
            } else {
                stats.packs_waiting += 1;
                stats.bytes_waiting += state.size;
            }
        }
        packs.insert(*id, state);
    }
    let lost = needed.unclaimed();
    if lost > 0 || !missing_needed.is_empty() {
        let packs_note = if missing_needed.is_empty() {
            String::new()
        } else {
            format!(
                "; indexed packs missing from the store: {}",
                missing_needed
                    .iter()
                    .take(5)
                    .map(Id::short)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Error::Other(format!(
            "{lost} blobs that snapshots need are in no pack{packs_note}; prune deletes nothing while the repository is damaged (run `cairn check` to see which snapshots are affected)"
        )));
    }
    drop(needed);
    // Packs in the store that no index file lists, live or marked: the same test a backup
    // uses to adopt packs (`archiver::adopt`), so a pack marked here is never adopted later.
    let mut unindexed: Vec<(Id, u64)> = stored
        .iter()
        .filter(|(id, _)| !packs.contains_key(id))
        .map(|(id, size)| (*id, *size))
        .collect();
    unindexed.sort();
    for (id, size) in &unindexed {
        stats.packs_unindexed += 1;
        stats.bytes_unindexed += size;
        packs.insert(
            *id,
            PackState {
                size: *size,
                action: Action::Unindexed,
                marked: None,
                blob_bytes: 0,
                used_bytes: 0,
                used: Vec::new(),
                blobs: 0,
            },
        );
    }
    choose_repacks(&mut packs, opts.max_unused, &mut stats);
    for p in packs.values() {
        if p.action == Action::Delete {
            stats.packs_deleted += 1;
            stats.bytes_deleted += p.size;
        }
    }
    if instant {
        // No grace period: what would be marked goes at once, after the new index.
        for p in packs.values() {
            if matches!(p.action, Action::Mark | Action::Repack | Action::Unindexed) {
                stats.packs_deleted += 1;
                stats.bytes_deleted += p.size;
            }
        }
    }

    // Which index files change.
    let rewrite: Vec<&IndexListing> = listings
        .iter()
        .filter(|l| {
            l.live
                .iter()
                .any(|id| packs.get(id).is_none_or(|p| p.action != Action::Keep))
                || l.marked.iter().any(|(id, t)| {
                    packs
                        .get(id)
                        .is_none_or(|p| p.action != Action::Wait || p.marked != Some(*t))
                })
        })
        .collect();

    if opts.dry_run {
        estimate_requests(repo, &packs, &rewrite, instant, &mut stats)?;
        stats.duration_secs = started.elapsed().as_secs_f64();
        return Ok(stats);
    }

    // 4. Repack.
    progress.set_message("repacking");
    let new_packs = repack(repo, &packs, &mut stats)?;

    // 5. Delete expired marked packs (never listed live anywhere).
    progress.set_message("deleting packs");
    for (id, p) in packs.iter_mut() {
        if p.action == Action::Delete && !delete_pack(repo, id, p.size, &mut stats)? {
            // Under retention: it stays marked for a later prune.
            p.action = Action::Wait;
        }
    }

    // 6. New index files for the files that change, then remove those files.
    progress.set_message("writing the index");
    let mut writer = IndexWriter::default();
    let mut emitted: HashSet<Id> = HashSet::new();
    for listing in &rewrite {
        let file: IndexFile = repo.load_meta(Kind::Index, Aad::Index, &listing.id)?;
        for p in file.packs {
            let Some(state) = packs.get(&p.id) else {
                continue;
            };
            if !emitted.insert(p.id) {
                continue;
            }
            match state.action {
                Action::Keep => writer.live(repo, p, &mut stats)?,
                Action::Mark | Action::Repack if !instant => writer.marked(
                    repo,
                    MarkedPack {
                        id: p.id,
                        size: p.size,
                        marked: now,
                        blobs: p.blobs,
                    },
                    &mut stats,
                )?,
                _ => {}
            }
        }
        for m in file.delete {
            let Some(state) = packs.get(&m.id) else {
                continue;
            };
            // A pack that is live in some listing is emitted (or kept) as live there.
            if state.marked.is_none() || !emitted.insert(m.id) {
                continue;
            }
            match state.action {
                Action::Wait => writer.marked(
                    repo,
                    MarkedPack {
                        marked: state.marked.unwrap_or(m.marked),
                        ..m
                    },
                    &mut stats,
                )?,
                Action::Recover => writer.live(
                    repo,
                    IndexedPack {
                        id: m.id,
                        size: m.size,
                        blobs: m.blobs,
                    },
                    &mut stats,
                )?,
                _ => {}
            }
        }
    }
    for p in new_packs {
        writer.live(repo, p, &mut stats)?;
    }
    if !instant {
        for (id, size) in &unindexed {
            writer.marked(
                repo,
                MarkedPack {
                    id: *id,
                    size: *size,
                    marked: now,
                    blobs: Vec::new(),
                },
                &mut stats,
            )?;
        }
    }
    let written = writer.finish(repo, &mut stats)?;
    for listing in &rewrite {
        if written.contains(&listing.id) {
            continue;
        }
        match repo
            .backend()
            .remove(&ObjectName::new(Kind::Index, &listing.id))
        {
            Ok(()) => stats.index_files_removed += 1,
            Err(Error::Retained { object, until }) => {
                stats.retained.push(format!("{object} until {until}"))
            }
            Err(e) => return Err(e),
        }
    }

    // 7. Without a grace period, what was marked goes now that no index lists it.
    if instant {
        progress.set_message("deleting packs");
        for (id, p) in &packs {
            if matches!(p.action, Action::Mark | Action::Repack | Action::Unindexed) {
                delete_pack(repo, id, p.size, &mut stats)?;
            }
        }
    }
    // Leftovers of interrupted writes, after the same grace period as marked packs: a
    // backup running now may still be writing its own.
    let grace = opts.keep_delete.to_std().unwrap_or_default();
    stats.temp_files_removed = repo.backend().remove_leftovers(grace)?;
    repo.index()?.flush()?;
    stats.requests = repo.request_stats();
    stats.duration_secs = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Deletes a pack counted in `packs_deleted`, and its local copy. One under object-lock
/// retention is left in place, reported and uncounted; returns whether it went.
fn delete_pack(repo: &Repository, id: &Id, size: u64, stats: &mut PruneStats) -> Result<bool> {
    match repo.backend().remove(&ObjectName::new(Kind::Pack, id)) {
        Ok(()) => {
            repo.forget_cached_pack(id);
            Ok(true)
        }
        Err(Error::Retained { object, until }) => {
            stats.retained.push(format!("{object} until {until}"));
            stats.packs_deleted -= 1;
            stats.bytes_deleted -= size;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Picks partly used packs to repack, most wasteful first, until the unused bytes left
/// are within `max_unused` of the used ones.
fn choose_repacks(packs: &mut BTreeMap<Id, PackState>, max_unused: f64, stats: &mut PruneStats) {
    let limit = if max_unused >= 1.0 {
        u64::MAX
    } else {
        // unused / (used + unused) <= max  ⇔  unused <= used * max / (1 - max)
        (stats.used_bytes as f64 * max_unused / (1.0 - max_unused)) as u64
    };
    let mut candidates: Vec<(Id, u64, u64)> = packs
        .iter()
        .filter(|(_, p)| p.action == Action::Keep && p.used_bytes < p.blob_bytes)
        .map(|(id, p)| (*id, p.blob_bytes - p.used_bytes, p.blob_bytes))
        .collect();
    // Highest unused share first; ties by more unused bytes.
    candidates.sort_by(|a, b| {
        let share = |c: &(Id, u64, u64)| c.1 as f64 / c.2.max(1) as f64;
        share(b)
            .total_cmp(&share(a))
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(&b.0))
    });
    // Packs about to be marked free their space anyway; only the kept ones count.
    let mut unused: u64 = candidates.iter().map(|c| c.1).sum();
    for (id, waste, _) in candidates {
        if unused <= limit {
            break;
        }
        if let Some(p) = packs.get_mut(&id) {
            p.action = Action::Repack;
            stats.packs_repacked += 1;
            stats.bytes_repacked += p.size;
            unused -= waste;
        }
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
    let target = repo.config().pack_size as usize;
    let mut out = Vec::new();
    for kind in [BlobType::Tree, BlobType::Data] {
        let mut builder = PackBuilder::new(target + target / 8);
        for (id, p) in packs {
            if p.action != Action::Repack {
                continue;
            }
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
                builder.add(SealedBlob {
                    kind,
                    id: loc.entry.id,
                    raw_length: loc.entry.raw_length,
                    compression: loc.entry.compression,
                    bytes: sealed.to_vec(),
                })
            })?;
            if let Some(e) = failed {
                return Err(Error::Other(format!(
                    "repacking pack {id}: {e}; nothing was deleted (run `cairn check --read-data`)"
                )));
            }
            if builder.size() >= target {
                let full = std::mem::replace(&mut builder, PackBuilder::new(target + target / 8));
                out.push(store_pack(repo, full, stats)?);
            }
        }
        if !builder.is_empty() {
            out.push(store_pack(repo, builder, stats)?);
        }
    }
    Ok(out)
}

fn store_pack(
    repo: &Repository,
    builder: PackBuilder,
    stats: &mut PruneStats,
) -> Result<IndexedPack> {
    let pack = builder.finish(repo.key())?;
    repo.upload_pack(&pack)?;
    stats.new_packs += 1;
    stats.new_pack_bytes += pack.bytes.len() as u64;
    Ok(IndexedPack {
        id: pack.id,
        size: pack.bytes.len() as u64,
        blobs: pack.entries,
    })
}

/// Gathers packs into index files of bounded size.
#[derive(Default)]
struct IndexWriter {
    current: Option<IndexFile>,
    written: HashSet<Id>,
}

impl IndexWriter {
    fn file(&mut self) -> &mut IndexFile {
        self.current.get_or_insert_with(IndexFile::new)
    }

    fn live(&mut self, repo: &Repository, p: IndexedPack, stats: &mut PruneStats) -> Result<()> {
        self.file().packs.push(p);
        self.flush_if_full(repo, stats)
    }

    fn marked(&mut self, repo: &Repository, m: MarkedPack, stats: &mut PruneStats) -> Result<()> {
        self.file().delete.push(m);
        self.flush_if_full(repo, stats)
    }

    fn flush_if_full(&mut self, repo: &Repository, stats: &mut PruneStats) -> Result<()> {
        if self.file().blob_count() >= BLOBS_PER_INDEX_FILE {
            self.flush(repo, stats)?;
        }
        Ok(())
    }

    fn flush(&mut self, repo: &Repository, stats: &mut PruneStats) -> Result<()> {
        if let Some(file) = self.current.take()
            && !file.is_empty()
        {
            let id = repo.save_index(&file)?;
            self.written.insert(id);
            stats.index_files_written += 1;
        }
        Ok(())
    }

    fn finish(mut self, repo: &Repository, stats: &mut PruneStats) -> Result<HashSet<Id>> {
        self.flush(repo, stats)?;
        Ok(self.written)
    }
}

/// The requests a prune would make, for `--dry-run`.
fn estimate_requests(
    repo: &Repository,
    packs: &BTreeMap<Id, PackState>,
    rewrite: &[&IndexListing],
    instant: bool,
    stats: &mut PruneStats,
) -> Result<()> {
    let repacked = || packs.values().filter(|p| p.action == Action::Repack);
    let repacked_bytes: u64 = repacked().map(|p| p.used_bytes).sum();
    let new_packs = repacked_bytes.div_ceil(u64::from(repo.config().pack_size).max(1))
        + u64::from(repacked_bytes > 0);
    let new_index = new_index_files(
        packs,
        rewrite,
        instant,
        new_packs + if instant { 0 } else { stats.packs_unindexed },
        repacked().map(|p| p.used.len()).sum(),
    );
    let mut r = RequestStats {
        get: stats.packs_repacked + rewrite.len() as u64,
        put: new_packs + new_index,
        delete: stats.packs_deleted + rewrite.len() as u64,
        ..RequestStats::default()
    };
    if repo.backend().remote() {
        // S3 deletes look at the object's retention first.
        r.head = r.delete;
    }
    // A real run also takes the repository's lock and releases it.
    r = r + crate::repo::lock::requests(repo.backend().as_ref())?;
    // Everything read so far, a real run reads too.
    stats.requests = repo.request_stats() + r;
    Ok(())
}

/// How many index files the real run writes: the entries of step 6 (those of the
/// rewritten files that stay listed, then `extra_entries` more holding `extra_blobs`), in
/// files of up to `BLOBS_PER_INDEX_FILE` blobs.
fn new_index_files(
    packs: &BTreeMap<Id, PackState>,
    rewrite: &[&IndexListing],
    instant: bool,
    extra_entries: u64,
    extra_blobs: usize,
) -> u64 {
    let mut emitted: HashSet<Id> = HashSet::new();
    let (mut entries, mut blobs) = (extra_entries, extra_blobs);
    for listing in rewrite {
        for id in &listing.live {
            if let Some(p) = packs.get(id)
                && emitted.insert(*id)
                && (p.action == Action::Keep
                    || (!instant && matches!(p.action, Action::Mark | Action::Repack)))
            {
                entries += 1;
                blobs += p.blobs;
            }
        }
        for (id, _) in &listing.marked {
            if let Some(p) = packs.get(id)
                && p.marked.is_some()
                && emitted.insert(*id)
                && matches!(p.action, Action::Wait | Action::Recover)
            {
                entries += 1;
                blobs += p.blobs;
            }
        }
    }
    if entries == 0 {
        0
    } else {
        (blobs.div_ceil(BLOBS_PER_INDEX_FILE) as u64).max(1)
    }
}
