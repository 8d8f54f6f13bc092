//! Writing file contents pack by pack.
//!
//! Reading blob by blob costs one request per blob: on S3, one GET per small file. Instead,
//! a batch of files is planned first: every blob they need is looked up and grouped by pack.
//! Workers then take one pack at a time, sort its wanted blobs by offset, and read each run
//! of neighbours (gaps up to `MAX_GAP`, spans up to `MAX_SPAN`) with one ranged read,
//! writing every blob to each place that needs it. A restore costs about one request per
//! pack it touches, and a single small file costs one request, never a whole pack.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::BlobLocation;
use crate::format::pack::BlobType;
use crate::format::tree::Node;
use crate::interrupt;
use crate::progress::Progress;
use crate::repo::{Repository, pool};

use super::target::{Target, TempOpen};

/// Bytes between two wanted blobs that are read and thrown away rather than paying for a
/// second request (on S3 a request costs about as much time as a megabyte of transfer).
pub const MAX_GAP: u64 = 1024 * 1024;
/// Most bytes one read spans, which bounds each worker's memory.
pub const MAX_SPAN: u64 = 8 * 1024 * 1024;

/// Splits `locs` into runs that one ranged read can serve: the same pack, ascending
/// offsets, small gaps, bounded span. Order is kept, so callers that need file order (dump)
/// and callers that sort by offset first (restore) both use it.
pub fn runs(locs: &[BlobLocation]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=locs.len() {
        let joins = i < locs.len() && {
            let (first, prev, next) = (&locs[start], &locs[i - 1], &locs[i]);
            let prev_end = u64::from(prev.entry.offset) + u64::from(prev.entry.length);
            let next_start = u64::from(next.entry.offset);
            let next_end = next_start + u64::from(next.entry.length);
            next.pack == first.pack
                && next_start >= u64::from(prev.entry.offset)
                && next_start.saturating_sub(prev_end) <= MAX_GAP
                && next_end - u64::from(first.entry.offset) <= MAX_SPAN
        };
        if !joins {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// One file of a batch: where it goes, what it holds, and how far it has got.
pub struct FileTarget {
    /// Below the target.
    pub rel: PathBuf,
    /// The full path, for messages.
    pub dest: PathBuf,
    /// The temporary name it is written under, in the same directory.
    pub tmp: OsString,
    pub node: Node,
    /// Written into the file that stands there (`tmp` is its own name), and only the
    /// blobs not marked in `present`; see `restorer::existing`.
    pub in_place: bool,
    /// Per blob of the content: already in place (not fetched).
    present: Vec<bool>,
    remaining: AtomicUsize,
    /// Whether the temporary file was made (emptied) by the first write; later writes,
    /// from any worker, open it as it is.
    created: Mutex<bool>,
    error: Mutex<Option<String>>,
    /// Failed only because a pack it needs is archived (see `ArchivedPacks`): counted,
    /// not reported one by one.
    archived: AtomicBool,
}

impl FileTarget {
    pub fn new(rel: PathBuf, dest: PathBuf, tmp: OsString, node: Node) -> FileTarget {
        FileTarget {
            remaining: AtomicUsize::new(node.content.len()),
            present: Vec::new(),
            in_place: false,
            rel,
            dest,
            tmp,
            node,
            created: Mutex::new(false),
            error: Mutex::new(None),
            archived: AtomicBool::new(false),
        }
    }

    /// A file that already stands at `rel` under `name` and is updated where it differs:
    /// `present` marks the blobs it already holds where the snapshot has them.
    pub fn in_place(
        rel: PathBuf,
        dest: PathBuf,
        name: OsString,
        node: Node,
        present: Vec<bool>,
    ) -> FileTarget {
        let missing = present.iter().filter(|p| !**p).count();
        FileTarget {
            remaining: AtomicUsize::new(missing),
            present,
            in_place: true,
            created: Mutex::new(true),
            ..FileTarget::new(rel, dest, name, node)
        }
    }

    /// Blobs still to be fetched.
    pub fn missing(&self) -> usize {
        self.remaining.load(Ordering::SeqCst)
    }

    /// Whether it waits for an archived pack (and nothing else failed first).
    pub fn waits_for_archive(&self) -> bool {
        self.archived.load(Ordering::SeqCst)
    }

    fn fail(&self, e: impl std::fmt::Display) {
        let mut err = self.error.lock().unwrap_or_else(|p| p.into_inner());
        err.get_or_insert_with(|| e.to_string());
    }

    fn fail_archived(&self, e: &Error) {
        let mut err = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if err.is_none() {
            *err = Some(e.to_string());
            self.archived.store(true, Ordering::SeqCst);
        }
    }

    /// The first error met, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens the temporary file for writing, making it on the first call.
    fn open(&self, target: &Target) -> Result<File> {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let file = target.open_temp(
            &self.rel,
            &self.tmp,
            if *created {
                TempOpen::Reopen
            } else {
                TempOpen::Create
            },
        )?;
        *created = true;
        Ok(file)
    }
}

/// The data packs a restore found in an archive storage class, with that class: each is
/// reported once, however many files need it.
#[derive(Default)]
pub struct ArchivedPacks(Mutex<BTreeMap<Id, String>>);

impl ArchivedPacks {
    fn add(&self, pack: Id, class: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pack)
            .or_insert_with(|| class.to_string());
    }

    pub fn into_inner(self) -> BTreeMap<Id, String> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// Set when the target itself fails (full, read-only, over quota), not one file: every
/// further write would fail the same way, so the restore stops instead of reporting each
/// of perhaps millions of files.
#[derive(Default)]
pub struct Stop {
    reason: std::sync::OnceLock<String>,
}

impl Stop {
    /// Stops the restore if `e` is a failure of the whole target.
    pub fn note(&self, e: &Error) {
        if let Error::Io { path, source } = e
            && matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::QuotaExceeded
            )
        {
            let _ = self
                .reason
                .set(format!("writing {} failed: {source}", path.display()));
        }
    }

    /// Stops the restore: the store gave up answering.
    pub fn store_failed(&self, e: &Error) {
        let _ = self
            .reason
            .set(format!("reading from the store failed: {e}"));
    }

    /// Why the restore stopped, if it did: the target failed, or the user interrupted.
    pub fn reason(&self) -> Option<&str> {
        if interrupt::requested() {
            let _ = self.reason.set("interrupted".into());
        }
        self.reason.get().map(String::as_str)
    }
}

/// Called once per file when its last blob is written or has failed, with the file's
/// descriptor when it is still open (for setting metadata without a path lookup).
pub type Done<'a> = dyn Fn(&FileTarget, Option<&File>) + Sync + 'a;

/// One wanted blob: which file needs it at which offset.
struct Want {
    loc: BlobLocation,
    file: usize,
    offset: u64,
}

/// Writes the contents of `files` to their temporary files (each is made by its first
/// write), pack by pack on `workers` threads; `sparse` leaves blocks of zeros as holes. `done` is called once per file when its last blob is written or
/// has failed; the file's `error()` tells which.
#[allow(clippy::too_many_arguments)]
pub fn write_contents(
    repo: &Repository,
    target: &Target,
    files: &[FileTarget],
    workers: usize,
    stop: &Stop,
    archived: &ArchivedPacks,
    progress: &dyn Progress,
    done: &Done<'_>,
    sparse: bool,
) {
    let mut by_pack: HashMap<Id, Vec<Want>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let mut offset = 0u64;
        let mut located = Vec::with_capacity(f.node.content.len());
        for (k, id) in f.node.content.iter().enumerate() {
            match repo.locate(BlobType::Data, id) {
                Ok(loc) => {
                    if !f.present.get(k).copied().unwrap_or(false) {
                        located.push(Want {
                            loc,
                            file: i,
                            offset,
                        });
                    }
                    offset += u64::from(loc.entry.raw_length);
                }
                Err(e) => {
                    f.fail(e);
                    break;
                }
            }
        }
        if f.error().is_some() || located.is_empty() {
            // Failed, or (updated in place) holding every blob already.
            f.remaining.store(0, Ordering::SeqCst);
            done(f, None);
            continue;
        }
        for w in located {
            by_pack.entry(w.loc.pack).or_default().push(w);
        }
    }
    let mut packs: Vec<Vec<Want>> = by_pack.into_values().collect();
    // Biggest first, so that the last pack left to one worker is a small one.
    packs.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pool::for_each(&packs, workers, |wants| {
        if stop.reason().is_some() {
            return ControlFlow::Break(());
        }
        write_pack(
            repo, target, files, wants, stop, archived, progress, done, sparse,
        );
        ControlFlow::Continue(())
    });
    if stop.reason().is_some() {
        // Files cut short hold part of their content: none may pass for restored.
        for f in files {
            if f.remaining.load(Ordering::SeqCst) > 0 {
                discard(target, f);
            }
        }
    }
}

/// Reads what `files` want of one pack, run by run, and writes it.
#[allow(clippy::too_many_arguments)]
fn write_pack(
    repo: &Repository,
    target: &Target,
    files: &[FileTarget],
    wants: &[Want],
    stop: &Stop,
    archived: &ArchivedPacks,
    progress: &dyn Progress,
    done: &Done<'_>,
    sparse: bool,
) {
    let mut order: Vec<&Want> = wants.iter().collect();
    order.sort_by_key(|w| (w.loc.entry.offset, w.file, w.offset));
    let locs: Vec<BlobLocation> = order.iter().map(|w| w.loc).collect();
    let mut writer = RunWriter {
        repo,
        files,
        done,
        out: Output {
            target,
            stop,
            progress,
            open: None,
            sparse,
        },
    };
    for run in runs(&locs) {
        if stop.reason().is_some() {
            return;
        }
        let members = &order[run.clone()];
        let Err(e) = writer.write_run(members, &locs[run.clone()]) else {
            continue;
        };
        if let Error::GaveUp { .. } = &e {
            // The store stopped answering: every further read would wait out its retries
            // too. The files of this pack fail with it, and the restore stops.
            stop.store_failed(&e);
            writer.fail_all(&order[run.start..], &e);
            return;
        }
        if let Error::Archived { class, .. } = &e {
            // No run of this pack can be read: every file waiting on it waits for the
            // retrieval, and the pack is reported once.
            archived.add(locs[run.start].pack, class);
            for w in &order[run.start..] {
                let f = &files[w.file];
                f.fail_archived(&e);
                finish_one(f, None, done);
            }
            return;
        }
        if members.len() == 1 {
            writer.other_copy_or_fail(members[0], &e);
            continue;
        }
        // One unreadable blob (an index entry past the end of its pack, a pack cut short)
        // must not take its neighbours down: read them one at a time.
        for k in run {
            if let Err(e) = writer.write_run(&order[k..=k], &locs[k..=k]) {
                writer.other_copy_or_fail(order[k], &e);
            }
        }
    }
}

/// Writes the blobs of runs of one pack to the files that want them.
struct RunWriter<'a> {
    repo: &'a Repository,
    files: &'a [FileTarget],
    done: &'a Done<'a>,
    out: Output<'a>,
}

