//! Which entries of a snapshot a restore takes: `--include` paths and patterns,
//! `--exclude` patterns, and where `--delete` may remove what the snapshot lacks.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::ops::patterns::Patterns;
use crate::repo::Repository;
use crate::repo::tree_walk::safe_name;

/// What the user chose; everything when empty.
#[derive(Clone, Default)]
pub struct Choice {
    /// Absolute snapshot paths (`--include` naming an entry): each with all below it.
    pub paths: Vec<PathBuf>,
    /// `--include`/`--iinclude` patterns: a matching entry with all below it.
    pub include: Patterns,
    /// `--exclude`/`--iexclude` patterns: a matching entry and all below it are left out,
    /// even inside an included folder, and `--delete` leaves what matches in the target.
    pub exclude: Patterns,
}

/// What the walk does with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Restore it and all below it (but what `exclude` matches).
    All,
    /// A folder that may hold something chosen: walked, and made only if it does.
    Passage,
    Skip,
}

impl Choice {
    fn chooses_all(&self) -> bool {
        self.paths.is_empty() && self.include.is_empty()
    }

    /// The selection of `path` (absolute in the snapshot), given whether its folder was
    /// taken whole.
    pub fn select(&self, path: &Path, is_dir: bool, within_all: bool) -> Selection {
        // The snapshot root itself is never excluded: it is the target.
        if path != Path::new("/") && self.exclude.matches(path, is_dir) {
            return Selection::Skip;
        }
        if within_all
            || self.chooses_all()
            || self.paths.iter().any(|p| path.starts_with(p))
            || self.include.matches(path, is_dir)
        {
            return Selection::All;
        }
        let on_the_way = self.paths.iter().any(|p| p.starts_with(path));
        if is_dir && (on_the_way || !self.include.is_empty()) {
            Selection::Passage
        } else {
            Selection::Skip
        }
    }

    /// Whether the whole snapshot root is chosen, so that `--delete` would clean the
    /// target itself.
    pub fn whole_root(&self) -> bool {
        self.chooses_all()
    }
}

/// One entry met by the walk: where it goes and which directory holds it.
pub(crate) struct Visit<'a> {
    /// Below the target (`home/me/x` for the snapshot's `/home/me/x`).
    pub(super) rel: &'a Path,
    pub(super) node: &'a Node,
    /// The tree of the directory holding it (none for the snapshot root), which tells
    /// whether a temporary name is free.
    pub(super) siblings: Option<&'a Tree>,
    /// The directory's own tree, for a directory.
    pub(super) tree: Option<&'a Tree>,
    pub(super) selection: Selection,
    /// Its folder is restored whole.
    pub(super) within_all: bool,
}

impl Visit<'_> {
    /// The snapshot path.
    pub(super) fn path(&self) -> PathBuf {
        Path::new("/").join(self.rel)
    }
}

/// Walks the chosen part of the snapshot depth first in name order; `each` says of a
/// directory whether to descend into it (false when it could not be made).
pub(crate) fn walk_selected(
    repo: &Repository,
    rel: PathBuf,
    node: &Node,
    siblings: Option<&Tree>,
    choice: &Choice,
    within_all: bool,
    each: &mut dyn FnMut(Visit<'_>) -> Result<bool>,
) -> Result<()> {
    let path = Path::new("/").join(&rel);
    let selection = choice.select(&path, node.kind == NodeKind::Dir, within_all);
    if selection == Selection::Skip {
        return Ok(());
    }
    let tree = match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(sub)) => Some(repo.load_tree(&sub)?),
        _ => None,
    };
    let descend = each(Visit {
        rel: &rel,
        node,
        siblings,
        tree: tree.as_ref(),
        selection,
        within_all,
    })?;
    if let (true, Some(tree)) = (descend, &tree) {
        let all = selection == Selection::All;
        for child in &tree.nodes {
            let rel = rel.join(safe_name(&child.name)?);
            walk_selected(repo, rel, child, Some(tree), choice, all, each)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::patterns::PatternRules;

    fn patterns(p: &[&str]) -> Patterns {
        Patterns::new(
            &PatternRules {
                patterns: p.iter().map(|s| s.to_string()).collect(),
                ..PatternRules::default()
            },
            "include",
        )
        .unwrap()
    }

    #[test]
    fn paths_patterns_and_excludes() {
        let p = Path::new;
        let all = Choice::default();
        assert_eq!(all.select(p("/etc/x"), false, false), Selection::All);

        let c = Choice {
            paths: vec![p("/home/me").into()],
            include: patterns(&["*.conf"]),
            exclude: patterns(&["*.tmp", "/home/me/cache"]),
        };
        assert_eq!(c.select(p("/"), true, false), Selection::Passage);
        assert_eq!(c.select(p("/home"), true, false), Selection::Passage);
        assert_eq!(c.select(p("/home/me"), true, false), Selection::All);
        assert_eq!(c.select(p("/home/me/a.tmp"), false, true), Selection::Skip);
        assert_eq!(c.select(p("/home/me/cache"), true, true), Selection::Skip);
        assert_eq!(c.select(p("/etc/ssh/x.conf"), false, false), Selection::All);
        assert_eq!(c.select(p("/etc/passwd"), false, false), Selection::Skip);
        // Include patterns may match anywhere: every folder is a passage.
        assert_eq!(c.select(p("/etc"), true, false), Selection::Passage);

        let only_paths = Choice {
            paths: vec![p("/home/me").into()],
            ..Choice::default()
        };
        assert_eq!(only_paths.select(p("/etc"), true, false), Selection::Skip);
        assert!(!only_paths.whole_root() && all.whole_root());
    }
}
