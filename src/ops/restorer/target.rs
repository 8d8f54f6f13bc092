//! The restore target: every path of a restore is resolved beneath the target directory
//! without following a symlink that stands in it.
//!
//! A restore into a tree that already holds data meets whatever is there, including
//! symlinks pointing out of the target (`htdocs/css -> /elsewhere`). Following one would
//! write outside the target, so no path is ever handed to the kernel from the top: each
//! operation opens the parent directory beneath the target's descriptor with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) and then acts on one name in it (`openat`
//! with `O_NOFOLLOW`, `mkdirat`, `renameat`, ...). Where the kernel lacks `openat2`
//! (before Linux 5.6, or a sandbox that forbids it) the parent is opened one component at
//! a time with `O_NOFOLLOW | O_DIRECTORY`, which gives the same guarantee.
//!
//! Files are written under a temporary name in their directory and renamed into place
//! when complete, so nothing half-written ever carries a real name; a rename replaces a
//! file or a symlink without following it. A non-empty directory is never replaced.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, Result};
use crate::format::tree::{FileTime, file_time};
use crate::ops::long_path::pieces;

/// What stands at a path of the target before the restore writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    Dir,
    /// A regular file, with its size and mtime (nanoseconds).
    File {
        size: u64,
        mtime: FileTime,
    },
    /// A symlink, FIFO, socket or device node.
    Other,
}

/// A stat's mtime in nanoseconds, as nodes record it.
fn mtime_ns(st: &FileStat) -> FileTime {
    file_time(st.st_mtime, st.st_mtime_nsec)
}

impl Existing {
    fn of(st: &FileStat) -> Existing {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Existing::Dir,
            SFlag::S_IFREG => Existing::File {
                size: st.st_size as u64,
                mtime: mtime_ns(st),
            },
            _ => Existing::Other,
        }
    }
}

/// What stands at a path, with what the overwrite modes look at.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub kind: Existing,
    pub mtime: FileTime,
    pub links: u64,
    /// Permission bits.
    pub mode: u32,
    pub symlink: bool,
    /// Device and inode: which names are links of one file.
    pub inode: (u64, u64),
    /// The file type bits (`st_mode & S_IFMT`) and, for device nodes, the device number:
    /// a FIFO or device node the same as the snapshot's is kept.
    pub format: u32,
    pub rdev: u64,
}

/// A directory that a file may not replace because it holds entries: restoring over it
/// would delete what the snapshot does not hold.
pub fn conflict(dest: &Path) -> Error {
    Error::Invalid(format!(
        "{}: a non-empty directory stands where the snapshot has no directory; it was \
         left as it is (move it away, or restore with --delete, to get the snapshot's entry)",
        dest.display()
    ))
}

/// The target directory, held open.
pub struct Target {
    /// None only for a dry run's target that does not exist: nothing stands anywhere.
    root: Option<OwnedFd>,
    /// The target as the user named it, for messages.
    path: PathBuf,
}

/// How [`Target::open_temp`] opens a temporary file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TempOpen {
    /// Made, or emptied if it is there.
    Create,
    /// Opened as it is: written by this restore already.
    Reopen,
}

/// Whether this kernel lets us use `openat2` (probed once).
fn have_openat2() -> &'static OnceLock<bool> {
    static HAVE: OnceLock<bool> = OnceLock::new();
    &HAVE
}

fn io(path: &Path, e: Errno) -> Error {
    Error::io(path, std::io::Error::from(e))
}

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_RDONLY);

