//! `repair index`: the index rebuilt from what the packs hold.
//!
//! Every stored pack is looked at: one an index file lists live, with the size the listing
//! gives, keeps its entries unread (as restic's `repair index` does); any other (no index
//! lists it, another size, or known damaged in the local record) has its header read
//! with one ranged request. With `--read-all-packs`, and for every pack known damaged,
//! the whole pack is read, its bytes hashed against its name and every blob opened.
//!
//! - A sound pack is listed live with what its header says.
//! - A pack that is damaged (a blob that does not open, bytes that do not match its
//!   name, a header that does not fit the pack) has the blobs that still open copied, as
//!   they are, into new packs, and is then listed as marked for deletion with no blobs:
//!   never deduplicated against, never adopted by a backup, deleted by a prune after its
//!   grace period (in which it can still be copied aside).
//! - A pack whose header does not open at all is marked the same way; nothing in it can
//!   be found.
//! - A pack an index file lists but the store lacks is left out: its blobs are lost, and
//!   the next backup stores them again where the sources still have them.
//! - Marks of packs still stored are kept with their times; packs in an archive storage
//!   class, which cannot be read, keep what the index said.
//!
//! Then new index files are written, and only after them are the old ones (damaged ones
//! included) removed: interrupted anywhere, the repository reads as before or as after,
//! and running the repair again finishes it. When nothing is to change, nothing is
//! written.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::blob::open_blob;
use crate::format::id::Id;
use crate::format::index::{BLOBS_PER_INDEX_FILE, IndexFile, IndexedPack, MarkedPack};
use crate::format::pack::{BlobLocation, BlobType, PackEntry, check_layout, decode_header};
use crate::ops::archiver::adopt::examine;
use crate::progress::Progress;
use crate::repo::cache::MISSING_FROM_STORE;
use crate::repo::writer::{self, FlushPolicy, IndexWriter, PackFiller};
use crate::repo::{Repository, pool};
use crate::store::counting::RequestStats;
use crate::store::{Kind, Listed, ObjectName};

#[derive(Debug, Clone, Copy, Default)]
pub struct IndexRepairOptions {
    /// Read every pack whole, not only those known damaged.
    pub read_all_packs: bool,
    pub dry_run: bool,
}

/// A damaged object met, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub object: String,
    pub error: String,
    /// What the repair does about it.
    pub action: String,
}

#[derive(Debug, Default, Serialize)]
pub struct IndexRepairReport {
    pub dry_run: bool,
    pub index_files_read: u64,
    pub index_files_damaged: u64,
    /// Packs in the store.
    pub packs: u64,
    pub packs_header_read: u64,
    pub packs_read_whole: u64,
    /// Packs the new index lists live.
    pub packs_indexed: u64,
    /// Of those, packs no index file listed before.
    pub packs_added: u64,
    /// Listed packs the store lacks, left out.
    pub packs_missing: u64,
    /// Damaged packs, marked for deletion after their sound blobs were salvaged.
    pub packs_damaged: u64,
    pub blobs_salvaged: u64,
    /// Blobs of missing or damaged packs that no sound pack holds: lost until a backup
    /// stores them again.
    pub blobs_lost: u64,
    pub new_packs: u64,
    pub new_pack_bytes: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Whether the index changes (or, in a dry run, would).
    pub changed: bool,
    pub findings: Vec<Finding>,
    pub requests: RequestStats,
}

/// What the index files say.
#[derive(Default)]
struct Listings {
    /// Each live pack with its first live listing.
    live: BTreeMap<Id, IndexedPack>,
    /// Marked packs listed live nowhere, with their latest mark.
    marked: BTreeMap<Id, MarkedPack>,
    files: Vec<Id>,
    damaged_files: u64,
}

/// How a stored pack is looked at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Look {
    /// Its index entries are taken as they are.
    Trust,
    Header,
    Whole,
}

/// What looking at one pack found.
enum Verdict {
    /// Sound: listed live with these entries.
    Live(IndexedPack),
    /// Damaged: these blobs open (with the pack's bytes, to copy them out); the rest do not.
    Damaged {
        why: String,
        good: Vec<PackEntry>,
        bytes: Vec<u8>,
        bad: Vec<PackEntry>,
    },
    /// Nothing in it can be found.
    Unreadable(String),
    /// In an archive storage class: not readable now.
    Archived,
}

