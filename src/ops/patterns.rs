//! Gitignore-style path patterns, as `backup --exclude` and `restore --include/--exclude`
//! take them, matched against absolute paths with `/` as the root: `*.tmp` matches at any
//! depth, `/home/me/cache` only that path, `cache/` only directories, `**` any run of
//! folders. The case-insensitive forms (`--iexclude`, `--iinclude`) are a second set.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

/// Patterns as the user gave them: on the command line and in files (one per line, `#`
/// starts a comment), each in a case-sensitive and a case-insensitive set.
#[derive(Clone, Debug, Default)]
pub struct PatternRules {
    pub patterns: Vec<String>,
    pub pattern_files: Vec<PathBuf>,
    pub ipatterns: Vec<String>,
    pub ipattern_files: Vec<PathBuf>,
}

impl PatternRules {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
            && self.pattern_files.is_empty()
            && self.ipatterns.is_empty()
            && self.ipattern_files.is_empty()
    }
}

#[derive(Clone)]
pub struct Patterns {
    globs: Gitignore,
    iglobs: Gitignore,
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns {
            globs: Gitignore::empty(),
            iglobs: Gitignore::empty(),
        }
    }
}

impl Patterns {
    /// Compiles `rules`; `what` names them in errors ("exclude", "include").
    pub fn new(rules: &PatternRules, what: &str) -> Result<Patterns> {
        Ok(Patterns {
            globs: globs(&rules.patterns, &rules.pattern_files, false, what)?,
            iglobs: globs(&rules.ipatterns, &rules.ipattern_files, true, what)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty() && self.iglobs.is_empty()
    }

    /// Whether `path` (absolute) matches a pattern. Only the path itself is tested, not
    /// its parents: callers walking a tree stop at (or take all of) a matched folder.
    pub fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.globs.matched(path, is_dir).is_ignore()
            || self.iglobs.matched(path, is_dir).is_ignore()
    }
}

fn globs(
    patterns: &[String],
    files: &[PathBuf],
    case_insensitive: bool,
    what: &str,
) -> Result<Gitignore> {
    let mut b = GitignoreBuilder::new("/");
    b.case_insensitive(case_insensitive)
        .map_err(|e| Error::Invalid(format!("bad {what} patterns: {e}")))?;
    for p in patterns {
        b.add_line(None, p)
            .map_err(|e| Error::Invalid(format!("bad {what} pattern {p:?}: {e}")))?;
    }
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            b.add_line(Some(f.clone()), line).map_err(|e| {
                Error::Invalid(format!(
                    "bad {what} pattern {line:?} in {}: {e}",
                    f.display()
                ))
            })?;
        }
    }
    b.build()
        .map_err(|e| Error::Invalid(format!("bad {what} patterns: {e}")))
}