impl RunWriter<'_> {
    /// Reads one run and writes each blob; an error means the read failed and nothing of
    /// the run was handed over.
    fn write_run(&mut self, members: &[&Want], locs: &[BlobLocation]) -> Result<()> {
        let (repo, files, done) = (self.repo, self.files, self.done);
        let out = &mut self.out;
        repo.read_run(locs, &mut |i, plain| {
            let w = members[i];
            let f = &files[w.file];
            match plain {
                Ok(data) => out.write(f, w, data),
                Err(e) => match from_other_copy(repo, w) {
                    Some(data) => out.write(f, w, &data),
                    None => f.fail(e),
                },
            }
            finish_one(f, out.descriptor(w.file), done);
            Ok(())
        })
    }

    /// A blob whose read failed: written from another pack that holds it, if one does
    /// (a backup after the damage stored it again), else its file fails with `e`.
    fn other_copy_or_fail(&mut self, w: &Want, e: &Error) {
        let f = &self.files[w.file];
        let Some(data) = from_other_copy(self.repo, w) else {
            self.fail_all(&[w], e);
            return;
        };
        self.out.write(f, w, &data);
        finish_one(f, self.out.descriptor(w.file), self.done);
    }

    /// The read failed: every file waiting on these blobs fails with it.
    fn fail_all(&self, members: &[&Want], e: &Error) {
        for w in members {
            let f = &self.files[w.file];
            f.fail(e);
            finish_one(f, None, self.done);
        }
    }
}