impl Target {
    /// Creates the target directory if needed and opens it. The target itself may be
    /// reached through symlinks: the user named it.
    pub fn open(path: &Path) -> Result<Target> {
        if let Err(e) = std::fs::create_dir_all(path) {
            if !path.is_dir() && path.symlink_metadata().is_ok() {
                return Err(Error::Invalid(format!(
                    "--target {}: exists and is not a directory (or is a dangling \
                     symlink); give a directory to restore into",
                    path.display()
                )));
            }
            return Err(Error::io(path, e));
        }
        let root = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| io(path, e))?;
        Ok(Target {
            root: Some(root),
            path: path.to_path_buf(),
        })
    }

    /// Opens the target to look at, never making it (`restore --dry-run`).
    pub fn peek(path: &Path) -> Result<Target> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        let root = match nix::fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => Some(fd),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(io(path, e)),
        };
        Ok(Target {
            root,
            path: path.to_path_buf(),
        })
    }

    fn root(&self) -> std::result::Result<&OwnedFd, Errno> {
        self.root.as_ref().ok_or(Errno::ENOENT)
    }

    /// The full path of `rel` below the target, for messages.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens the directory `rel` (relative, plain names only; empty for the target
    /// itself) without following any symlink on the way.
    pub fn dir(&self, rel: &Path) -> Result<OwnedFd> {
        let err = |e| io(&self.display(rel), e);
        let root = self.root().map_err(err)?;
        if rel.as_os_str().is_empty() {
            return root.try_clone().map_err(|e| Error::io(&self.path, e));
        }
        if *have_openat2().get_or_init(|| self.probe_openat2()) {
            let how = OpenHow::new()
                .flags(DIR_FLAGS)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            // A path past PATH_MAX is opened a piece at a time, each beneath the last.
            let mut dir: Option<OwnedFd> = None;
            for piece in pieces(rel) {
                let base = dir.as_ref().map_or(root.as_fd(), |d| d.as_fd());
                dir = Some(openat2(base, piece.as_path(), how).map_err(err)?);
            }
            return dir.ok_or_else(|| err(Errno::ENOENT));
        }
        walk_beneath(root, rel).map_err(|e| match e {
            WalkError::Sys(e) => err(e),
            WalkError::NotPlain => Error::Invalid(format!(
                "{}: not a plain path below the target",
                rel.display()
            )),
        })
    }

    /// True when `openat2` works here; ENOSYS (old kernel) and EPERM (a seccomp filter
    /// that does not know it) mean the component walk.
    fn probe_openat2(&self) -> bool {
        let how = OpenHow::new()
            .flags(DIR_FLAGS)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let Ok(root) = self.root() else {
            return false;
        };
        !matches!(
            openat2(root, ".", how),
            Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL)
        )
    }

    /// The directory holding `rel` and `rel`'s last name.
    pub fn parent<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr)> {
        let name = rel
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: no file name", rel.display())))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.dir(parent)?, name))
    }

    /// What stands at `name` in `dir`, without following a symlink.
    pub fn existing(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<Existing> {
        Ok(self
            .found(dir, name, rel)?
            .map_or(Existing::Nothing, |f| f.kind))
    }

    /// What stands at `name` in `dir`, in more detail, without following a symlink.
    pub fn found(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<Option<Found>> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Found {
                kind: Existing::of(&st),
                mtime: mtime_ns(&st),
                links: st.st_nlink,
                mode: st.st_mode & 0o7777,
                symlink: st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits(),
                inode: (st.st_dev, st.st_ino),
                format: st.st_mode & SFlag::S_IFMT.bits(),
                rdev: st.st_rdev,
            })),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io(&self.display(rel), e)),
        }
    }

    /// What stands at `rel`; nothing where its folder does not exist (yet), as in a dry
    /// run, or is not a folder (the restore replaces it).
    pub fn look(&self, rel: &Path) -> Result<Option<Found>> {
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if is_errno(&e, &[Errno::ENOENT, Errno::ENOTDIR, Errno::ELOOP]) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.found(&dir, name, rel)
    }

    /// The names in the target's folder `rel` (none where no folder stands).
    pub fn names(&self, rel: &Path) -> Result<Vec<OsString>> {
        match self.dir(rel) {
            Ok(fd) => entry_names(&fd).map_err(|e| io(&self.display(rel), e)),
            // Not there, or not a folder (a dry run meets what the restore would replace).
            Err(e) if is_errno(&e, &[Errno::ENOENT, Errno::ENOTDIR, Errno::ELOOP]) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `name` in `dir` and, if it is a folder, all in it; symlinks are removed,
    /// never followed, and a folder on another file system (a mount point) is left.
    pub fn remove_all(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<()> {
        let dev = nix::sys::stat::fstat(dir)
            .map_err(|e| io(&self.display(rel), e))?
            .st_dev;
        remove_tree(dir, name, dev).map_err(|e| match e {
            Errno::EXDEV => Error::Invalid(format!(
                "{}: a file system is mounted there (or below); not removed",
                self.display(rel).display()
            )),
            e => io(&self.display(rel), e),
        })
    }

    /// The target of the symlink `name` in `dir`.
    pub fn read_link(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<Vec<u8>> {
        nix::fcntl::readlinkat(dir, name)
            .map(|t| t.as_bytes().to_vec())
            .map_err(|e| io(&self.display(rel), e))
    }

    /// Makes sure a real directory stands at `rel`: an existing one is kept with its
    /// contents; a symlink, file or other entry in its place is removed (never followed).
    pub fn ensure_dir(&self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() {
            let root = self.root().map_err(|e| io(&self.path, e))?;
            return self.prepare_existing_dir(root, rel);
        }
        let (dir, name) = self.parent(rel)?;
        let err = |e| io(&self.display(rel), e);
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if Existing::of(&st) == Existing::Dir => {
                self.make_writable(&dir, name, &st, rel)?;
                let fd = openat(&dir, name, DIR_FLAGS, Mode::empty()).map_err(err)?;
                return self.prepare_existing_dir(&fd, rel);
            }
            Ok(_) => unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(err)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err(e)),
        }
        match mkdirat(&dir, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// A directory of ours that we may not write into (mode 0500 from an earlier restore
    /// of such a directory) gets owner write and search until the restore sets the
    /// snapshot's mode at the end. (Root without CAP_DAC_OVERRIDE needs it too.)
    fn make_writable(&self, dir: &OwnedFd, name: &OsStr, st: &FileStat, rel: &Path) -> Result<()> {
        let euid = nix::unistd::Uid::effective().as_raw();
        if st.st_uid != euid || st.st_mode & 0o300 == 0o300 {
            return Ok(());
        }
        let mode = Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700);
        // The entry was a directory an instant ago; fchmodat cannot refuse to follow a
        // symlink on every kernel, and a symlink swapped in meanwhile could only lead to
        // a file of the same owner getting owner permissions.
        nix::sys::stat::fchmodat(
            dir,
            name,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| io(&self.display(rel), e))
    }

    /// Removes what restores killed with SIGKILL left in a directory that already
    /// existed: temporary entries of processes that no longer run. A directory the restore
    /// made itself holds none, so it is not read.
    fn prepare_existing_dir(&self, fd: &OwnedFd, rel: &Path) -> Result<()> {
        let err = |e| io(&self.display(rel), e);
        let mut stale = Vec::new();
        let listing = openat(fd, ".", DIR_FLAGS, Mode::empty()).map_err(err)?;
        let mut entries = nix::dir::Dir::from_fd(listing).map_err(err)?;
        for e in entries.iter() {
            let e = e.map_err(err)?;
            let name = e.file_name().to_bytes();
            if let Some(pid) = temp_owner(name) {
                let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(Errno::ESRCH);
                if gone && pid != std::process::id() as i32 {
                    stale.push(OsStr::from_bytes(name).to_owned());
                }
            }
        }
        for name in stale {
            remove_temp(fd, &name);
        }
        Ok(())
    }

    /// Moves `tmp` (in `dir`) into place as `name`, replacing a file, a symlink or an
    /// empty directory that stands there; a non-empty directory is a conflict, and the
    /// temporary entry is removed.
    pub fn commit(&self, dir: &OwnedFd, tmp: &OsStr, name: &OsStr, rel: &Path) -> Result<()> {
        let err = |e| io(&self.display(rel), e);
        // Almost always nothing or a file stands there: try the rename first.
        match renameat(dir, tmp, dir, name) {
            Err(Errno::EISDIR) => {}
            other => return other.map_err(err),
        }
        match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => renameat(dir, tmp, dir, name).map_err(err),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => {
                let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
                Err(conflict(&self.display(rel)))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Opens the temporary file `tmp` next to `rel` for writing, and reading back by
    /// `--verify`: made (emptied) or reopened as `how` says.
    pub fn open_temp(&self, rel: &Path, tmp: &OsStr, how: TempOpen) -> Result<File> {
        let create = how == TempOpen::Create;
        let (dir, _) = self.parent(rel)?;
        let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT | OFlag::O_TRUNC;
        }
        let open = || openat(&dir, tmp, flags, Mode::from_bits_truncate(0o600));
        let fd = match open() {
            // A symlink (or anything but a file) under our temporary name: not ours to
            // write through. It is only ever left by a killed restore or planted.
            Err(Errno::ELOOP | Errno::EISDIR | Errno::ENXIO) if create => {
                remove_temp(&dir, tmp);
                open()
            }
            other => other,
        }
        .map_err(|e| io(&self.display(rel), e))?;
        Ok(File::from(fd))
    }

    /// Whether the directory `name` in `dir` holds no entries.
    pub fn is_empty_dir(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<bool> {
        let err = |e| io(&self.display(rel), e);
        let fd = openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(err)?;
        let mut entries = nix::dir::Dir::from_fd(fd).map_err(err)?;
        for e in entries.iter() {
            let name = e.map_err(err)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Opens the regular file `name` in `dir` for reading and for setting its metadata,
    /// without following a symlink.
    pub fn open_existing(&self, dir: &OwnedFd, name: &OsStr, rel: &Path) -> Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        openat(dir, name, flags, Mode::empty())
            .map(File::from)
            .map_err(|e| io(&self.display(rel), e))
    }

    /// Makes `rel` a hard link to the file `first` (both below the target), through the
    /// temporary name `tmp`, replacing what stands at `rel` as a commit does. A file that
    /// is already that link is left alone.
    pub fn link(&self, first: &Path, rel: &Path, tmp: &OsStr) -> Result<()> {
        let (first_dir, first_name) = self.parent(first)?;
        let (dir, name) = self.parent(rel)?;
        let original = match fstatat(&first_dir, first_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st)
                if Existing::of(&st) != Existing::Dir && Existing::of(&st) != Existing::Other =>
            {
                st
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: not restored: it is a hard link of {}, which was not restored",
                    self.display(rel).display(),
                    self.display(first).display()
                )));
            }
        };
        if let Ok(st) = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            && (st.st_dev, st.st_ino) == (original.st_dev, original.st_ino)
        {
            return Ok(());
        }
        remove_temp(&dir, tmp);
        nix::unistd::linkat(&first_dir, first_name, &dir, tmp, AtFlags::empty())
            .map_err(|e| io(&self.display(rel), e))?;
        self.commit(&dir, tmp, name, rel)
    }

    /// Removes the temporary entry `tmp` next to `rel`, if there is one.
    pub fn discard_temp(&self, rel: &Path, tmp: &OsStr) {
        if let Ok((dir, _)) = self.parent(rel) {
            remove_temp(&dir, tmp);
        }
    }
}

enum WalkError {
    Sys(Errno),
    NotPlain,
}

/// Opens the directory `rel` below `root` one component at a time, refusing symlinks
/// (`O_NOFOLLOW | O_DIRECTORY`): the fallback where `openat2` is missing.
fn walk_beneath(root: &OwnedFd, rel: &Path) -> std::result::Result<OwnedFd, WalkError> {
    let mut fd: Option<OwnedFd> = None;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(WalkError::NotPlain);
        };
        let parent = fd.as_ref().map_or(root.as_fd(), |f| f.as_fd());
        fd = Some(openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(WalkError::Sys)?);
    }
    // The callers hand over at least one name.
    fd.ok_or(WalkError::NotPlain)
}

