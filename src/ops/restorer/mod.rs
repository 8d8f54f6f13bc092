//! Restore: a whole snapshot or chosen paths of it, below a target directory, and the
//! lookups `ls` and `dump` share.
//!
//! A placing thread (`place`) walks what is chosen (`select`) and decides each entry
//! against the target (`target`, `compare`); file contents are written pack by pack
//! (`fetch`) on this thread meanwhile; directories get their metadata last, deepest
//! first, so writing their contents does not disturb their mtimes. Every blob is checked
//! against its id before a byte of it is written.

pub mod archived;
mod compare;
pub(crate) mod fetch;
mod meta;
mod options;
mod outcome;
mod place;
pub mod select;
pub(crate) mod target;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::Node;
use crate::interrupt;
use crate::ops::fsmeta::XattrRefusals;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::tree_walk::find_node;
use compare::same_content;
use fetch::FileTarget;
use meta::Meta;
use outcome::Tally;
use target::{Target, TempOpen};

pub use options::{Overwrite, RestoreOptions};
pub use outcome::{Action, ActionKind, Change, Report, RestoreSummary};

/// Writes a file's content to `out` in order, reading neighbouring blobs together.
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let locs = node
        .content
        .iter()
        .map(|id| repo.locate(BlobType::Data, id))
        .collect::<Result<Vec<_>>>()?;
    let mut stream = ContentStream {
        out,
        layout: node.layout(),
        sparse: !node.holes.is_empty(),
        written: 0,
        taken: 0,
    };
    for run in fetch::runs(&locs) {
        let run = &locs[run];
        // Blobs of the run handed over; a read of the whole run fails before the first.
        let mut handed = 0;
        let read = repo.read_run(run, &mut |i, plain| {
            handed = i + 1;
            match plain {
                Ok(data) => stream.put(data),
                Err(e) => {
                    let loc = &run[i];
                    let data = repo
                        .load_blob_elsewhere(BlobType::Data, &loc.entry.id, &loc.pack)?
                        .ok_or(e)?;
                    stream.put(&data)
                }
            }
        });
        match read {
            Ok(()) => {}
            Err(e @ Error::Output(_)) => return Err(e),
            Err(e) if handed > 0 => return Err(e),
            // The pack is missing or cut short: each blob from another copy, if any.
            Err(e) => {
                for loc in run {
                    match repo.load_blob_elsewhere(BlobType::Data, &loc.entry.id, &loc.pack)? {
                        Some(data) => stream.put(&data)?,
                        None => return Err(e),
                    }
                }
            }
        }
    }
    stream.finish(node.size)
}

/// A file's content written in order to a stream, holes as zeros.
struct ContentStream<'a, 'o> {
    out: &'o mut dyn Write,
    layout: crate::format::tree::Layout<'a>,
    /// The file has holes (and may end in one).
    sparse: bool,
    /// Bytes written so far (the file's offset).
    written: u64,
    /// Content bytes taken.
    taken: u64,
}

impl ContentStream<'_, '_> {
    fn put(&mut self, data: &[u8]) -> Result<()> {
        for (at, range) in self.layout.pieces(self.taken, data.len()) {
            write_zeros(self.out, at.saturating_sub(self.written)).map_err(output_failed)?;
            self.out
                .write_all(&data[range.clone()])
                .map_err(output_failed)?;
            self.written = at + range.len() as u64;
        }
        self.taken += data.len() as u64;
        Ok(())
    }

    /// Writes the hole at the end, if the file has one; returns the bytes written.
    fn finish(mut self, size: u64) -> Result<u64> {
        if self.sparse {
            write_zeros(self.out, size.saturating_sub(self.written)).map_err(output_failed)?;
            self.written = self.written.max(size);
        }
        Ok(self.written)
    }
}

fn output_failed(e: std::io::Error) -> Error {
    Error::Output(format!("writing output: {e}"))
}

