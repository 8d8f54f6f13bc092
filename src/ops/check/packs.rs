//! Checking packs: each planned pack against the listing and its index entries, its
//! header read, or with `--read-data` every byte hashed and every blob opened. Packs are
//! checked on the worker pool; the outcome gathers what was read and what is damaged.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::{BlobLocation, BlobType, PackEntry, decode_header};
use crate::progress::Progress;
use crate::repo::cache::MISSING_FROM_STORE;
use crate::repo::{Repository, pool};
use crate::store::{Kind, ObjectName};

use super::Problem;
use super::plan::{Depth, PackJob};

/// Checks `jobs` on the worker pool.
pub(super) fn check_packs(
    repo: &Repository,
    jobs: &[PackJob],
    progress: &dyn Progress,
) -> Result<PackOutcome> {
    progress.start("packs", jobs.len() as u64);
    let outcome = Mutex::new(PackOutcome::default());
    let workers = crate::threads().max(repo.backend().write_concurrency());
    pool::for_each(jobs, workers, |job| {
        let result = check_pack(repo, job);
        if let Ok(mut o) = outcome.lock() {
            o.add(job.id, result);
        }
        progress.advance(1);
        ControlFlow::Continue(())
    });
    outcome
        .into_inner()
        .map_err(|_| Error::Internal("a check worker panicked".into()))
}

#[derive(Default)]
pub(super) struct PackOutcome {
    /// Archived packs checked by their listed size only (no --read-data).
    pub(super) archived_size_only: u64,
    /// Archived packs --read-data could not read (not retrieved): unchecked, not damaged.
    pub(super) archived_unreadable: u64,
    pub(super) packs_read: u64,
    pub(super) bytes_read: u64,
    pub(super) blobs_checked: u64,
    pub(super) problems: Vec<Problem>,
    /// Packs that cannot be used at all (missing, unreadable header).
    pub(super) bad_packs: HashSet<Id>,
    /// Single blobs that failed to open.
    pub(super) bad_blobs: HashSet<(Id, BlobType, Id)>,
    /// Every pack with a problem, and its first, for the local record of damaged packs.
    pub(super) damaged: Vec<(Id, String)>,
    /// Packs found sound, and whether they were read whole (else their header only).
    pub(super) sound: Vec<(Id, bool)>,
}

/// What was left unchecked of an archived pack.
enum ArchivedPack {
    /// Its size was checked from the listing; it was not to be read.
    SizeOnly,
    /// It was to be read and is not retrieved: unchecked, not damaged.
    NotRetrieved,
}

struct PackResult {
    archived: Option<ArchivedPack>,
    read: Option<u64>,
    blobs_checked: u64,
    /// (problem, whole pack unusable)
    problems: Vec<(String, bool)>,
    bad_blobs: Vec<(BlobType, Id)>,
    /// Not in the store's listing.
    missing: bool,
}

impl PackOutcome {
    fn add(&mut self, id: Id, r: PackResult) {
        match r.archived {
            Some(ArchivedPack::NotRetrieved) => self.archived_unreadable += 1,
            Some(ArchivedPack::SizeOnly) => self.archived_size_only += 1,
            None => {}
        }
        if let Some(bytes) = r.read {
            self.packs_read += 1;
            self.bytes_read += bytes;
        }
        self.blobs_checked += r.blobs_checked;
        match r.problems.first() {
            Some(_) if r.missing => self.damaged.push((id, MISSING_FROM_STORE.to_string())),
            Some((first, _)) => self.damaged.push((id, first.clone())),
            None if r.archived.is_none() => self.sound.push((id, r.read.is_some())),
            None => {}
        }
        let object = ObjectName::new(Kind::Pack, &id).path();
        for (error, whole) in r.problems {
            if whole {
                self.bad_packs.insert(id);
            }
            self.problems.push(Problem {
                object: object.clone(),
                error,
            });
        }
        self.bad_blobs
            .extend(r.bad_blobs.into_iter().map(|(kind, blob)| (id, kind, blob)));
    }
}

fn same_entries(a: &[PackEntry], b: &[PackEntry]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by_key(|e| (e.offset, e.kind, e.id));
    b.sort_by_key(|e| (e.offset, e.kind, e.id));
    a == b
}

fn check_pack(repo: &Repository, job: &PackJob) -> PackResult {
    let id = &job.id;
    let read_data = job.depth == Depth::Contents;
    let mut r = PackResult {
        archived: None,
        read: None,
        blobs_checked: 0,
        problems: Vec::new(),
        bad_blobs: Vec::new(),
        missing: false,
    };
    let name = ObjectName::new(Kind::Pack, id);
    let Some(size) = job.stored_size else {
        r.problems.push((format!("is {MISSING_FROM_STORE}"), true));
        r.missing = true;
        return r;
    };
    if size != job.size {
        r.problems.push((
            format!("is {size} bytes, the index says {}", job.size),
            true,
        ));
        return r;
    }
    if job.archived && !read_data {
        r.archived = Some(ArchivedPack::SizeOnly);
        return r;
    }
    let header = if read_data {
        let bytes = match repo.backend().read(&name) {
            Ok(b) => b,
            Err(Error::Archived { .. }) => {
                r.archived = Some(ArchivedPack::NotRetrieved);
                return r;
            }
            Err(e) => {
                r.problems
                    .push((format!("cannot be read: {}", e.detail()), true));
                return r;
            }
        };
        r.read = Some(bytes.len() as u64);
        if Id::of_stored(&bytes) != *id {
            r.problems
                .push(("its bytes do not match its name".to_string(), false));
        }
        let header = match decode_header(repo.key(), &bytes, size, &name.path()) {
            Ok(h) => h,
            Err(e) => {
                r.problems.push((format!("header: {}", e.detail()), true));
                return r;
            }
        };
        for e in &header {
            let loc = BlobLocation {
                pack: *id,
                entry: *e,
            };
            let sealed = bytes.get(e.offset as usize..(e.offset + e.length) as usize);
            let opened = sealed
                .ok_or_else(|| Error::corrupt(name.path(), "blob outside the pack"))
                .and_then(|s| crate::format::blob::open_blob(repo.key(), &loc, s));
            r.blobs_checked += 1;
            if let Err(err) = opened {
                let kind = if e.kind == BlobType::Tree {
                    "tree"
                } else {
                    "data"
                };
                r.problems
                    .push((format!("{kind} blob {}: {}", e.id, err.detail()), false));
                r.bad_blobs.push((e.kind, e.id));
            }
        }
        header
    } else {
        match repo.read_pack_header(id, size) {
            Ok((h, _)) => h,
            Err(e) => {
                r.problems.push((format!("header: {}", e.detail()), true));
                return r;
            }
        }
    };
    if !job.entries.is_empty() && !same_entries(&header, &job.entries) {
        r.problems.push((
            "its header does not list the blobs the index says it holds".to_string(),
            true,
        ));
    }
    r
}
