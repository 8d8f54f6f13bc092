//! `find`: which files and folders of which snapshots have a name that matches, without
//! restoring anything. Each distinct tree is read once however many snapshots share it
//! (`fold_trees`): its matches, relative to it, are its value.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{FileTime, Node, NodeKind, Tree};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::tree_walk::{TreeFold, fold_trees};

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct FindQuery {
    /// Glob patterns (`*`, `?`, `[…]`, `{a,b}`) matched against names; any one may match.
    pub patterns: Vec<String>,
    pub ignore_case: bool,
    /// Only entries modified at or after this time.
    pub oldest: Option<FileTime>,
    /// Only entries modified at or before this time.
    pub newest: Option<FileTime>,
}

/// One entry found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Found {
    /// Path bytes in the snapshot (lossy text for JSON: names need not be UTF-8).
    #[serde(skip)]
    pub path: Vec<u8>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
    pub mtime: FileTime,
}

/// The matches in one snapshot.
#[derive(Debug)]
pub struct SnapshotMatches {
    pub id: Id,
    pub snapshot: Snapshot,
    pub found: Vec<Found>,
}

/// Looks in `snapshots`; returns those with matches, newest first, their entries in path
/// order.
pub fn find(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    query: &FindQuery,
    progress: &dyn Progress,
) -> Result<Vec<SnapshotMatches>> {
    let mut fold = Matcher {
        names: glob_set(query)?,
        query,
    };
    let mut done = HashMap::new();
    let mut order: Vec<&(Id, Snapshot)> = snapshots.iter().collect();
    order.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.0.cmp(&b.0)));
    progress.start("snapshots", order.len() as u64);
    let mut out = Vec::new();
    for (id, snap) in order {
        fold_trees(repo, snap.tree, &mut fold, &mut done)?;
        let found: Vec<Found> = done
            .get(&snap.tree)
            .into_iter()
            .flatten()
            .map(|f: &Found| Found {
                path: [b"/".as_slice(), &f.path].concat(),
                ..f.clone()
            })
            .collect();
        if !found.is_empty() {
            out.push(SnapshotMatches {
                id: *id,
                snapshot: snap.clone(),
                found,
            });
        }
        progress.advance(1);
    }
    Ok(out)
}

fn glob_set(query: &FindQuery) -> Result<GlobSet> {
    if query.patterns.is_empty() {
        return Err(Error::Invalid(
            "give a pattern to look for, such as '*.conf' or 'report-2026-??.pdf'".into(),
        ));
    }
    let mut set = GlobSetBuilder::new();
    for p in &query.patterns {
        if p.contains('/') {
            return Err(Error::Invalid(format!(
                "pattern {p:?}: find matches names, not paths; leave out the folders (`--path` chooses snapshots by their backup paths)"
            )));
        }
        let glob = GlobBuilder::new(p)
            .case_insensitive(query.ignore_case)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::Invalid(format!("pattern {p:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| Error::Invalid(format!("patterns: {e}")))
}

struct Matcher<'q> {
    names: GlobSet,
    query: &'q FindQuery,
}

impl Matcher<'_> {
    fn wanted(&self, node: &Node) -> bool {
        let name = String::from_utf8_lossy(&node.name);
        self.names.is_match(name.as_ref())
            && self.query.oldest.is_none_or(|t| node.mtime >= t)
            && self.query.newest.is_none_or(|t| node.mtime <= t)
    }
}

/// A tree's value: its matching entries, paths relative to it.
impl TreeFold for Matcher<'_> {
    type Value = Vec<Found>;

    fn load(&mut self, repo: &Repository, id: &Id) -> Result<Option<Tree>> {
        // A tree that cannot be read is damage: `check` names it; find stops and says so.
        repo.load_tree(id).map(Some)
    }

    fn value(
        &mut self,
        _: &Id,
        tree: Option<&Tree>,
        done: &HashMap<Id, Vec<Found>>,
    ) -> Result<Vec<Found>> {
        let mut found = Vec::new();
        for node in tree.map(|t| t.nodes.as_slice()).unwrap_or_default() {
            if self.wanted(node) {
                found.push(Found {
                    path: node.name.clone(),
                    kind: node.kind.as_str(),
                    size: node.size,
                    mtime: node.mtime,
                });
            }
            if node.kind == NodeKind::Dir
                && let Some(below) = node.subtree.and_then(|s| done.get(&s))
            {
                for f in below {
                    found.push(Found {
                        path: [node.name.as_slice(), b"/", &f.path].concat(),
                        ..f.clone()
                    });
                }
            }
        }
        Ok(found)
    }
}