pub fn repair_index(
    repo: &Repository,
    opts: IndexRepairOptions,
    progress: &dyn Progress,
) -> Result<IndexRepairReport> {
    let mut report = IndexRepairReport {
        dry_run: opts.dry_run,
        ..IndexRepairReport::default()
    };
    repo.repairing_index();
    progress.message("reading the index");
    let listings = read_index_files(repo, &mut report)?;
    let stored: Vec<(Id, Listed)> = repo.backend().list_ids(Kind::Pack)?;
    report.packs = stored.len() as u64;
    let damaged = repo.known_damaged_packs();

    // What to read of each stored pack.
    let jobs: Vec<(Id, Listed, Look)> = stored
        .iter()
        .filter(|(id, _)| listings.live.contains_key(id) || !listings.marked.contains_key(id))
        .map(|(id, listed)| {
            let look = match listings.live.get(id) {
                _ if opts.read_all_packs || damaged.contains_key(id) => Look::Whole,
                Some(p) if p.size == listed.size => Look::Trust,
                _ => Look::Header,
            };
            (*id, listed.clone(), look)
        })
        .collect();
    progress.start("packs", jobs.len() as u64);
    let workers = crate::threads().max(repo.backend().write_concurrency());
    let verdicts = pool::map(&jobs, workers, |(id, listed, look)| {
        if crate::interrupt::requested() {
            return Err(Error::Stopped("reading packs"));
        }
        let v = look_at(repo, id, listed, *look, listings.live.get(id));
        progress.advance(1);
        v
    });

    // Decide, and salvage.
    let stored_ids: HashMap<Id, u64> = stored.iter().map(|(id, l)| (*id, l.size)).collect();
    let now = crate::format::now_nanos();
    let mut live: Vec<IndexedPack> = Vec::new();
    let mut marked: Vec<MarkedPack> = listings
        .marked
        .values()
        .filter(|m| stored_ids.contains_key(&m.id))
        .cloned()
        .collect();
    let mut salvager = Salvager::new(repo, opts.dry_run);
    // Blobs of missing and damaged packs that do not open: lost unless a sound pack
    // holds them too (a backup may have stored them again).
    let mut gone: HashSet<(BlobType, Id)> = HashSet::new();
    progress.message("salvaging");
    crate::interrupt::stop_if_requested("repair index")?;
    for ((id, listed, look), verdict) in jobs.iter().zip(verdicts) {
        crate::interrupt::stop_if_requested("repair index")?;
        let object = ObjectName::new(Kind::Pack, id).path();
        if *look == Look::Header {
            report.packs_header_read += 1;
        }
        if *look == Look::Whole {
            report.packs_read_whole += 1;
        }
        match verdict? {
            Verdict::Live(pack) => {
                if !listings.live.contains_key(id) {
                    report.packs_added += 1;
                    report.changed = true;
                } else if listings.live.get(id).is_some_and(|known| *known != pack) {
                    report.changed = true;
                }
                live.push(pack);
            }
            Verdict::Archived => {
                if let Some(known) = listings.live.get(id) {
                    live.push(known.clone());
                }
            }
            Verdict::Damaged {
                why,
                good,
                bytes,
                bad,
            } => {
                report.changed = true;
                report.packs_damaged += 1;
                report.blobs_salvaged += good.len() as u64;
                report.findings.push(Finding {
                    object,
                    error: why,
                    action: format!(
                        "{} blobs salvaged into new packs, {} do not open; marked for deletion",
                        good.len(),
                        bad.len()
                    ),
                });
                gone.extend(bad.iter().map(|e| (e.kind, e.id)));
                salvager.copy(id, &good, &bytes)?;
                marked.push(damaged_mark(id, listed.size, now));
            }
            Verdict::Unreadable(why) => {
                report.changed = true;
                report.packs_damaged += 1;
                let known = listings.live.get(id).map(|p| &p.blobs);
                gone.extend(known.into_iter().flatten().map(|e| (e.kind, e.id)));
                report.findings.push(Finding {
                    object,
                    error: why,
                    action: "nothing in it can be read; marked for deletion".into(),
                });
                marked.push(damaged_mark(id, listed.size, now));
            }
        }
    }
    for (id, pack) in &listings.live {
        if !stored_ids.contains_key(id) {
            report.changed = true;
            report.packs_missing += 1;
            gone.extend(pack.blobs.iter().map(|e| (e.kind, e.id)));
            report.findings.push(Finding {
                object: ObjectName::new(Kind::Pack, id).path(),
                error: format!("is {MISSING_FROM_STORE}"),
                action: "left out of the index".into(),
            });
        }
    }
    if listings
        .marked
        .keys()
        .any(|id| !stored_ids.contains_key(id))
    {
        // A mark of a pack a prune already deleted: the new index leaves it out.
        report.changed = true;
    }
    report.changed |= listings.damaged_files > 0;
    let new_packs = salvager.finish()?;
    report.new_packs = new_packs.len() as u64;
    report.new_pack_bytes = new_packs.iter().map(|p| p.size).sum();
    live.extend(new_packs);
    report.packs_indexed = live.len() as u64;
    for p in &live {
        for e in &p.blobs {
            gone.remove(&(e.kind, e.id));
        }
    }
    report.blobs_lost = gone.len() as u64;
    if opts.dry_run && report.changed {
        let blobs: usize = live.iter().map(|p| p.blobs.len()).sum();
        report.index_files_written = blobs.div_ceil(BLOBS_PER_INDEX_FILE).max(1) as u64;
        report.index_files_removed = listings.files.len() as u64;
    }

    if report.changed && !opts.dry_run {
        progress.message("writing the index");
        write_index(repo, live, marked, &listings.files, &mut report)?;
        // Packs left out of the index are forgotten; damaged ones stay recorded while
        // they are listed (marked), so nothing deduplicates against them.
        let missing: Vec<Id> = listings
            .live
            .keys()
            .filter(|id| !stored_ids.contains_key(id))
            .copied()
            .collect();
        repo.index()?.clear_damaged(missing)?;
    }
    report.requests = repo.request_stats();
    Ok(report)
}

