//! The backup's paths as a trie of names from `/`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::SourcePath;

/// The backup's paths as a trie of names from `/`: inner entries are directories on the
/// way to a path, marked entries are the paths themselves (the root itself for `/`).
#[derive(Default)]
pub struct PathTrie {
    pub(super) children: BTreeMap<OsString, PathTrie>,
    pub(super) target: bool,
    /// For a target: follow a symlink there (see `SourcePath::follow`).
    follow: bool,
}

impl PathTrie {
    /// Builds the trie from absolute, clean paths; a path inside another given path is
    /// dropped, and a path given twice is one target, followed if either spelling says so.
    pub fn new(paths: &[SourcePath]) -> PathTrie {
        let mut root = PathTrie::default();
        'paths: for p in paths {
            let mut node = &mut root;
            for comp in p.path.components().skip(1) {
                if node.target {
                    continue 'paths;
                }
                node = node
                    .children
                    .entry(comp.as_os_str().to_owned())
                    .or_default();
            }
            node.follow |= p.follow;
            node.target = true;
            node.children.clear();
        }
        root
    }

    /// What the walk stores for this target: see `SourcePath::metadata`.
    pub(super) fn target_metadata(&self, path: &Path) -> std::io::Result<std::fs::Metadata> {
        SourcePath {
            path: path.to_path_buf(),
            follow: self.follow,
        }
        .metadata()
    }
}
