//! Paths longer than the kernel takes. A path handed to a system call must be shorter
//! than `PATH_MAX` (4096 bytes with its NUL), yet folders nest deeper than that: each
//! name may have 255 bytes, and `mkdir` inside an open folder never checks the total.
//!
//! The backup walks the source by full paths, which is simple and fast for the paths that
//! fit. A path that does not fit is reached through a descriptor of its parent folder,
//! opened a piece at a time (each piece a relative path that fits), and named as
//! `/proc/self/fd/N/NAME`: the kernel follows the descriptor's magic link and looks up one
//! name in it, so every path API (listing, `lstat`, `open`, `readlink`, extended
//! attributes) works on it unchanged. systemd reaches files through `/proc/self/fd` the
//! same way. Without `/proc` the path stays too long, and the error says so.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

/// The longest path a system call takes, without its NUL.
pub const MAX_PATH_BYTES: usize = nix::libc::PATH_MAX as usize - 1;

/// A path the kernel accepts for the same file as the one asked for: the path itself
/// when it fits, else one through its parent folder's descriptor, which this holds open.
pub struct Reachable<'a> {
    path: Cow<'a, Path>,
    _parent: Option<OwnedFd>,
}

impl std::ops::Deref for Reachable<'_> {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Reachable<'_> {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// `path` in a form the kernel takes (see the module's comment). Symlinks on the way are
/// followed as a lookup of the whole path would follow them; the last name is not looked
/// up here.
pub fn reachable(path: &Path) -> std::io::Result<Reachable<'_>> {
    if path.as_os_str().len() <= MAX_PATH_BYTES {
        return Ok(Reachable {
            path: Cow::Borrowed(path),
            _parent: None,
        });
    }
    let too_long = || std::io::Error::from_raw_os_error(nix::libc::ENAMETOOLONG);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(too_long());
    };
    if !Path::new("/proc/self/fd").is_dir() {
        return Err(too_long());
    }
    let dir = open_in_pieces(parent)?;
    let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    short.push(name);
    Ok(Reachable {
        path: Cow::Owned(short),
        _parent: Some(dir),
    })
}

/// Opens the folder `path` (`O_PATH`) by relative lookups that each fit in a system call.
fn open_in_pieces(path: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut dir: Option<OwnedFd> = None;
    for piece in pieces(path) {
        dir = Some(match &dir {
            Some(d) => openat(d.as_fd(), piece.as_path(), flags, Mode::empty())?,
            None => openat(nix::fcntl::AT_FDCWD, piece.as_path(), flags, Mode::empty())?,
        });
    }
    dir.ok_or_else(|| std::io::Error::from_raw_os_error(nix::libc::ENOENT))
}

/// `path` cut at names into pieces that each fit in a system call, in order: the first
/// keeps a leading `/`, the others are relative to the folder the one before names.
pub fn pieces(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut piece = PathBuf::new();
    for c in path.components() {
        let name: &OsStr = match c {
            Component::RootDir => OsStr::new("/"),
            Component::CurDir => OsStr::new("."),
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(n) => n,
            Component::Prefix(_) => continue,
        };
        if !piece.as_os_str().is_empty()
            && piece.as_os_str().len() + 1 + name.len() > MAX_PATH_BYTES
        {
            out.push(std::mem::take(&mut piece));
        }
        piece.push(name);
    }
    if !piece.as_os_str().is_empty() {
        out.push(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes folders of 200-byte names below `root` until the path passes `len` bytes.
    fn deep(root: &Path, len: usize) -> PathBuf {
        let name = "n".repeat(200);
        let mut dir =
            nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let mut path = root.to_path_buf();
        while path.as_os_str().len() <= len {
            nix::sys::stat::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            dir = openat(&dir, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            path.push(&name);
        }
        path
    }

    #[test]
    fn paths_past_path_max_are_reached_through_their_parent() {
        let t = tempfile::tempdir().unwrap();
        let dir = deep(t.path(), 9000);
        let file = dir.join("f");
        assert!(std::fs::write(&file, b"x").is_err(), "the plain path fits");
        let r = reachable(&file).unwrap();
        assert!(r.as_os_str().len() < 64, "{}", r.display());
        std::fs::write(&*r, b"deep").unwrap();
        drop(r);
        assert_eq!(std::fs::read(&*reachable(&file).unwrap()).unwrap(), b"deep");
        let listed: Vec<_> = std::fs::read_dir(&*reachable(&dir).unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listed, ["f"]);
        let cut = pieces(&file);
        assert!(cut.len() >= 3, "{}", cut.len());
        assert!(cut.iter().all(|p| p.as_os_str().len() <= MAX_PATH_BYTES));
        assert_eq!(cut.iter().collect::<PathBuf>(), file);
        // A short path is given back as it is.
        assert_eq!(&*reachable(t.path()).unwrap(), t.path());
    }
}