/// Where the blobs of a run go: the files of the target, one kept open.
struct Output<'a> {
    target: &'a Target,
    stop: &'a Stop,
    progress: &'a dyn Progress,
    /// The file last written, kept open: neighbouring blobs usually belong to one file.
    open: Option<(usize, File)>,
    /// `restore --sparse`: blocks of zeros are left as holes.
    sparse: bool,
}

impl Output<'_> {
    /// Writes one blob where `w` wants it, unless its file failed already.
    fn write(&mut self, f: &FileTarget, w: &Want, data: &[u8]) {
        if f.error().is_none()
            && let Err(e) = write_at(
                self.target,
                &mut self.open,
                w.file,
                f,
                data,
                w.offset,
                self.sparse,
            )
        {
            self.stop.note(&e);
            f.fail(e);
        }
        self.progress.advance(data.len() as u64);
    }

    /// The descriptor of file `index`, when it is the one kept open.
    fn descriptor(&self, index: usize) -> Option<&File> {
        match &self.open {
            Some((i, file)) if *i == index => Some(file),
            _ => None,
        }
    }
}

/// The blob `w` wants, read from another pack than the one whose read failed, if the
/// index names one and it opens.
fn from_other_copy(repo: &Repository, w: &Want) -> Option<Vec<u8>> {
    repo.load_blob_elsewhere(BlobType::Data, &w.loc.entry.id, &w.loc.pack)
        .ok()
        .flatten()
}

