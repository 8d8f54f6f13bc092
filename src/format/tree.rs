//! Trees: one directory's entries, stored as a blob of type tree. Nodes are sorted by their
//! raw name bytes so that an unchanged directory encodes to the same bytes and dedups.

use serde::{Deserialize, Serialize};

use crate::format::cbor::Versioned;
use crate::format::id::Id;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Chardev,
    Blockdev,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::Socket => "socket",
            NodeKind::Chardev => "chardev",
            NodeKind::Blockdev => "blockdev",
        }
    }
}

/// A file's time in nanoseconds since the Unix epoch. File systems keep 64-bit seconds
/// (ext4 reaches 2446, XFS 2486, btrfs further), which 64-bit nanoseconds cover only from
/// 1677 to 2262; 128 bits hold every time exactly. Encoded as a CBOR integer, so a time
/// inside the 64-bit range has the same bytes it had in version 2 trees.
pub type FileTime = i128;

/// The [`FileTime`] of `secs` seconds and `nsec` nanoseconds, as `stat` gives them.
pub fn file_time(secs: i64, nsec: i64) -> FileTime {
    FileTime::from(secs) * 1_000_000_000 + FileTime::from(nsec)
}

/// Seconds and nanoseconds (0 to 999,999,999) of `t`, as `utimensat` takes them. A time
/// beyond 64-bit seconds (which only a forged tree holds) is clamped to their range.
pub fn file_time_parts(t: FileTime) -> (i64, i64) {
    let secs = t.div_euclid(1_000_000_000);
    let nsec = t.rem_euclid(1_000_000_000) as i64;
    match i64::try_from(secs) {
        Ok(secs) => (secs, nsec),
        Err(_) if secs < 0 => (i64::MIN, 0),
        Err(_) => (i64::MAX, 999_999_999),
    }
}

/// `t` as a date and time in UTC, for display; `None` outside the years -262,143 to
/// 262,142, which chrono cannot show.
pub fn file_time_utc(t: FileTime) -> Option<chrono::DateTime<chrono::Utc>> {
    let (secs, nsec) = file_time_parts(t);
    chrono::DateTime::from_timestamp(secs, nsec as u32)
}

/// True when `t` fits in the 64-bit nanoseconds of version 2 trees.
fn fits_version_2(t: FileTime) -> bool {
    i64::try_from(t).is_ok()
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Raw name bytes: names need not be UTF-8.
    #[serde(with = "crate::format::id::bytes")]
    pub name: Vec<u8>,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits and set-id/sticky bits (st_mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification and status-change times, in nanoseconds since the Unix epoch
    /// ([`FileTime`]).
    pub mtime: FileTime,
    pub ctime: FileTime,
    pub inode: u64,
    /// Hard link count at backup time.
    pub links: u64,
    /// Bytes of content (files), 0 otherwise.
    pub size: u64,
    /// Data blob ids in file order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// Tree blob of the directory (dirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Link target bytes (symlinks).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "crate::format::id::bytes"
    )]
    pub target: Vec<u8>,
    /// Device number (character and block devices).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Device of the file system holding it (version 2 trees; files with more than one
    /// link only): restore links files of equal `dev` and `inode` together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    /// Extended attributes, POSIX ACLs included, sorted by name (version 2 trees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
    /// Holes of a sparse file, ascending and apart (version 2 trees): `content` holds the
    /// bytes between them, and the file reads as zeros inside them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holes: Vec<Hole>,
}

/// One extended attribute: its full name (`user.comment`, `security.capability`,
/// `system.posix_acl_access`) and value, both raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "crate::format::id::bytes")]
    pub name: Vec<u8>,
    #[serde(with = "crate::format::id::bytes")]
    pub value: Vec<u8>,
}

/// A hole of a sparse file: `length` bytes from file offset `offset`, stored as
/// `[offset, length]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct Hole {
    pub offset: u64,
    pub length: u64,
}

impl From<(u64, u64)> for Hole {
    fn from((offset, length): (u64, u64)) -> Hole {
        Hole { offset, length }
    }
}

impl From<Hole> for (u64, u64) {
    fn from(h: Hole) -> (u64, u64) {
        (h.offset, h.length)
    }
}

impl Node {
    /// Whether restore should link this file to others of the same device and inode.
    pub fn link_key(&self) -> Option<(u64, u64)> {
        match (self.kind, self.dev) {
            (NodeKind::File, Some(dev)) if self.links > 1 => Some((dev, self.inode)),
            _ => None,
        }
    }

    /// Where the content's bytes lie in the file.
    pub fn layout(&self) -> Layout<'_> {
        Layout { holes: &self.holes }
    }
}

/// Maps offsets of a file's content (its bytes outside holes, in order) to offsets of the
/// file. Without holes both are the same.
pub struct Layout<'a> {
    holes: &'a [Hole],
}