/// Reads every index file; damaged ones are counted and named, one of a newer format
/// stops the repair.
fn read_index_files(repo: &Repository, report: &mut IndexRepairReport) -> Result<Listings> {
    let mut l = Listings::default();
    for (id, _) in repo.backend().list_ids(Kind::Index)? {
        let file = match repo.load_meta::<IndexFile>(&id) {
            Ok(f) => f,
            Err(e @ Error::UnknownVersion { .. }) => return Err(e),
            Err(Error::ObjectNotFound(_)) => continue,
            Err(e @ Error::Corrupt(..)) => {
                l.damaged_files += 1;
                l.files.push(id);
                report.findings.push(Finding {
                    object: ObjectName::new(Kind::Index, &id).path(),
                    error: e.detail(),
                    action: "replaced by the rebuilt index".into(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        l.files.push(id);
        for p in file.packs {
            l.marked.remove(&p.id);
            l.live.entry(p.id).or_insert(p);
        }
        for m in file.delete {
            if l.live.contains_key(&m.id) {
                continue;
            }
            match l.marked.get_mut(&m.id) {
                // The latest mark wins, as in prune: deleting later is the safe side.
                Some(known) if known.marked >= m.marked => {}
                _ => {
                    l.marked.insert(m.id, m);
                }
            }
        }
    }
    report.index_files_read = l.files.len() as u64;
    report.index_files_damaged = l.damaged_files;
    Ok(l)
}

fn damaged_mark(id: &Id, size: u64, now: i64) -> MarkedPack {
    MarkedPack {
        id: *id,
        size,
        marked: now,
        blobs: Vec::new(),
    }
}

fn look_at(
    repo: &Repository,
    id: &Id,
    listed: &Listed,
    look: Look,
    known: Option<&IndexedPack>,
) -> Result<Verdict> {
    match (look, known) {
        (Look::Trust, Some(known)) => return Ok(Verdict::Live(known.clone())),
        _ if listed.archived.is_some() => return Ok(Verdict::Archived),
        (Look::Header, _) => match examine(repo, id, listed.size) {
            Ok(e) => return Ok(Verdict::Live(e.pack)),
            Err(Error::Corrupt(..)) => {}
            Err(e) => return Err(e),
        },
        _ => {}
    }
    read_whole(repo, id, listed.size)
}

/// Reads a pack whole and opens every blob.
fn read_whole(repo: &Repository, id: &Id, size: u64) -> Result<Verdict> {
    let name = ObjectName::new(Kind::Pack, id);
    let bytes = match repo.backend().read(&name) {
        Ok(b) => b,
        Err(Error::Archived { .. }) => return Ok(Verdict::Archived),
        Err(e) => return Err(e),
    };
    let path = name.path();
    let entries = match decode_header(repo.key(), &bytes, bytes.len() as u64, &path) {
        Ok(e) => e,
        Err(e @ Error::Corrupt(..)) => {
            return Ok(Verdict::Unreadable(format!("header: {}", e.detail())));
        }
        Err(e) => return Err(e),
    };
    let mut problems = Vec::new();
    if bytes.len() as u64 != size {
        problems.push(format!("is {} bytes, listed as {size}", bytes.len()));
    }
    if Id::of_stored(&bytes) != *id {
        problems.push("its bytes do not match its name".to_string());
    }
    if let Err(e) = check_layout(&entries, &bytes, bytes.len() as u64, &path) {
        problems.push(e.detail());
    }
    let mut good = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for e in &entries {
        let loc = BlobLocation {
            pack: *id,
            entry: *e,
        };
        let sealed =
            bytes.get(e.offset as usize..(e.offset as usize).saturating_add(e.length as usize));
        match sealed.map(|s| open_blob(repo.key(), &loc, s)) {
            Some(Ok(_)) => good.push(*e),
            Some(Err(err)) => {
                bad.push(*e);
                if problems.len() < 3 {
                    problems.push(format!("blob {}: {}", e.id.short(), err.detail()));
                }
            }
            None => {
                bad.push(*e);
                problems.push(format!("blob {} lies outside the pack", e.id.short()));
            }
        }
    }
    if problems.is_empty() {
        return Ok(Verdict::Live(IndexedPack {
            id: *id,
            size,
            blobs: entries,
        }));
    }
    Ok(Verdict::Damaged {
        why: problems.join("; "),
        good,
        bytes,
        bad,
    })
}

/// Copies sound blobs of damaged packs, as they are, into new packs of their type.
struct Salvager<'a> {
    repo: &'a Repository,
    dry_run: bool,
    trees: PackFiller,
    data: PackFiller,
    written: Vec<IndexedPack>,
}

impl<'a> Salvager<'a> {
    fn new(repo: &'a Repository, dry_run: bool) -> Salvager<'a> {
        Salvager {
            repo,
            dry_run,
            trees: PackFiller::for_repo(repo, BlobType::Tree),
            data: PackFiller::for_repo(repo, BlobType::Data),
            written: Vec::new(),
        }
    }

    fn copy(&mut self, _pack: &Id, good: &[PackEntry], bytes: &[u8]) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        for e in good {
            let sealed = bytes
                .get(e.offset as usize..e.offset as usize + e.length as usize)
                .ok_or_else(|| Error::Internal("a salvaged blob lies outside its pack".into()))?;
            let filler = match e.kind {
                BlobType::Tree => &mut self.trees,
                BlobType::Data => &mut self.data,
            };
            if let Some(full) = filler.add(e.id, e.raw_length, e.compression, sealed)? {
                let (entry, _) = writer::write_pack(self.repo, full.finish(self.repo.key())?)?;
                self.written.push(entry);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<IndexedPack>> {
        for filler in [&mut self.trees, &mut self.data] {
            if let Some(last) = filler.take() {
                let (entry, _) = writer::write_pack(self.repo, last.finish(self.repo.key())?)?;
                self.written.push(entry);
            }
        }
        Ok(self.written)
    }
}

/// Writes the new index files, then removes the old ones.
fn write_index(
    repo: &Repository,
    live: Vec<IndexedPack>,
    marked: Vec<MarkedPack>,
    old: &[Id],
    report: &mut IndexRepairReport,
) -> Result<()> {
    let writer = IndexWriter::new(repo, FlushPolicy::by_blobs());
    for p in live {
        writer.live(p)?;
    }
    for m in marked {
        writer.marked(m)?;
    }
    let written = writer.finish()?;
    report.index_files_written = written.len() as u64;
    for id in old {
        if written.contains(id) {
            continue;
        }
        match repo.backend().remove(&ObjectName::new(Kind::Index, id)) {
            Ok(()) => report.index_files_removed += 1,
            Err(Error::Retained { object, until }) => report.findings.push(Finding {
                object,
                error: format!("under object-lock retention until {until}"),
                action: "left in place; its entries are listed again by the new index".into(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
