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
    /// Nanoseconds since the Unix epoch.
    pub mtime: i64,
    pub ctime: i64,
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
// ones without them.
crate::format::cbor::versioned!(Tree, "tree", 2, 1);

impl Tree {
    pub fn new(nodes: Vec<Node>) -> Tree {
        Tree {
            v: Tree::VERSION,
            nodes,
        }
    }

    /// Finds a node by name (nodes are sorted by name).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
