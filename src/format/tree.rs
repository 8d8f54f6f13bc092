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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub v: u64,
    pub nodes: Vec<Node>,
}

crate::format::cbor::versioned!(Tree, "tree", 1);

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
