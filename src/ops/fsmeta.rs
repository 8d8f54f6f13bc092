//! Reading a file's metadata into a tree node, and putting it back on restore.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};
use crate::format::tree::{FileTime, Node, NodeKind, Xattr, file_time, file_time_parts};
use crate::ops::long_path::reachable;
use crate::sysinfo::NameCache;

pub fn kind_of(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else {
        NodeKind::Blockdev
    }
}

/// A node for `name` from its `lstat` metadata. Content, subtree and link target are
/// filled in by the caller.
pub fn node_from_metadata(name: &std::ffi::OsStr, meta: &Metadata, names: &mut NameCache) -> Node {
    let kind = kind_of(meta);
    Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime: file_time(meta.mtime(), meta.mtime_nsec()),
        ctime: file_time(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        links: meta.nlink(),
        size: if kind == NodeKind::File {
            meta.len()
        } else {
            0
        },
        content: Vec::new(),
        subtree: None,
        target: Vec::new(),
        rdev: if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
            meta.rdev()
        } else {
            0
        },
        dev: (kind == NodeKind::File && meta.nlink() > 1).then(|| meta.dev()),
        xattrs: Vec::new(),
        holes: Vec::new(),
    }
}

/// True when a file may be taken over from the parent snapshot without reading it: the
/// same type, size, mtime, ctime and inode (restic's rule).
pub fn unchanged(current: &Node, parent: &Node) -> bool {
    current.kind == parent.kind
        && current.size == parent.size
        && current.mtime == parent.mtime
        && current.ctime == parent.ctime
        && current.inode == parent.inode
}

fn timespec(t: FileTime) -> TimeSpec {
    let (secs, nsec) = file_time_parts(t);
    TimeSpec::new(secs, nsec)
}

/// Sets owner (when running as root), mode and mtime of the restored entry `name` in the
/// directory `dir`, without following it if it is a symlink. Symlinks get owner and times
/// only (their mode means nothing on Linux). `path` names the entry in errors.
pub fn apply_metadata_at(dir: &impl AsFd, name: &OsStr, path: &Path, node: &Node) -> Result<()> {
    let err = |e: nix::Error| Error::io(path, std::io::Error::from(e));
    if Uid::effective().is_root() {
        nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
    }
    if node.kind != NodeKind::Symlink {
        // Only FIFOs and device nodes come here besides symlinks: nothing to follow.
        nix::sys::stat::fchmodat(
            dir,
            name,
            nix::sys::stat::Mode::from_bits_retain(node.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(err)?;
    }
    let mtime = timespec(node.mtime);
    utimensat(dir, name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(err)?;
    Ok(())
}

/// [`apply_metadata_at`] through an open descriptor of the file or directory at `path`
/// (`fchown`, `fchmod`, `futimens`): no path lookups, which a restore of many small files
/// would otherwise pay three times per file. `path` names the file in errors.
pub fn apply_file_metadata(file: &std::fs::File, path: &Path, node: &Node) -> Result<()> {
    let err = |e: nix::Error| Error::io(path, std::io::Error::from(e));
    if Uid::effective().is_root() {
        nix::unistd::fchown(
            file,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
        )
        .map_err(err)?;
    }
    // After the owner: chown clears the set-id bits that the mode may carry.
    nix::sys::stat::fchmod(file, nix::sys::stat::Mode::from_bits_retain(node.mode)).map_err(err)?;
    let mtime = timespec(node.mtime);
    nix::sys::stat::futimens(file, &mtime, &mtime).map_err(err)?;
    Ok(())
}

fn unsupported(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

/// The extended attributes of `path`, POSIX ACLs included, without following a symlink,
/// sorted by name. A file system without extended attributes gives none. Namespaces the
/// running user may not read (`trusted.*` unless root) are not listed by the kernel.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<Xattr>> {
    let path = reachable(path)?;
    let names = match xattr::list(&*path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        // None: removed since it was listed.
        if let Some(value) = xattr::get(&*path, &name)? {
            out.push(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Extended attributes that a restore could not set, by kind (namespace, or the ACL's full
/// name) and reason: a target that refuses a kind is reported once, not once per file.
#[derive(Default)]
pub struct XattrRefusals(std::sync::Mutex<BTreeMap<(String, String), (u64, PathBuf)>>);

/// One kind of extended attribute a restore could not set.
#[derive(Debug, serde::Serialize)]
pub struct XattrRefusal {
    /// `user`, `trusted`, `security`, or a `system.*` name.
    pub kind: String,
    pub reason: String,
    /// How many attributes were refused.
    pub count: u64,
    /// The first path met.
    pub first: PathBuf,
}

impl XattrRefusals {
    fn note(&self, name: &[u8], path: &Path, e: &std::io::Error) {
        let name = String::from_utf8_lossy(name);
        let kind = match name.split_once('.') {
            Some(("system", _)) | None => name.to_string(),
            Some((ns, _)) => ns.to_string(),
        };
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((kind, e.to_string()))
            .or_insert_with(|| (0, path.to_path_buf()))
            .0 += 1;
    }

    pub fn into_list(self) -> Vec<XattrRefusal> {
        let m = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        m.into_iter()
            .map(|((kind, reason), (count, first))| XattrRefusal {
                kind,
                reason,
                count,
                first,
            })
            .collect()
    }
}

/// Sets the node's extended attributes on an open file or directory, after its owner and
/// mode (a chown clears `security.capability`). Refusals are counted, not errors.
pub fn apply_file_xattrs(file: &std::fs::File, path: &Path, node: &Node, refused: &XattrRefusals) {
    use xattr::FileExt;
    for x in &node.xattrs {
        if let Err(e) = file.set_xattr(OsStr::from_bytes(&x.name), &x.value) {
            refused.note(&x.name, path, &e);
        }
    }
}

/// [`apply_file_xattrs`] for the entry `name` of the open directory `dir` that is not
/// opened itself (symlinks, FIFOs, device nodes): through `/proc/self/fd`, which names the
/// directory already resolved beneath the target, and `lsetxattr`, which does not follow
/// the entry.
pub fn apply_xattrs_at(
    dir: &impl std::os::fd::AsRawFd,
    name: &OsStr,
    path: &Path,
    node: &Node,
    refused: &XattrRefusals,
) {
    if node.xattrs.is_empty() {
        return;
    }
    let at = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    for x in &node.xattrs {
        if let Err(e) = xattr::set(&at, OsStr::from_bytes(&x.name), &x.value) {
            refused.note(&x.name, path, &e);
        }
    }
}
