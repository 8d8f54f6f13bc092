//! Which files and folders of which snapshots damage reaches: every tree of every
//! snapshot is opened, and every blob it names is looked up in the index and against the
//! packs and blobs the pack check found unusable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::error::Result;
use crate::format::id::Id;
use crate::format::pack::BlobType;
use crate::format::tree::{NodeKind, Tree};
use crate::repo::Repository;
use crate::repo::tree_walk::TreeFold;
use crate::store::{Kind, ObjectName};

use super::Problem;

/// What a problem says of a blob that no index lists.
pub(super) const NOT_INDEXED: &str = "is in no index";

/// Finds the damaged paths of snapshot trees, each distinct tree once (`fold_trees`), so
/// that every snapshot sharing a damaged subtree is reported.
pub(super) struct DamagedPaths<'a> {
    pub(super) repo: &'a Repository,
    pub(super) bad_packs: &'a HashSet<Id>,
    /// Blobs that failed to open, by the pack they failed in: a copy elsewhere is sound.
    pub(super) bad_blobs: &'a HashSet<(Id, BlobType, Id)>,
    pub(super) problems: BTreeMap<String, Problem>,
    pub(super) marked: &'a HashSet<Id>,
    pub(super) marked_needed: BTreeSet<Id>,
}

impl DamagedPaths<'_> {
    /// Whether a blob can be read; records why not.
    fn blob_ok(&mut self, kind: BlobType, id: &Id) -> bool {
        let what = match kind {
            BlobType::Data => format!("data blob {id}"),
            BlobType::Tree => format!("tree {id}"),
        };
        let loc = match self.repo.index().and_then(|index| index.get(kind, id)) {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: format!("{NOT_INDEXED}: the repository is missing it"),
                });
                return false;
            }
            Err(e) => {
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: e.detail(),
                });
                return false;
            }
        };
        if self.marked.contains(&loc.pack)
            && !self
                .repo
                .index()
                .and_then(|index| index.contains(kind, id))
                .unwrap_or(false)
        {
            self.marked_needed.insert(loc.pack);
        }
        !(self.bad_packs.contains(&loc.pack) || self.bad_blobs.contains(&(loc.pack, kind, *id)))
    }
}

/// A tree's value is its damaged paths, relative to it; empty for a sound tree, `[""]`
/// for one that cannot be read.
impl TreeFold for DamagedPaths<'_> {
    type Value = Vec<String>;

    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
        if !self.blob_ok(BlobType::Tree, id) {
            return Ok(None);
        }
        match repo.load_tree(id) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                let what = format!("tree {id}");
                // The pack it was read from, so that the damaged object is named.
                let pack = repo
                    .index()
                    .and_then(|index| index.get(BlobType::Tree, id))
                    .ok()
                    .flatten()
                    .map(|loc| format!("in {}: ", ObjectName::new(Kind::Pack, &loc.pack)))
                    .unwrap_or_default();
                self.problems.entry(what.clone()).or_insert(Problem {
                    object: what,
                    error: format!("{pack}{}", e.detail()),
                });
                Ok(None)
            }
        }
    }

    fn value(
        &mut self,
        _: &Id,
        tree: Option<&Tree>,
        done: &HashMap<Id, Vec<String>>,
    ) -> Result<Vec<String>> {
        let Some(tree) = tree else {
            return Ok(vec![String::new()]);
        };
        let mut damaged = Vec::new();
        for node in &tree.nodes {
            let name = String::from_utf8_lossy(&node.name).into_owned();
            match node.kind {
                NodeKind::Dir => {
                    let below = node.subtree.and_then(|sub| done.get(&sub));
                    for p in below.into_iter().flatten() {
                        damaged.push(join(&name, p));
                    }
                }
                NodeKind::File => {
                    let mut ok = true;
                    for blob in &node.content {
                        ok &= self.blob_ok(BlobType::Data, blob);
                    }
                    if !ok {
                        damaged.push(name);
                    }
                }
                _ => {}
            }
        }
        Ok(damaged)
    }
}

fn join(name: &str, rest: &str) -> String {
    if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{rest}")
    }
}
