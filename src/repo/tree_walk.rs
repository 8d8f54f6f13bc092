//! Paths and walks in a repository's trees: the one place that turns tree names into
//! paths (refusing names that could leave a restore target) and visits nodes or trees.

use std::collections::{HashMap, HashSet};
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
        dev: None,
        xattrs: Vec::new(),
        holes: Vec::new(),
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
    Error::PathNotInSnapshot(path.to_path_buf())
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

/// A computation over a repository's trees, one value per distinct tree, each made from
/// the values of its subtrees: what `stats` sums and `check` finds damaged.
pub trait TreeFold {
    type Value;

    /// The tree `id`, or `None` when it cannot be had (the fold records why, and its
    /// value says so). An error stops the whole fold.
    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>>;

    /// The value of tree `id` (`tree` is `None` when it could not be loaded), made from
    /// the values of its subtrees, which `done` holds.
    fn value(
        &mut self,
        id: &Id,
        tree: Option<&Tree>,
        done: &HashMap<Id, Self::Value>,
    ) -> Result<Self::Value>;
}

/// Computes `fold`'s value of every tree below `root` (itself included) that `done` does
/// not hold yet, subtrees before the trees naming them, each distinct tree once however
/// many snapshots or directories share it. It keeps its own stack, so a deep tree cannot
/// exhaust the thread's, and holds only the trees on the path to the current one.
pub fn fold_trees<F: TreeFold>(
    repo: &Repository,
    root: Id,
    fold: &mut F,
    done: &mut HashMap<Id, F::Value>,
) -> Result<()> {
    enum Step {
        Enter(Id),
        /// Every subtree is done: make its value.
        Leave(Id, Option<Tree>),
    }
    // Trees entered and not yet left: meeting one again is a cycle, which content
    // addressing rules out unless the repository is damaged or forged.
    let mut open = HashSet::new();
    let mut stack = vec![Step::Enter(root)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Enter(id) => {
                if done.contains_key(&id) {
                    continue;
                }
                if !open.insert(id) {
                    return Err(Error::corrupt(
                        "tree",
                        format!("{id} contains itself through its subtrees"),
                    ));
                }
                let tree = fold.load(repo, &id)?;
                let subtrees: Vec<Id> = tree
                    .iter()
                    .flat_map(|t| t.nodes.iter().filter_map(|n| n.subtree))
                    .filter(|sub| !done.contains_key(sub))
                    .collect();
                stack.push(Step::Leave(id, tree));
                stack.extend(subtrees.into_iter().rev().map(Step::Enter));
            }
            Step::Leave(id, tree) => {
                open.remove(&id);
                let value = fold.value(&id, tree.as_ref(), done)?;
                done.insert(id, value);
            }
        }
    }
    Ok(())
}

/// Visits every distinct tree once, however many snapshots or directories share it: the
/// walk that prune makes over whole snapshots to find what they need.
#[derive(Default)]
pub struct DistinctTrees {
    seen: HashMap<Id, ()>,
}