impl Layout<'_> {
    /// The pieces of `len` content bytes from content offset `offset`, as (file offset,
    /// range of those bytes), in order: one piece unless a hole falls inside.
    pub fn pieces(&self, offset: u64, len: usize) -> Vec<(u64, std::ops::Range<usize>)> {
        let mut out = Vec::with_capacity(1);
        // The holes before `offset`'s byte shift it; `skipped` is their total.
        let mut skipped = 0u64;
        let mut i = 0;
        while i < self.holes.len() && self.holes[i].offset <= offset + skipped {
            skipped += self.holes[i].length;
            i += 1;
        }
        let mut done = 0usize;
        while done < len {
            let file_at = offset + done as u64 + skipped;
            let room = self
                .holes
                .get(i)
                .map_or(u64::MAX, |h| h.offset.saturating_sub(file_at));
            let take = (len - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            if take == 0 {
                skipped += self.holes[i].length;
                i += 1;
                continue;
            }
            out.push((file_at, done..done + take));
            done += take;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cbor::{decode, encode};

    fn file(name: &str, mtime: FileTime) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime,
            ctime: 1,
            inode: 1,
            links: 1,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: Vec::new(),
            rdev: 0,
            dev: None,
            xattrs: Vec::new(),
            holes: Vec::new(),
        }
    }

    /// The version 2 node, field for field: times were `i64`.
    #[derive(Serialize)]
    struct NodeV2<'a> {
        #[serde(with = "crate::format::id::bytes")]
        name: &'a [u8],
        #[serde(rename = "type")]
        kind: NodeKind,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        ctime: i64,
        inode: u64,
        links: u64,
        size: u64,
    }

    #[derive(Serialize)]
    struct TreeV2<'a> {
        v: u64,
        nodes: Vec<NodeV2<'a>>,
    }

    #[test]
    fn times_inside_64_bit_nanoseconds_keep_the_version_2_bytes() {
        for mtime in [0i64, -1, 1_780_272_000_123_456_789, i64::MIN, i64::MAX] {
            let tree = Tree::new(vec![file("a", mtime.into())]);
            assert_eq!(tree.v, 2);
            let v2 = TreeV2 {
                v: 2,
                nodes: vec![NodeV2 {
                    name: b"a",
                    kind: NodeKind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime,
                    ctime: 1,
                    inode: 1,
                    links: 1,
                    size: 0,
                }],
            };
            assert_eq!(encode(&tree), encode(&v2), "mtime {mtime}");
        }
    }

    #[test]
    fn times_beyond_2262_and_before_1677_make_a_version_3_tree() {
        // 2300-01-01 12:00:00.123456789 and 1600-06-01, as `stat` gives them.
        let later = file_time(10_413_835_200, 123_456_789);
        let earlier = file_time(-11_670_912_000, 500_000_000);
        for t in [
            later,
            earlier,
            file_time(i64::MAX, 999_999_999),
            file_time(i64::MIN, 0),
        ] {
            let tree = Tree::new(vec![file("a", 5), file("b", t)]);
            assert_eq!(tree.v, 3);
            let back: Tree = decode(&encode(&tree), "t").unwrap();
            assert_eq!(back, tree);
        }
        assert_eq!(file_time_parts(later), (10_413_835_200, 123_456_789));
        assert_eq!(file_time_parts(earlier), (-11_670_912_000, 500_000_000));
        assert_eq!(file_time_parts(-1), (-1, 999_999_999));
        assert_eq!(
            file_time_utc(later).unwrap().to_rfc3339(),
            "2300-01-01T12:00:00.123456789+00:00"
        );
        // Only a forged tree holds more than 64-bit seconds: clamped, never a panic.
        assert_eq!(file_time_parts(FileTime::MAX), (i64::MAX, 999_999_999));
        assert_eq!(file_time_parts(FileTime::MIN), (i64::MIN, 0));
        assert!(file_time_utc(FileTime::MAX).is_none());
    }

    #[test]
    fn content_offsets_step_over_holes() {
        let holes = [
            Hole {
                offset: 0,
                length: 10,
            },
            Hole {
                offset: 15,
                length: 5,
            },
            Hole {
                offset: 30,
                length: 100,
            },
        ];
        let l = Layout { holes: &holes };
        // File: hole 0..10, data 10..15, hole 15..20, data 20..30, hole 30..130, data 130..
        assert_eq!(l.pieces(0, 5), vec![(10, 0..5)]);
        assert_eq!(l.pieces(0, 8), vec![(10, 0..5), (20, 5..8)]);
        assert_eq!(l.pieces(5, 10), vec![(20, 0..10)]);
        assert_eq!(
            l.pieces(3, 20),
            vec![(13, 0..2), (20, 2..12), (130, 12..20)]
        );
        assert_eq!(l.pieces(15, 4), vec![(130, 0..4)]);
        assert_eq!(Layout { holes: &[] }.pieces(7, 3), vec![(7, 0..3)]);
        assert!(l.pieces(4, 0).is_empty());
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub v: u64,
    pub nodes: Vec<Node>,
}

// Version 2 adds `dev`, `xattrs` and `holes` to nodes; version 1 trees read as version 2
// ones without them. Version 3 lets `mtime` and `ctime` leave the 64-bit range; it is
// written only for a tree that needs it, so every other tree keeps the bytes (and so the
// id) it had, and a cairn that knows only version 2 still reads all trees it can.
crate::format::cbor::versioned!(Tree, "tree", 3, 1);

impl Tree {
    pub fn new(nodes: Vec<Node>) -> Tree {
        let v = if nodes
            .iter()
            .all(|n| fits_version_2(n.mtime) && fits_version_2(n.ctime))
        {
            2
        } else {
            Tree::VERSION
        };
        Tree { v, nodes }
    }

    /// Finds a node by name (nodes are sorted by name).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
