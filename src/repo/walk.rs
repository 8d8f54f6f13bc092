//! Paths and walks in a repository's trees: the one place that turns tree names into
//! paths (refusing names that could leave a restore target) and visits nodes or trees.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::Repository;

/// A name from a tree, checked to be one plain path component: a damaged or hostile tree
/// must not write outside the target (`..`, `/`, empty names).
pub fn safe_name(name: &[u8]) -> Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::corrupt(
            "tree",
            format!(
                "holds an invalid file name {:?}",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok(OsStr::from_bytes(name))
}

/// The components of an absolute snapshot path (`/home/me/x` → `home`, `me`, `x`).
pub fn path_components(path: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: give a path inside the snapshot without `..`",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// The root of a snapshot as a node, so that `/` can be listed and restored like any dir.
pub fn root_node(tree: Id) -> Node {
    Node {
        name: Vec::new(),
        kind: NodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: 0,
        ctime: 0,
        inode: 0,
        links: 0,
        size: 0,
        content: Vec::new(),
        subtree: Some(tree),
        target: Vec::new(),
        rdev: 0,
    }
}

/// Finds the node at an absolute path of a snapshot.
pub fn find_node(repo: &Repository, root: Id, path: &Path) -> Result<Node> {
    let mut node = root_node(root);
    for comp in path_components(path)? {
        let sub = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(sub)) => sub,
            _ => return Err(not_in_snapshot(path)),
        };
        let tree = repo.load_tree(&sub)?;
        node = tree
            .find(&comp)
            .cloned()
            .ok_or_else(|| not_in_snapshot(path))?;
    }
    Ok(node)
}

fn not_in_snapshot(path: &Path) -> Error {
    Error::Invalid(format!(
        "{} is not in the snapshot (see `cairn ls SNAPSHOT`)",
        path.display()
    ))
}

/// Calls `each` with every node below `node` (itself included when `with_self`), depth
/// first in name order, with its absolute snapshot path.
pub fn walk_nodes(
    repo: &Repository,
    path: &Path,
    node: &Node,
    with_self: bool,
    each: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    if with_self {
        each(path, node)?;
    }
    if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
        let tree = repo.load_tree(&sub)?;
        for child in &tree.nodes {
            let p = path.join(safe_name(&child.name)?);
            walk_nodes(repo, &p, child, true, each)?;
        }
    }
    Ok(())
}

/// Visits every distinct tree once, however many snapshots or directories share it: the
/// walk that prune, stats and check make over whole snapshots.
#[derive(Default)]
pub struct DistinctTrees {
    seen: HashSet<Id>,
}

impl DistinctTrees {
    /// Calls `each` with every tree reachable from `root` that no earlier walk of this
    /// value visited, depth first. A tree that cannot be read stops the walk with
    /// `failed`'s error, given the tree's id and why.
    pub fn walk(
        &mut self,
        repo: &Repository,
        root: Id,
        failed: &dyn Fn(&Id, Error) -> Error,
        each: &mut dyn FnMut(&Id, &Tree) -> Result<()>,
    ) -> Result<()> {
        let mut stack = vec![root];
        while let Some(tree_id) = stack.pop() {
            if !self.seen.insert(tree_id) {
                continue;
            }
            let tree = repo.load_tree(&tree_id).map_err(|e| failed(&tree_id, e))?;
            for node in &tree.nodes {
                if let Some(sub) = node.subtree
                    && !self.seen.contains(&sub)
                {
                    stack.push(sub);
                }
            }
            each(&tree_id, &tree)?;
        }
        Ok(())
    }
}