impl DistinctTrees {
    /// Calls `each` with every tree reachable from `root` that no earlier walk of this
    /// value visited. A tree that cannot be read stops the walk with `failed`'s error,
    /// given the tree's id and why.
    pub fn walk(
        &mut self,
        repo: &Repository,
        root: Id,
        failed: &dyn Fn(&Id, Error) -> Error,
        each: &mut dyn FnMut(&Id, &Tree) -> Result<()>,
    ) -> Result<()> {
        struct Visit<'f> {
            failed: &'f dyn Fn(&Id, Error) -> Error,
            each: &'f mut dyn FnMut(&Id, &Tree) -> Result<()>,
        }
        impl TreeFold for Visit<'_> {
            type Value = ();
            fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
                let tree = repo.load_tree(id).map_err(|e| (self.failed)(id, e))?;
                (self.each)(id, &tree)?;
                Ok(Some(tree))
            }
            fn value(&mut self, _: &Id, _: Option<&Tree>, _: &HashMap<Id, ()>) -> Result<()> {
                Ok(())
            }
        }
        fold_trees(repo, root, &mut Visit { failed, each }, &mut self.seen)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::cbor;
    use crate::format::pack::BlobType;
    use crate::repo::InitOptions;
    use crate::repo::testing::store_packs;
    use crate::store::memory::MemoryBackend;
    use crate::store::retry::RetryPolicy;

    fn node(name: &str, kind: NodeKind, subtree: Option<Id>) -> Node {
        let mut n = root_node(Id::default());
        n.name = name.as_bytes().to_vec();
        n.kind = kind;
        n.subtree = subtree;
        n
    }

    /// Stores `trees` in one pack and one index file; returns their ids.
    fn store_trees(repo: &Repository, trees: &[Tree]) -> Vec<Id> {
        let plains: Vec<Vec<u8>> = trees.iter().map(cbor::encode).collect();
        store_packs(repo, BlobType::Tree, &[plains])
    }

    /// Counts the files below each tree; a tree that cannot be read counts none.
    #[derive(Default)]
    struct CountFiles {
        loads: HashMap<Id, u32>,
    }

    impl TreeFold for CountFiles {
        type Value = u64;
        fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
            *self.loads.entry(*id).or_default() += 1;
            Ok(repo.load_tree(id).ok())
        }
        fn value(&mut self, _: &Id, tree: Option<&Tree>, done: &HashMap<Id, u64>) -> Result<u64> {
            Ok(tree
                .iter()
                .flat_map(|t| &t.nodes)
                .map(|n| match n.subtree {
                    Some(sub) => done[&sub],
                    None => u64::from(n.kind == NodeKind::File),
                })
                .sum())
        }
    }

    #[test]
    fn each_distinct_tree_is_loaded_once_and_summed_from_its_subtrees() {
        let store: Arc<dyn crate::store::Backend> = Arc::new(MemoryBackend::new());
        let retry = RetryPolicy::default();
        Repository::init(store.clone(), b"walk", &InitOptions::default(), &retry).unwrap();
        let repo = Repository::open(store, b"walk", None, &retry).unwrap();
        let leaf = Tree::new(vec![
            node("f", NodeKind::File, None),
            node("g", NodeKind::File, None),
        ]);
        let leaf_id = store_trees(&repo, std::slice::from_ref(&leaf))[0];
        let shared = Tree::new(vec![
            node("x", NodeKind::Dir, Some(leaf_id)),
            node("y", NodeKind::Dir, Some(leaf_id)),
        ]);
        let shared_id = store_trees(&repo, std::slice::from_ref(&shared))[0];
        let missing = Id([7; 32]);
        let root = Tree::new(vec![
            node("a", NodeKind::Dir, Some(shared_id)),
            node("b", NodeKind::Dir, Some(leaf_id)),
            node("gone", NodeKind::Dir, Some(missing)),
            node("top", NodeKind::File, None),
        ]);
        let root_id = store_trees(&repo, &[root])[0];

        let mut fold = CountFiles::default();
        let mut done = HashMap::new();
        fold_trees(&repo, root_id, &mut fold, &mut done).unwrap();
        assert_eq!(done[&leaf_id], 2);
        assert_eq!(done[&shared_id], 4);
        assert_eq!(done[&missing], 0);
        assert_eq!(done[&root_id], 7);
        assert!(fold.loads.values().all(|n| *n == 1), "{:?}", fold.loads);
        assert_eq!(fold.loads.len(), 4);

        // A second root sharing trees already done loads only itself.
        let other = Tree::new(vec![node("s", NodeKind::Dir, Some(shared_id))]);
        let other_id = store_trees(&repo, &[other])[0];
        fold_trees(&repo, other_id, &mut fold, &mut done).unwrap();
        assert_eq!(done[&other_id], 4);
        assert_eq!(fold.loads.len(), 5);
        assert!(fold.loads.values().all(|n| *n == 1));
    }
}