/// Whether `e` is a system error of one of these numbers.
fn is_errno(e: &Error, numbers: &[Errno]) -> bool {
    matches!(e, Error::Io { source, .. }
        if source.raw_os_error().is_some_and(|n| numbers.iter().any(|&k| k as i32 == n)))
}

/// Removes `name` in `dir` and all below it, staying on the file system `dev`.
fn remove_tree(dir: &OwnedFd, name: &OsStr, dev: u64) -> std::result::Result<(), Errno> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) => {}
        other => return other,
    }
    let fd = openat(dir, name, DIR_FLAGS, Mode::empty())?;
    if nix::sys::stat::fstat(&fd)?.st_dev != dev {
        return Err(Errno::EXDEV);
    }
    for child in entry_names(&fd)? {
        remove_tree(&fd, &child, dev)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// The names in the directory `fd` (read through a descriptor of its own, so `fd` stays
/// usable), without `.` and `..`.
fn entry_names(fd: &OwnedFd) -> std::result::Result<Vec<OsString>, Errno> {
    let listing = openat(fd, ".", DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for e in nix::dir::Dir::from_fd(listing)?.iter() {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_owned());
        }
    }
    Ok(names)
}

/// Whether `name` is a temporary entry of a restore (this one or another that runs).
pub fn is_temp(name: &OsStr) -> bool {
    temp_owner(name.as_bytes()).is_some()
}

