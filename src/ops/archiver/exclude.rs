//! Which paths a backup leaves out: gitignore-style globs (`--exclude`, `--exclude-file`)
//! matched against absolute paths, and directories holding a marker file
//! (`--exclude-if-present`).

use std::ffi::OsString;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Excludes {
    globs: Gitignore,
    if_present: Vec<OsString>,
}

impl Default for Excludes {
    fn default() -> Self {
        Excludes {
            globs: Gitignore::empty(),
            if_present: Vec::new(),
        }
    }
}

impl Excludes {
    /// Patterns follow gitignore rules with `/` as the root: `*.tmp` matches at any depth,
    /// `/home/me/cache` only that path, `cache/` only directories, `**` any run of folders.
    pub fn new(
        patterns: &[String],
        files: &[std::path::PathBuf],
        if_present: &[String],
    ) -> Result<Excludes> {
        let mut b = GitignoreBuilder::new("/");
        for p in patterns {
            b.add_line(None, p)
                .map_err(|e| Error::Invalid(format!("bad exclude pattern {p:?}: {e}")))?;
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
                        "bad exclude pattern {line:?} in {}: {e}",
                        f.display()
                    ))
                })?;
            }
        }
        let globs = b
            .build()
            .map_err(|e| Error::Invalid(format!("bad exclude patterns: {e}")))?;
        Ok(Excludes {
            globs,
            if_present: if_present.iter().map(OsString::from).collect(),
        })
    }

    /// Whether `path` (absolute) is excluded by a pattern.
    pub fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.globs.matched(path, is_dir).is_ignore()
    }

    /// Whether directory `dir` holds one of the marker files.
    pub fn marked(&self, dir: &Path) -> bool {
        self.if_present
            .iter()
            .any(|name| std::fs::symlink_metadata(dir.join(name)).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_rules_on_absolute_paths() {
        let ex = Excludes::new(
            &["*.tmp".into(), "/data/cache".into(), "build/".into()],
            &[],
            &[],
        )
        .unwrap();
        assert!(ex.matches(Path::new("/home/a/x.tmp"), false));
        assert!(ex.matches(Path::new("/data/cache"), true));
        assert!(!ex.matches(Path::new("/other/data/cache"), true));
        assert!(ex.matches(Path::new("/src/build"), true));
        assert!(!ex.matches(Path::new("/src/build"), false));
        assert!(!ex.matches(Path::new("/home/a/x.txt"), false));
    }
}