fn finish_one(f: &FileTarget, descriptor: Option<&File>, done: &Done<'_>) {
    if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        done(f, descriptor);
    }
}

/// Writes `data`, from content offset `offset`, into file `index` where its holes put it
/// (leaving zero blocks unwritten when `sparse`), making its temporary file on the first
/// write. Descriptors are opened per file as blobs arrive (one kept open at a time), so a
/// batch of many files never holds many; every open resolves the path beneath the target
/// without following symlinks (see `target`).
fn write_at(
    target: &Target,
    open: &mut Option<(usize, File)>,
    index: usize,
    f: &FileTarget,
    data: &[u8],
    offset: u64,
    sparse: bool,
) -> Result<()> {
    if !matches!(open, Some((i, _)) if *i == index) {
        *open = None;
        *open = Some((index, f.open(target)?));
    }
    let Some((_, file)) = open else {
        unreachable!("opened above")
    };
    for (at, range) in f.node.layout().pieces(offset, data.len()) {
        let piece = &data[range];
        // Zeros skipped in a file updated in place would leave its old bytes there.
        let written = if sparse && !f.in_place {
            write_skipping_zeros(file, piece, at)
        } else {
            file.write_all_at(piece, at)
        };
        written.map_err(|e| Error::io(&f.dest, e))?;
    }
    Ok(())
}

