//! Prune's decisions, made from what the repository says about itself and nothing else.
//!
//! A plan is built from three facts: the blobs the snapshots need, the index files (live
//! packs with their blobs, marked packs with their mark times) and the listing of packs
//! in the store. It decides one [`Action`] per pack and which index files must be
//! replaced, and counts what the prune will do. It reads no object and writes none, so
//! every rule of prune can be tested on made-up index files (see the tests below); the
//! executor in `mod.rs` carries the plan out in the crash-safe order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{BLOBS_PER_INDEX_FILE, IndexFile};
use crate::format::pack::PackEntry;
use crate::repo::needed::NeededBlobs;

use super::{PruneOptions, PruneStats};

/// What happens to one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
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
    /// Marked and expired: deleted now.
    Delete,
    /// Listed but gone from the store, nothing needed: left out of the index.
    Drop,
}

pub(super) struct PackState {
    pub(super) size: u64,
    pub(super) action: Action,
    /// Mark time for marked packs.
    pub(super) marked: Option<i64>,
    /// Bytes of blobs, and of needed ones claimed by this pack.
    blob_bytes: u64,
    pub(super) used_bytes: u64,
    /// The claimed entries, kept for packs that may be repacked.
    pub(super) used: Vec<PackEntry>,
    /// How many blobs the pack's index entry lists.
    blobs: usize,
    /// Known to be damaged (the local cache's record): its blobs are claimed only after
    /// every sound pack's, and it is never repacked (its blobs would not copy).
    damaged: bool,
}

impl PackState {
    fn new(size: u64, action: Action) -> PackState {
        PackState {
            size,
            action,
            marked: None,
            blob_bytes: 0,
            used_bytes: 0,
            used: Vec::new(),
            blobs: 0,
            damaged: false,
        }
    }
}

/// Which packs one index file lists, for deciding whether it must be rewritten.
struct IndexListing {
    id: Id,
    live: Vec<Id>,
    marked: Vec<(Id, i64)>,
}

/// What an entry of a rewritten index file becomes in the new index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Emit {
    Live,
    /// Marked, with this mark time.
    Marked(i64),
    /// Left out: deleted, dropped, or already written from another file.
    Nothing,
}

pub struct PrunePlan {
    pub(super) packs: BTreeMap<Id, PackState>,
    listings: Vec<IndexListing>,
    /// Indexes into `listings` of the files to replace.
    rewrite: Vec<usize>,
    /// Packs that no index file lists, sorted.
    pub(super) unindexed: Vec<(Id, u64)>,
    /// No grace period: what would be marked is deleted once the new index is written.
    pub(super) instant: bool,
    /// The mark time of packs marked now.
    pub(super) now: i64,
    /// The figures of the decisions; the executor adds what it did.
    pub stats: PruneStats,
}