/// Removes the temporary entry `tmp` in `dir`, if there is one.
pub fn remove_temp(dir: &OwnedFd, tmp: &OsStr) {
    if unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir) == Err(Errno::EISDIR) {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::RemoveDir);
    }
}

/// What every temporary name starts with.
const TEMP_PREFIX: &str = ".cairn-restore-";

/// The temporary name under which `name` is written: hidden, and naming this process, so
/// that two restores into one target never write into each other's files, and a later
/// restore can tell a leftover of a killed one (see [`Target::remove_stale_temps`]).
/// `taken` says whether the snapshot itself holds an entry of that name in the same
/// directory, in which case the name gets one more mark.
pub fn temp_name(name: &OsStr, taken: impl Fn(&OsStr) -> bool) -> OsString {
    let hash = blake3::hash(name.as_bytes());
    let mut tmp = OsString::from(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        &hash.to_hex()[..16]
    ));
    while taken(&tmp) {
        tmp.push("x");
    }
    tmp
}

/// The process that made the temporary entry `name`, if it is one.
fn temp_owner(name: &[u8]) -> Option<i32> {
    let rest = name.strip_prefix(TEMP_PREFIX.as_bytes())?;
    let pid = rest.split(|&b| b == b'-').next()?;
    std::str::from_utf8(pid).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_in_the_target_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("css")).unwrap();
        let target = Target::open(t.path()).unwrap();
        // Opening a directory through the link fails; nothing is created outside.
        assert!(target.dir(Path::new("css")).is_err());
        assert!(target.dir(Path::new("css/sub")).is_err());
        // Making the directory replaces the link, and leaves its target alone.
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        target.ensure_dir(Path::new("css")).unwrap();
        assert!(t.path().join("css").symlink_metadata().unwrap().is_dir());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn the_component_walk_refuses_symlinks_too() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink("/", t.path().join("a/up")).unwrap();
        let target = Target::open(t.path()).unwrap();
        // The fallback, whatever the kernel has.
        let walk =
            |rel: &str| walk_beneath(target.root.as_ref().unwrap(), Path::new(rel)).map(|_| ());
        assert!(walk("a/b").is_ok());
        assert!(matches!(walk("a/up"), Err(WalkError::Sys(_))));
        assert!(matches!(walk("a/up/etc"), Err(WalkError::Sys(_))));
        assert!(matches!(walk("a/../.."), Err(WalkError::NotPlain)));
    }

    #[test]
    fn leftovers_of_dead_restores_are_removed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let mine = temp_name(OsStr::new("a"), |_| false);
        assert!(
            mine.to_string_lossy()
                .contains(&std::process::id().to_string())
        );
        // A process that has ended (a child reaped just now), and one that runs (pid 1).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        for name in [
            format!("{TEMP_PREFIX}{dead}-0123456789abcdef"),
            format!("{TEMP_PREFIX}1-0123456789abcdef"),
            "kept".to_string(),
        ] {
            std::fs::write(t.path().join("d").join(name), b"x").unwrap();
        }
        std::fs::write(t.path().join("d").join(&mine), b"x").unwrap();
        let target = Target::open(t.path()).unwrap();
        target.ensure_dir(Path::new("d")).unwrap();
        let left: std::collections::BTreeSet<_> = std::fs::read_dir(t.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let expected: std::collections::BTreeSet<_> = [
            format!("{TEMP_PREFIX}1-0123456789abcdef"),
            "kept".to_string(),
            mine.to_string_lossy().into_owned(),
        ]
        .into();
        assert_eq!(left, expected);
    }

    #[test]
    fn commit_replaces_files_and_empty_dirs_but_not_full_ones() {
        let t = tempfile::tempdir().unwrap();
        let target = Target::open(t.path()).unwrap();
        let root = target.dir(Path::new("")).unwrap();
        for (name, prepare) in [("file", 0), ("empty", 1), ("full", 2), ("link", 3)] {
            let p = t.path().join(name);
            match prepare {
                0 => std::fs::write(&p, b"old").unwrap(),
                1 => std::fs::create_dir(&p).unwrap(),
                2 => {
                    std::fs::create_dir(&p).unwrap();
                    std::fs::write(p.join("photo.jpg"), b"keep").unwrap();
                }
                _ => symlink("/etc/passwd", &p).unwrap(),
            }
            let tmp = temp_name(OsStr::new(name), |_| false);
            let mut f = target
                .open_temp(Path::new(name), &tmp, TempOpen::Create)
                .unwrap();
            std::io::Write::write_all(&mut f, b"new").unwrap();
            let r = target.commit(&root, &tmp, OsStr::new(name), Path::new(name));
            if prepare == 2 {
                assert!(r.is_err());
                assert_eq!(std::fs::read(p.join("photo.jpg")).unwrap(), b"keep");
                assert!(!t.path().join(&tmp).exists(), "temporary file left");
            } else {
                r.unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), b"new");
            }
        }
    }
}