/// Blocks of this size, aligned in the file, that hold only zeros are left as holes by
/// `restore --sparse`.
const SPARSE_BLOCK: u64 = 4096;

/// Writes `data` at `offset` but for its aligned blocks of zeros, which stay holes of the
/// new file (made empty, and given its length when complete).
fn write_skipping_zeros(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    // The end (index into `data`) of the block that starts at index `i`.
    let block_end = |i: usize| {
        let into = (offset + i as u64) % SPARSE_BLOCK;
        data.len().min(i + (SPARSE_BLOCK - into) as usize)
    };
    let zeros = |r: std::ops::Range<usize>| data[r].iter().all(|&b| b == 0);
    let mut i = 0;
    while i < data.len() {
        let end = block_end(i);
        if zeros(i..end) {
            i = end;
            continue;
        }
        let start = i;
        while i < data.len() && !zeros(i..block_end(i)) {
            i = block_end(i);
        }
        file.write_all_at(&data[start..i], offset + start as u64)?;
    }
    Ok(())
}

/// Removes the temporary file of a file whose restore failed or was cut short. A file
/// updated in place is the user's and stays: a later restore finishes it.
pub fn discard(target: &Target, f: &FileTarget) {
    if !f.in_place {
        target.discard_temp(&f.rel, &f.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{Compression, PackEntry};

    fn loc(pack: u8, offset: u32, length: u32) -> BlobLocation {
        BlobLocation {
            pack: Id([pack; 32]),
            entry: PackEntry {
                kind: BlobType::Data,
                id: Id([offset as u8; 32]),
                offset,
                length,
                raw_length: length,
                compression: Compression::None,
            },
        }
    }

    #[test]
    fn neighbours_of_one_pack_share_a_read() {
        let m = MAX_GAP as u32;
        let locs = [
            loc(1, 0, 100),
            loc(1, 100, 100),
            loc(1, 200 + m, 10),     // gap of exactly MAX_GAP: joins
            loc(1, 300 + 2 * m, 10), // gap above MAX_GAP: new run
            loc(2, 0, 10),           // other pack
            loc(2, 0, 10),           // the same blob again (two files want it)
            loc(2, 5, 10),           // overlapping would mean a damaged index; still ascending
            loc(1, 0, 10),           // back to pack 1: new run
        ];
        assert_eq!(runs(&locs), vec![0..3, 3..4, 4..7, 7..8]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn zero_blocks_are_left_unwritten() {
        let f = tempfile::tempfile().unwrap();
        let b = SPARSE_BLOCK as usize;
        // Starts 100 bytes before a block boundary: zeros there, a zero block, data, a zero
        // block, data to the end.
        let mut data = vec![0u8; 100 + 3 * b + 10];
        data[100 + b + 5] = 1;
        data[100 + 3 * b + 9] = 2;
        let offset = SPARSE_BLOCK * 10 - 100;
        f.set_len(offset + data.len() as u64).unwrap();
        write_skipping_zeros(&f, &data, offset).unwrap();
        let mut back = vec![9u8; data.len()];
        f.read_exact_at(&mut back, offset).unwrap();
        assert_eq!(back, data);
        use std::os::unix::fs::MetadataExt;
        // Only the blocks holding data were written.
        assert!(
            f.metadata().unwrap().blocks() * 512 <= 2 * SPARSE_BLOCK,
            "{:?}",
            f.metadata()
        );
    }

    #[test]
    fn spans_are_bounded() {
        let len = 3 * 1024 * 1024;
        let locs = [loc(1, 0, len), loc(1, len, len), loc(1, 2 * len, len)];
        assert_eq!(runs(&locs), vec![0..2, 2..3]);
        // File order going backwards in a pack (dump) starts a new run.
        let locs = [loc(1, 500, 10), loc(1, 0, 10)];
        assert_eq!(runs(&locs), vec![0..1, 1..2]);
    }
}
