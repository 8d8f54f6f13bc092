//! `diff`: what changed between two snapshots, file by file, and what it costs in data.
//!
//! Both trees are walked side by side in name order. A subtree with the same id on both
//! sides is identical in every byte and every name below it, so it is skipped without being
//! read: the cost of a diff grows with the change, not with the snapshots.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::Repository;
use crate::repo::tree_walk::safe_name;

/// Which of the two snapshots alone has a path: the first (removed) or the second (added).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    First,
    Second,
}

/// How one path differs, with restic's letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Modifier {
    /// `+`: only in the second snapshot.
    #[serde(rename = "+")]
    Added,
    /// `-`: only in the first snapshot.
    #[serde(rename = "-")]
    Removed,
    /// `M`: a file's content or a link's target changed.
    #[serde(rename = "M")]
    Modified,
    /// `T`: the path is a different kind of thing (a file became a directory, say).
    #[serde(rename = "T")]
    TypeChanged,
    /// `U`: same content, other metadata (mode, owner, mtime, device number, extended
    /// attributes with ACLs and capabilities).
    #[serde(rename = "U")]
    Metadata,
}

impl Modifier {
    pub fn letter(self) -> char {
        match self {
            Modifier::Added => '+',
            Modifier::Removed => '-',
            Modifier::Modified => 'M',
            Modifier::TypeChanged => 'T',
            Modifier::Metadata => 'U',
        }
    }
}

/// One changed path, handed to the caller as the walk finds it.
pub struct Change<'a> {
    pub path: &'a Path,
    pub modifier: Modifier,
    pub before: Option<&'a Node>,
    pub after: Option<&'a Node>,
}

/// Counts of one side of the diff: what only the first (removed) or only the second
/// (added) snapshot has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SideStats {
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and device files.
    pub others: u64,
    /// Logical bytes of those files.
    pub file_bytes: u64,
    /// Data blobs held by the changed part of this side and not by the other side's
    /// changed part, and their plaintext and stored (compressed, sealed) bytes.
    pub data_blobs: u64,
    pub data_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    pub added: SideStats,
    pub removed: SideStats,
    /// Files whose content changed, and links whose target changed.
    pub modified: u64,
    pub type_changed: u64,
    /// Paths whose content is the same but whose metadata differs.
    pub metadata_changed: u64,
}

struct Walk<'a> {
    repo: &'a Repository,
    each: &'a mut dyn FnMut(&Change) -> Result<()>,
    stats: DiffStats,
    /// Data blob ids of the changed files of each side.
    blobs_before: Vec<Id>,
    blobs_after: Vec<Id>,
}

fn metadata_differs(a: &Node, b: &Node) -> bool {
    // ctime, inode, device and link count change whenever a tree is copied or restored;
    // they say nothing a user changed. Extended attributes hold ACLs and file
    // capabilities as well as users' own attributes.
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || a.mtime != b.mtime
        || a.rdev != b.rdev
        || a.xattrs != b.xattrs
}

fn content_differs(a: &Node, b: &Node) -> bool {
    // The same blobs with other holes between them are other bytes.
    a.size != b.size || a.content != b.content || a.target != b.target || a.holes != b.holes
}