/// Writes `n` zero bytes: a hole of a sparse file, to a stream.
fn write_zeros(out: &mut dyn Write, mut n: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    report: &Report<'_>,
) -> Result<RestoreSummary> {
    for inc in &opts.choice.paths {
        find_node(repo, root, inc)?;
    }
    let cleans_root = (opts.choice.whole_root() && opts.cleans(Path::new("/")))
        || opts.choice.paths.iter().any(|p| p == Path::new("/"));
    if opts.delete && cleans_root {
        let target = opts.target.canonicalize().unwrap_or(opts.target.clone());
        if target == Path::new("/") {
            return Err(Error::Invalid(
                "--delete with --target / would remove everything on / that the snapshot does \
                 not hold; name what to restore with --include (or restore elsewhere)"
                    .into(),
            ));
        }
    }
    let target = if opts.dry_run {
        Target::peek(&opts.target)?
    } else {
        Target::open(&opts.target)?
    };
    let meta = Meta {
        xattrs: opts.xattrs,
        refused: XattrRefusals::default(),
    };
    let tally = Tally(Mutex::new(RestoreSummary::default()));
    // Called once per file when all its blobs are written (or one failed).
    let finish = |f: &FileTarget, descriptor: Option<&File>| {
        let result = match f.error() {
            Some(e) => Err(e),
            None => {
                finish_file(repo, &target, &meta, f, descriptor, opts).map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(verified) => tally.count(|s| {
                s.files += 1;
                s.bytes += f.node.size;
                s.verified_files += u64::from(verified);
                s.files_updated += u64::from(f.in_place);
            }),
            Err(_) if f.waits_for_archive() => {
                fetch::discard(&target, f);
                tally.count(|s| s.files_waiting += 1);
            }
            Err(e) => {
                fetch::discard(&target, f);
                tally.error(&f.dest, e);
            }
        }
    };
    let workers = (crate::threads() * 2).max(repo.backend().write_concurrency());
    let stop = fetch::Stop::default();
    let archived = fetch::ArchivedPacks::default();
    // The placing thread walks the snapshot, makes directories and hands over batches of files;
    // this thread writes one batch while the next is planned. A rendezvous, so that at
    // most two batches are held: the one being written and the next.
    let (batches, planned) = crossbeam_channel::bounded::<Vec<FileTarget>>(0);
    let shared = place::Shared {
        repo,
        target: &target,
        meta: &meta,
        opts,
        report,
        stop: &stop,
        tally: &tally,
        finish: &finish,
    };
    let plan = || place::run(shared, root, batches);
    let dirs = std::thread::scope(|s| {
        // The walk recurses once per directory level; give it room for deep trees.
        let placing = std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn_scoped(s, plan)
            .map_err(|e| {
                Error::System(format!("cannot start the restore's placing thread: {e}"))
            })?;
        for batch in planned {
            // Once stopped, batches are only drained until the placing thread sees it.
            if stop.reason().is_none() {
                fetch::write_contents(
                    repo,
                    &target,
                    &batch,
                    workers,
                    &stop,
                    &archived,
                    progress,
                    &finish,
                    opts.sparse,
                );
            }
        }
        placing
            .join()
            .map_err(|_| Error::Internal("the restore's placing thread panicked".into()))?
    });
    if let Some(reason) = stop.reason() {
        let s = tally.0.lock().unwrap_or_else(|p| p.into_inner());
        progress.finish();
        let left = "files it was writing were removed (big files it was updating in place \
                    hold part of the snapshot's content until the restore is run again), and \
                    directories keep the default mode and times";
        if interrupt::requested() {
            return Err(Error::Interrupted(format!(
                "restore into {} interrupted; {} files ({} bytes) were restored before it, \
                 {left}. Run the restore again to finish it: files already complete are kept",
                opts.target.display(),
                s.files,
                s.bytes
            )));
        }
        return Err(Error::Incomplete(format!(
            "restore into {} stopped: {reason}. {} files ({} bytes) were restored before it; \
             {left}. Free space, make the target writable or check the network and the \
             store, as the reason says, and run the restore again: files already complete \
             are kept",
            opts.target.display(),
            s.files,
            s.bytes
        )));
    }
    let (mut dirs, links) = dirs?;
    let mut summary = tally.0.into_inner().unwrap_or_else(|p| p.into_inner());
    // Before the directories' times are set: a link changes its directory's mtime.
    for l in &links {
        match target.link(&l.first, &l.rel, &l.tmp) {
            Ok(()) => summary.hard_links += 1,
            Err(e) => summary.errors.push((target.display(&l.rel), e.to_string())),
        }
    }
    // Deepest first, so a parent's mtime is set after its children are complete.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    summary.archived_packs = archived::sized(repo, archived.into_inner())?;
    for (rel, node) in &dirs {
        if node.name.is_empty() {
            continue; // the snapshot root is the target itself
        }
        let dest = target.display(rel);
        let applied = target
            .dir(rel)
            .and_then(|fd| meta.file(&File::from(fd), &dest, node));
        match applied {
            Ok(()) => summary.dirs += 1,
            Err(e) => summary.errors.push((dest, e.to_string())),
        }
    }
    summary.xattrs_refused = meta.refused.into_list();
    progress.finish();
    Ok(summary)
}

/// Verifies (if asked) a file whose content is written, sets its metadata and moves it
/// into place; returns whether it was verified. `descriptor` is the temporary file's, when
/// it is still open.
fn finish_file(
    repo: &Repository,
    target: &Target,
    meta: &Meta,
    f: &FileTarget,
    descriptor: Option<&File>,
    opts: &RestoreOptions,
) -> Result<bool> {
    let verify = opts.verify;
    let reopened;
    let file = match descriptor {
        Some(file) => file,
        None => {
            reopened = target.open_temp(&f.rel, &f.tmp, TempOpen::Reopen)?;
            &reopened
        }
    };
    if !f.node.holes.is_empty() || opts.sparse || f.in_place {
        // Holes at the end are not written: the length makes them. A file updated in
        // place may have been longer.
        file.set_len(f.node.size)
            .map_err(|e| Error::io(&f.dest, e))?;
    }
    if verify && !same_content(repo, file, &f.dest, &f.node)? {
        return Err(Error::VerifyFailed(f.dest.clone()));
    }
    meta.file(file, &f.dest, &f.node)?;
    if !f.in_place {
        let (dir, name) = target.parent(&f.rel)?;
        target.commit(&dir, &f.tmp, name, &f.rel)?;
    }
    Ok(verify)
}