impl PrunePlan {
    /// Decides. `needed` holds what the snapshots need (frozen); `index_files` yields
    /// every index file of the repository; `stored` is the listing of packs with their
    /// sizes; `damaged` the packs known to be damaged; `now` is in nanoseconds since the
    /// epoch. A needed blob that no pack holds is an error: prune deletes nothing in a
    /// damaged repository.
    ///
    /// Needed blobs are claimed from sound packs first, then from damaged ones, never from
    /// packs missing from the store: a blob that a backup stored again after its pack was
    /// lost is kept where it is sound, and a damaged pack whose blobs all have a sound copy
    /// is marked like any unneeded pack.
    pub fn build(
        mut needed: NeededBlobs,
        index_files: impl IntoIterator<Item = Result<(Id, IndexFile)>>,
        stored: &HashMap<Id, u64>,
        damaged: &HashSet<Id>,
        opts: &PruneOptions,
        now: i64,
    ) -> Result<PrunePlan> {
        let instant = opts.keep_delete <= chrono::Duration::zero();
        let mut stats = PruneStats {
            dry_run: opts.dry_run,
            needed_blobs: needed.len() as u64,
            ..PruneStats::default()
        };
        let mut packs: BTreeMap<Id, PackState> = BTreeMap::new();
        let mut marked: BTreeMap<Id, (i64, u64, Vec<PackEntry>)> = BTreeMap::new();
        let mut listings = Vec::new();
        // Live packs missing from the store or known damaged, with their blobs: claimed
        // after the sound ones.
        let mut deferred: Vec<(Id, Vec<PackEntry>)> = Vec::new();

        // Live packs first: a blob in a live pack never needs a marked one.
        for file in index_files {
            let (id, file) = file?;
            stats.index_files_read += 1;
            let mut listing = IndexListing {
                id,
                live: Vec::with_capacity(file.packs.len()),
                marked: Vec::with_capacity(file.delete.len()),
            };
            for p in file.packs {
                listing.live.push(p.id);
                if packs.contains_key(&p.id) {
                    continue;
                }
                let mut state = PackState::new(p.size, Action::Keep);
                if !stored.contains_key(&p.id) || damaged.contains(&p.id) {
                    state.damaged = true;
                    packs.insert(p.id, state);
                    deferred.push((p.id, p.blobs));
                    continue;
                }
                claim_blobs(&mut state, &p.blobs, &mut needed);
                packs.insert(p.id, state);
            }
            for m in file.delete {
                listing.marked.push((m.id, m.marked));
                match marked.get_mut(&m.id) {
                    // The latest mark wins: deleting later is the safe side.
                    Some((at, _, blobs)) => {
                        *at = (*at).max(m.marked);
                        if blobs.is_empty() {
                            *blobs = m.blobs;
                        }
                    }
                    None => {
                        marked.insert(m.id, (m.marked, m.size, m.blobs));
                    }
                }
            }
            listings.push(listing);
        }

        // Damaged packs that are still stored give what no sound pack holds; a missing
        // pack gives nothing, but is named when it held a needed blob.
        let mut missing_needed = Vec::new();
        let mut lost_with_missing = 0;
        for (id, blobs) in &deferred {
            let Some(state) = packs.get_mut(id) else {
                continue;
            };
            if stored.contains_key(id) {
                claim_blobs(state, blobs, &mut needed);
            } else {
                let lost = blobs.iter().filter(|e| needed.claim(e.kind, &e.id)).count();
                if lost > 0 {
                    missing_needed.push(*id);
                    lost_with_missing += lost as u64;
                }
            }
        }
        drop(deferred);
        for (id, p) in packs.iter_mut() {
            if !stored.contains_key(id) {
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
        let grace = opts.keep_delete.num_nanoseconds().unwrap_or(i64::MAX);
        for (id, (at, size, blobs)) in marked {
            if packs.contains_key(&id) {
                continue;
            }
            let stored_size = stored.get(&id).copied();
            let mut state = PackState::new(stored_size.unwrap_or(size), Action::Wait);
            state.marked = Some(at);
            state.blobs = blobs.len();
            if stored_size.is_none() {
                state.action = Action::Drop;
            } else {
                state.used = blobs
                    .into_iter()
                    .filter(|e| needed.claim(e.kind, &e.id))
                    .collect();
                if !state.used.is_empty() {
                    state.action = Action::Recover;
                    stats.packs_recovered += 1;
                } else if instant || now.saturating_sub(at) >= grace {
                    state.action = Action::Delete;
                } else {
                    stats.packs_waiting += 1;
                    stats.bytes_waiting += state.size;
                }
            }
            packs.insert(id, state);
        }

        let lost = needed.unclaimed() + lost_with_missing;
        if lost > 0 {
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
            return Err(Error::Unsafe(format!(
                "{lost} blobs that snapshots need are in no pack{packs_note}; prune deletes nothing while the repository is damaged. See README, \"When something is damaged\": `cairn check` names what is affected, `cairn repair index` drops what is lost from the index, a backup stores again what the sources still have, and `cairn repair snapshots` mends the snapshots that still need lost data"
            )));
        }

        // Packs in the store that no index file lists, live or marked: the same test a
        // backup uses to adopt packs (`archiver::adopt`), so a pack marked here is never
        // adopted later.
        let mut unindexed: Vec<(Id, u64)> = stored
            .iter()
            .filter(|(id, _)| !packs.contains_key(id))
            .map(|(id, size)| (*id, *size))
            .collect();
        unindexed.sort();
        for (id, size) in &unindexed {
            stats.packs_unindexed += 1;
            stats.bytes_unindexed += size;
            packs.insert(*id, PackState::new(*size, Action::Unindexed));
        }

        choose_repacks(&mut packs, opts.max_unused, &mut stats);
        for p in packs.values() {
            let deleted = match p.action {
                Action::Delete => true,
                // No grace period: what would be marked goes at once, after the new index.
                Action::Mark | Action::Repack | Action::Unindexed => instant,
                _ => false,
            };
            if deleted {
                stats.packs_deleted += 1;
                stats.bytes_deleted += p.size;
            }
        }

        let rewrite = (0..listings.len())
            .filter(|&i| {
                let l = &listings[i];
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

        Ok(PrunePlan {
            packs,
            listings,
            rewrite,
            unindexed,
            instant,
            now,
            stats,
        })
    }

    /// What the plan decided for one pack.
    pub fn action(&self, pack: &Id) -> Option<Action> {
        self.packs.get(pack).map(|p| p.action)
    }

    /// The index files to replace, in the order they were read.
    pub fn rewritten(&self) -> impl Iterator<Item = &Id> {
        self.rewrite.iter().map(|&i| &self.listings[i].id)
    }

    /// A pack counted as deleted that the store keeps under object-lock retention: an
    /// expired marked one stays marked for a later prune; one dropped at once (no grace
    /// period) is found unindexed by the next. Either way it is not counted as deleted.
    pub(super) fn retained(&mut self, pack: &Id) {
        let counted_deleted = |action: Action| match action {
            Action::Delete => true,
            Action::Mark | Action::Repack | Action::Unindexed => self.instant,
            _ => false,
        };
        if let Some(p) = self.packs.get_mut(pack)
            && counted_deleted(p.action)
        {
            p.action = Action::Wait;
            self.stats.packs_deleted -= 1;
            self.stats.bytes_deleted -= p.size;
        }
    }

    /// What a live entry of a rewritten index file becomes. `emitted` holds the packs
    /// already decided, so that a pack listed in several files is written once.
    pub(super) fn emit_live(&self, pack: &Id, emitted: &mut HashSet<Id>) -> Emit {
        let Some(state) = self.packs.get(pack) else {
            return Emit::Nothing;
        };
        if !emitted.insert(*pack) {
            return Emit::Nothing;
        }
        match state.action {
            Action::Keep => Emit::Live,
            Action::Mark | Action::Repack if !self.instant => Emit::Marked(self.now),
            _ => Emit::Nothing,
        }
    }

    /// What a marked entry of a rewritten index file becomes.
    pub(super) fn emit_marked(&self, pack: &Id, emitted: &mut HashSet<Id>) -> Emit {
        let Some(state) = self.packs.get(pack) else {
            return Emit::Nothing;
        };
        // A pack that is live in some listing is emitted (or kept) as live there.
        let Some(at) = state.marked else {
            return Emit::Nothing;
        };
        if !emitted.insert(*pack) {
            return Emit::Nothing;
        }
        match state.action {
            Action::Wait => Emit::Marked(at),
            Action::Recover => Emit::Live,
            _ => Emit::Nothing,
        }
    }

    /// How many index files the executor writes: the entries that stay listed from the
    /// rewritten files, then `extra_entries` more holding `extra_blobs`, in files of up to
    /// `BLOBS_PER_INDEX_FILE` blobs. For `--dry-run`.
    pub(super) fn new_index_files(&self, extra_entries: u64, extra_blobs: usize) -> u64 {
        let mut emitted: HashSet<Id> = HashSet::new();
        let (mut entries, mut blobs) = (extra_entries, extra_blobs);
        let mut count = |id: &Id, emit: Emit| {
            if emit != Emit::Nothing {
                entries += 1;
                blobs += self.packs.get(id).map_or(0, |p| p.blobs);
            }
        };
        for &i in &self.rewrite {
            let listing = &self.listings[i];
            for id in &listing.live {
                count(id, self.emit_live(id, &mut emitted));
            }
            for (id, _) in &listing.marked {
                count(id, self.emit_marked(id, &mut emitted));
            }
        }
        if entries == 0 {
            0
        } else {
            (blobs.div_ceil(BLOBS_PER_INDEX_FILE) as u64).max(1)
        }
    }
}

/// Picks partly used packs to repack, most wasteful first, until the unused bytes left
/// are within `max_unused` of the used ones.
/// Counts a live pack's blobs into its state and claims the needed ones for it.
fn claim_blobs(state: &mut PackState, blobs: &[PackEntry], needed: &mut NeededBlobs) {
    state.blobs = blobs.len();
    for e in blobs {
        state.blob_bytes += u64::from(e.length);
        if needed.claim(e.kind, &e.id) {
            state.used_bytes += u64::from(e.length);
            state.used.push(*e);
        }
    }
    if state.used.len() == blobs.len() {
        // Wholly used: nothing to repack, so the entries are not needed later.
        state.used = Vec::new();
    }
}

fn choose_repacks(packs: &mut BTreeMap<Id, PackState>, max_unused: f64, stats: &mut PruneStats) {
    let limit = if max_unused >= 1.0 {
        u64::MAX
    } else {
        // unused / (used + unused) <= max  ⇔  unused <= used * max / (1 - max)
        (stats.used_bytes as f64 * max_unused / (1.0 - max_unused)) as u64
    };
    let mut candidates: Vec<(Id, u64, u64)> = packs
        .iter()
        .filter(|(_, p)| p.action == Action::Keep && !p.damaged && p.used_bytes < p.blob_bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{IndexedPack, MarkedPack};
    use crate::format::pack::{BlobType, Compression};

    const HOUR: i64 = 3_600_000_000_000;
    const NOW: i64 = 1000 * HOUR;
    /// Bytes of a made-up pack besides its blobs.
    const HEADER: u64 = 100;

    /// Ids of packs, blobs and index files, kept apart by their first byte.
    fn pack(n: u8) -> Id {
        made_up(1, n)
    }
    fn blob(n: u8) -> Id {
        made_up(2, n)
    }
    fn file_id(n: u8) -> Id {
        made_up(3, n)
    }
    fn made_up(tag: u8, n: u8) -> Id {
        let mut id = Id::default();
        id.0[0] = tag;
        id.0[1] = n;
        id.0[31] = 0x5a;
        id
    }

    /// Entries for data blobs given as (blob number, length).
    fn entries(blobs: &[(u8, u32)]) -> Vec<PackEntry> {
        let mut offset = 0;
        blobs
            .iter()
            .map(|&(n, length)| {
                let e = PackEntry {
                    kind: BlobType::Data,
                    id: blob(n),
                    offset,
                    length,
                    raw_length: length,
                    compression: Compression::None,
                };
                offset += length;
                e
            })
            .collect()
    }

    fn size_of(blobs: &[(u8, u32)]) -> u64 {
        blobs.iter().map(|b| u64::from(b.1)).sum::<u64>() + HEADER
    }

    fn live(n: u8, blobs: &[(u8, u32)]) -> IndexedPack {
        IndexedPack {
            id: pack(n),
            size: size_of(blobs),
            blobs: entries(blobs),
        }
    }

    fn marked(n: u8, hours_ago: i64, blobs: &[(u8, u32)]) -> MarkedPack {
        MarkedPack {
            id: pack(n),
            size: size_of(blobs),
            marked: NOW - hours_ago * HOUR,
            blobs: entries(blobs),
        }
    }

    fn file(n: u8, packs: Vec<IndexedPack>, delete: Vec<MarkedPack>) -> (Id, IndexFile) {
        let mut f = IndexFile::new();
        f.packs = packs;
        f.delete = delete;
        (file_id(n), f)
    }

    struct Case {
        name: &'static str,
        files: Vec<(Id, IndexFile)>,
        /// Packs in the store's listing; those no file lists are 500 bytes.
        stored: &'static [u8],
        /// Data blobs the snapshots need.
        needed: &'static [u8],
        /// Packs known to be damaged.
        damaged: HashSet<Id>,
        keep_delete_hours: i64,
        max_unused: f64,
        actions: &'static [(u8, Action)],
        rewritten: &'static [u8],
        /// Packs counted as deleted by this run.
        deleted: u64,
    }

    impl Case {
        fn new(name: &'static str, files: Vec<(Id, IndexFile)>) -> Case {
            Case {
                name,
                files,
                stored: &[],
                needed: &[],
                damaged: HashSet::new(),
                keep_delete_hours: 23,
                max_unused: 0.05,
                actions: &[],
                rewritten: &[],
                deleted: 0,
            }
        }

        fn plan(&self) -> Result<PrunePlan> {
            let mut sizes = HashMap::new();
            for (_, f) in &self.files {
                for p in &f.packs {
                    sizes.insert(p.id, p.size);
                }
                for m in &f.delete {
                    sizes.insert(m.id, m.size);
                }
            }
            let stored = self
                .stored
                .iter()
                .map(|&n| (pack(n), sizes.get(&pack(n)).copied().unwrap_or(500)))
                .collect();
            let mut needed = NeededBlobs::default();
            for &n in self.needed {
                needed.insert_data(&blob(n));
            }
            needed.freeze();
            let opts = PruneOptions {
                max_unused: self.max_unused,
                keep_delete: chrono::Duration::hours(self.keep_delete_hours),
                dry_run: false,
            };
            let files = self.files.iter().map(|(id, f)| {
                let copy = IndexFile {
                    v: f.v,
                    packs: f.packs.clone(),
                    delete: f.delete.clone(),
                };
                Ok((*id, copy))
            });
            PrunePlan::build(needed, files, &stored, &self.damaged, &opts, NOW)
        }

        fn check(&self) {
            let plan = self
                .plan()
                .unwrap_or_else(|e| panic!("{}: no plan: {e}", self.name));
            for &(n, want) in self.actions {
                assert_eq!(plan.action(&pack(n)), Some(want), "{}: pack {n}", self.name);
            }
            let rewritten: Vec<Id> = plan.rewritten().copied().collect();
            let want: Vec<Id> = self.rewritten.iter().map(|&n| file_id(n)).collect();
            assert_eq!(rewritten, want, "{}: rewritten index files", self.name);
            assert_eq!(
                plan.stats.packs_deleted, self.deleted,
                "{}: deleted",
                self.name
            );
            assert_eq!(
                plan.stats.index_files_read,
                self.files.len() as u64,
                "{}",
                self.name
            );
        }
    }

    #[test]
    fn decisions() {
        use Action::*;
        let cases = vec![
            Case {
                stored: &[1],
                needed: &[1],
                actions: &[(1, Keep)],
                ..Case::new(
                    "a wholly needed pack stays and its file is left as it is",
                    vec![file(1, vec![live(1, &[(1, 1000)])], vec![])],
                )
            },
            Case {
                stored: &[1, 2],
                needed: &[1, 2],
                actions: &[(1, Keep), (2, Mark)],
                rewritten: &[1],
                ..Case::new(
                    "a blob shared by two packs is claimed by the first; the second is marked",
                    vec![file(
                        1,
                        vec![live(1, &[(1, 1000), (2, 1000)]), live(2, &[(1, 1000)])],
                        vec![],
                    )],
                )
            },
            Case {
                stored: &[1, 2],
                needed: &[1],
                actions: &[(1, Keep), (2, Mark)],
                rewritten: &[2],
                ..Case::new(
                    "an unneeded pack is marked, not deleted, during the grace period",
                    vec![
                        file(1, vec![live(1, &[(1, 1000)])], vec![]),
                        file(2, vec![live(2, &[(2, 1000)])], vec![]),
                    ],
                )
            },
            Case {
                stored: &[1, 2],
                needed: &[1],
                keep_delete_hours: 0,
                actions: &[(1, Keep), (2, Mark)],
                rewritten: &[2],
                deleted: 1,
                ..Case::new(
                    "without a grace period an unneeded pack is deleted in the same run",
                    vec![
                        file(1, vec![live(1, &[(1, 1000)])], vec![]),
                        file(2, vec![live(2, &[(2, 1000)])], vec![]),
                    ],
                )
            },
            Case {
                stored: &[1, 2, 3],
                needed: &[3],
                actions: &[(1, Wait), (2, Delete), (3, Recover)],
                rewritten: &[1],
                deleted: 1,
                ..Case::new(
                    "marked packs: a young mark waits, an old one goes, a needed one comes back",
                    vec![file(
                        1,
                        vec![],
                        vec![
                            marked(1, 1, &[(1, 1000)]),
                            marked(2, 30, &[(2, 1000)]),
                            marked(3, 30, &[(3, 1000)]),
                        ],
                    )],
                )
            },
            Case {
                stored: &[1],
                actions: &[(1, Wait)],
                ..Case::new(
                    "a file holding only waiting marks is left as it is",
                    vec![file(1, vec![], vec![marked(1, 1, &[(1, 1000)])])],
                )
            },
            Case {
                stored: &[1],
                actions: &[(1, Wait)],
                rewritten: &[1],
                ..Case::new(
                    "of two marks of one pack the later counts, and the earlier is rewritten",
                    vec![
                        file(1, vec![], vec![marked(1, 30, &[(1, 1000)])]),
                        file(2, vec![], vec![marked(1, 1, &[(1, 1000)])]),
                    ],
                )
            },
            Case {
                stored: &[1],
                needed: &[1],
                actions: &[(1, Keep)],
                rewritten: &[2],
                ..Case::new(
                    "a live listing beats a stale mark of the same pack, which goes",
                    vec![
                        file(1, vec![live(1, &[(1, 1000)])], vec![]),
                        file(2, vec![], vec![marked(1, 30, &[(1, 1000)])]),
                    ],
                )
            },
            Case {
                stored: &[1],
                needed: &[1],
                actions: &[(1, Repack)],
                rewritten: &[1],
                ..Case::new(
                    "a half-used pack is repacked when unused space is above the limit",
                    vec![file(1, vec![live(1, &[(1, 1000), (2, 1000)])], vec![])],
                )
            },
            Case {
                stored: &[1],
                needed: &[1],
                max_unused: 0.6,
                actions: &[(1, Keep)],
                ..Case::new(
                    "a half-used pack stays when unused space is within the limit",
                    vec![file(1, vec![live(1, &[(1, 1000), (2, 1000)])], vec![])],
                )
            },
            Case {
                stored: &[1, 2],
                needed: &[1, 3],
                max_unused: 0.15,
                // Used 10,000 bytes, unused 2,000 (17%): repacking the 50% pack leaves
                // 1,000 unused (9%), within 15%, so the 10% pack stays.
                actions: &[(1, Repack), (2, Keep)],
                rewritten: &[1],
                ..Case::new(
                    "the most wasteful pack is repacked first, and only as many as needed",
                    vec![file(
                        1,
                        vec![
                            live(1, &[(1, 1000), (2, 1000)]),
                            live(2, &[(3, 9000), (4, 1000)]),
                        ],
                        vec![],
                    )],
                )
            },
            Case {
                stored: &[1, 9],
                needed: &[1],
                actions: &[(1, Keep), (9, Unindexed)],
                ..Case::new(
                    "a pack in the store that no index lists is marked as unindexed",
                    vec![file(1, vec![live(1, &[(1, 1000)])], vec![])],
                )
            },
            Case {
                stored: &[9],
                keep_delete_hours: 0,
                actions: &[(9, Unindexed)],
                deleted: 1,
                ..Case::new(
                    "without a grace period an unindexed pack is deleted",
                    vec![],
                )
            },
            Case {
                stored: &[2],
                needed: &[2],
                actions: &[(1, Drop), (2, Keep)],
                rewritten: &[1],
                ..Case::new(
                    "an indexed pack gone from the store and not needed is dropped",
                    vec![file(
                        1,
                        vec![live(1, &[(1, 1000)]), live(2, &[(2, 1000)])],
                        vec![],
                    )],
                )
            },
            Case {
                stored: &[],
                actions: &[(1, Drop)],
                rewritten: &[1],
                ..Case::new(
                    "a marked pack gone from the store is dropped, not deleted",
                    vec![file(1, vec![], vec![marked(1, 30, &[(1, 1000)])])],
                )
            },
        ];
        for case in &cases {
            case.check();
        }
    }

    #[test]
    fn figures_add_up() {
        let case = Case {
            stored: &[1, 2, 9],
            needed: &[1],
            max_unused: 1.0,
            ..Case::new(
                "figures",
                vec![file(
                    1,
                    vec![live(1, &[(1, 1000), (2, 500)]), live(2, &[(3, 700)])],
                    vec![],
                )],
            )
        };
        let s = case.plan().unwrap().stats;
        assert_eq!((s.packs, s.needed_blobs), (2, 1));
        assert_eq!(s.pack_bytes, s.used_bytes + s.unused_bytes + s.header_bytes);
        assert_eq!((s.used_bytes, s.unused_bytes), (1000, 1200));
        assert_eq!((s.packs_marked, s.bytes_marked), (1, 800));
        assert_eq!((s.packs_unindexed, s.bytes_unindexed), (1, 500));
        assert_eq!(s.packs_repacked, 0, "max_unused 1.0 repacks nothing");
    }

    #[test]
    fn damage_stops_the_plan() {
        let missing = Case {
            needed: &[1],
            ..Case::new(
                "a needed pack missing",
                vec![file(1, vec![live(1, &[(1, 1000)])], vec![])],
            )
        };
        let e = missing
            .plan()
            .err()
            .expect("a plan over a missing needed pack");
        assert!(e.to_string().contains("missing from the store"), "{e}");
        let lost = Case {
            stored: &[1],
            needed: &[1, 5],
            ..Case::new(
                "a needed blob in no pack",
                vec![file(1, vec![live(1, &[(1, 1000)])], vec![])],
            )
        };
        let e = lost.plan().err().expect("a plan over a lost blob");
        assert!(e.to_string().starts_with("1 blobs"), "{e}");
    }

    #[test]
    fn a_lost_or_damaged_pack_yields_to_a_sound_copy() {
        // Blob 1 was in pack 1, now missing; a backup stored it again in pack 2.
        let healed = Case {
            stored: &[2],
            needed: &[1],
            actions: &[(1, Action::Drop), (2, Action::Keep)],
            rewritten: &[1],
            ..Case::new(
                "missing, stored again",
                vec![
                    file(1, vec![live(1, &[(1, 1000)])], vec![]),
                    file(2, vec![live(2, &[(1, 1000)])], vec![]),
                ],
            )
        };
        healed.check();
        // Pack 1 is damaged but stored: its blob has a sound copy in pack 2, so it is
        // marked; pack 3 is damaged and alone in holding blob 3: kept, never repacked.
        let damaged = Case {
            stored: &[1, 2, 3],
            needed: &[1, 3],
            damaged: HashSet::from([pack(1), pack(3)]),
            max_unused: 0.0,
            actions: &[(1, Action::Mark), (2, Action::Keep), (3, Action::Keep)],
            rewritten: &[1],
            ..Case::new(
                "damaged, stored again",
                vec![
                    file(
                        1,
                        vec![live(1, &[(1, 1000)]), live(3, &[(3, 10), (4, 990)])],
                        vec![],
                    ),
                    file(2, vec![live(2, &[(1, 1000)])], vec![]),
                ],
            )
        };
        damaged.check();
    }

    #[test]
    fn a_pack_listed_twice_is_written_once() {
        let case = Case {
            stored: &[1, 2],
            needed: &[1],
            ..Case::new(
                "twice",
                vec![
                    file(1, vec![live(1, &[(1, 1000)]), live(2, &[(2, 10)])], vec![]),
                    file(2, vec![live(1, &[(1, 1000)])], vec![]),
                ],
            )
        };
        let plan = case.plan().unwrap();
        assert_eq!(
            plan.rewritten().count(),
            1,
            "only the file with the marked pack"
        );
        let mut emitted = HashSet::new();
        assert_eq!(plan.emit_live(&pack(1), &mut emitted), Emit::Live);
        assert_eq!(plan.emit_live(&pack(1), &mut emitted), Emit::Nothing);
        assert_eq!(plan.emit_live(&pack(2), &mut emitted), Emit::Marked(NOW));
        assert_eq!(plan.new_index_files(0, 0), 1);
    }

    #[test]
    fn a_retained_pack_stays_marked_and_uncounted() {
        let case = Case {
            stored: &[1],
            ..Case::new(
                "retained",
                vec![file(1, vec![], vec![marked(1, 30, &[(1, 1000)])])],
            )
        };
        let mut plan = case.plan().unwrap();
        assert_eq!(plan.action(&pack(1)), Some(Action::Delete));
        assert_eq!(plan.stats.packs_deleted, 1);
        plan.retained(&pack(1));
        assert_eq!(plan.action(&pack(1)), Some(Action::Wait));
        assert_eq!((plan.stats.packs_deleted, plan.stats.bytes_deleted), (0, 0));
        let mut emitted = HashSet::new();
        assert_eq!(
            plan.emit_marked(&pack(1), &mut emitted),
            Emit::Marked(NOW - 30 * HOUR),
            "written again with its old mark time"
        );
    }
}