impl Walk<'_> {
    fn report(
        &mut self,
        path: &Path,
        modifier: Modifier,
        before: Option<&Node>,
        after: Option<&Node>,
    ) -> Result<()> {
        (self.each)(&Change {
            path,
            modifier,
            before,
            after,
        })
    }

    fn load(&self, node: &Node) -> Result<Option<Tree>> {
        match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(id)) => self.repo.load_tree(&id).map(Some),
            _ => Ok(None),
        }
    }

    /// Counts a node that only one side has, with its blobs.
    fn count(&mut self, node: &Node, only: Only) {
        let (side, blobs) = if only == Only::Second {
            (&mut self.stats.added, &mut self.blobs_after)
        } else {
            (&mut self.stats.removed, &mut self.blobs_before)
        };
        match node.kind {
            NodeKind::File => {
                side.files += 1;
                side.file_bytes += node.size;
            }
            NodeKind::Dir => side.dirs += 1,
            _ => side.others += 1,
        }
        blobs.extend_from_slice(&node.content);
    }

    /// Reports and counts everything below `node` as only on one side.
    fn children_one_sided(&mut self, path: &Path, node: &Node, only: Only) -> Result<()> {
        if let Some(tree) = self.load(node)? {
            for child in &tree.nodes {
                self.one_sided(&path.join(safe_name(&child.name)?), child, only)?;
            }
        }
        Ok(())
    }

    /// Reports and counts `node` and everything below it as only on one side.
    fn one_sided(&mut self, path: &Path, node: &Node, only: Only) -> Result<()> {
        self.count(node, only);
        if only == Only::Second {
            self.report(path, Modifier::Added, None, Some(node))?;
        } else {
            self.report(path, Modifier::Removed, Some(node), None)?;
        }
        self.children_one_sided(path, node, only)
    }

    /// Compares a path present on both sides.
    fn both(&mut self, path: &Path, a: &Node, b: &Node) -> Result<()> {
        if a.kind != b.kind {
            // Counted as the old thing removed and the new one added, reported once. What
            // was below a directory is gone, and what is below a new one is new.
            self.stats.type_changed += 1;
            self.count(a, Only::First);
            self.count(b, Only::Second);
            self.report(path, Modifier::TypeChanged, Some(a), Some(b))?;
            self.children_one_sided(path, a, Only::First)?;
            return self.children_one_sided(path, b, Only::Second);
        }
        if a.kind == NodeKind::Dir {
            if metadata_differs(a, b) {
                self.stats.metadata_changed += 1;
                self.report(path, Modifier::Metadata, Some(a), Some(b))?;
            }
            if a.subtree != b.subtree {
                self.trees(path, a, b)?;
            }
            return Ok(());
        }
        if content_differs(a, b) {
            self.stats.modified += 1;
            self.blobs_before.extend_from_slice(&a.content);
            self.blobs_after.extend_from_slice(&b.content);
            self.report(path, Modifier::Modified, Some(a), Some(b))
        } else if metadata_differs(a, b) {
            self.stats.metadata_changed += 1;
            self.report(path, Modifier::Metadata, Some(a), Some(b))
        } else {
            Ok(())
        }
    }

    /// Merges the entries of two directories by name.
    fn trees(&mut self, path: &Path, a: &Node, b: &Node) -> Result<()> {
        let ta = self.load(a)?.unwrap_or_default();
        let tb = self.load(b)?.unwrap_or_default();
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let n = &ta.nodes[i];
                    self.one_sided(&path.join(safe_name(&n.name)?), n, Only::First)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let n = &tb.nodes[j];
                    self.one_sided(&path.join(safe_name(&n.name)?), n, Only::Second)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                    self.both(&path.join(safe_name(&x.name)?), x, y)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }
}

/// Sorts and deduplicates a list of ids in place.
fn distinct(v: &mut Vec<Id>) {
    v.sort_unstable();
    v.dedup();
}

/// Adds to `side` the blobs of `ours` that `theirs` lacks (both sorted and distinct).
fn count_only_in(
    repo: &Repository,
    ours: &[Id],
    theirs: &[Id],
    side: &mut SideStats,
) -> Result<()> {
    for id in ours {
        if theirs.binary_search(id).is_ok() {
            continue;
        }
        side.data_blobs += 1;
        if let Some(loc) = repo.index()?.get(BlobType::Data, id)? {
            side.data_bytes += u64::from(loc.entry.raw_length);
            side.stored_bytes += u64::from(loc.entry.length);
        }
    }
    Ok(())
}

/// Compares the snapshot trees `before` and `after`, calling `each` for every changed path
/// in name order, and returns the totals.
///
/// Blob counts compare the changed files of both sides, as restic's do: a blob that moved
/// from a changed file into an unchanged one (or back) is counted as added or removed.
pub fn diff(
    repo: &Repository,
    before: Id,
    after: Id,
    each: &mut dyn FnMut(&Change) -> Result<()>,
) -> Result<DiffStats> {
    let mut walk = Walk {
        repo,
        each,
        stats: DiffStats::default(),
        blobs_before: Vec::new(),
        blobs_after: Vec::new(),
    };
    if before != after {
        let root = Path::new("/");
        walk.trees(
            root,
            &crate::repo::tree_walk::root_node(before),
            &crate::repo::tree_walk::root_node(after),
        )?;
    }
    let Walk {
        mut stats,
        mut blobs_before,
        mut blobs_after,
        ..
    } = walk;
    distinct(&mut blobs_before);
    distinct(&mut blobs_after);
    count_only_in(repo, &blobs_after, &blobs_before, &mut stats.added)?;
    count_only_in(repo, &blobs_before, &blobs_after, &mut stats.removed)?;
    Ok(stats)
}
