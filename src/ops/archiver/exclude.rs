//! Which paths a backup leaves out: gitignore-style globs (`--exclude`, `--exclude-file`,
//! and their case-insensitive `--iexclude`, `--iexclude-file`) matched against absolute
//! paths; directories holding a marker file (`--exclude-if-present`) or a valid
//! `CACHEDIR.TAG` (`--exclude-caches`); files larger than a size (`--exclude-larger-than`).

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::long_path::reachable;
use crate::ops::patterns::{PatternRules, Patterns};

/// What the user asked to leave out.
#[derive(Clone, Debug, Default)]
pub struct ExcludeRules {
    /// `--exclude`, `--exclude-file`, `--iexclude`, `--iexclude-file`.
    pub patterns: PatternRules,
    /// Names of marker files whose directory is left out.
    pub if_present: Vec<String>,
    /// Leave out directories with a valid `CACHEDIR.TAG` (bford.info/cachedir).
    pub caches: bool,
    /// Leave out files larger than this many bytes.
    pub larger_than: Option<u64>,
}

#[derive(Clone, Default)]
pub struct Excludes {
    patterns: Patterns,
    if_present: Vec<OsString>,
    caches: bool,
    larger_than: Option<u64>,
}

/// What a `CACHEDIR.TAG` must begin with to count (the Cache Directory Tagging spec).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl Excludes {
    /// Patterns as `ops::patterns` reads them.
    pub fn new(rules: &ExcludeRules) -> Result<Excludes> {
        Ok(Excludes {
            patterns: Patterns::new(&rules.patterns, "exclude")?,
            if_present: rules.if_present.iter().map(OsString::from).collect(),
            caches: rules.caches,
            larger_than: rules.larger_than,
        })
    }

    /// Whether `path` (absolute) is excluded by a pattern.
    pub fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.patterns.matches(path, is_dir)
    }

    /// Whether directory `dir` holds one of the marker files, or with `caches` a valid
    /// `CACHEDIR.TAG`.
    pub fn marked(&self, dir: &Path) -> bool {
        self.if_present.iter().any(|name| {
            reachable(&dir.join(name)).is_ok_and(|p| std::fs::symlink_metadata(&*p).is_ok())
        }) || (self.caches && is_tagged_cache(dir))
    }

    /// Whether the entry at `path` is left out, by any rule.
    pub fn leaves_out(&self, path: &Path, meta: &std::fs::Metadata) -> bool {
        let is_dir = meta.is_dir();
        self.matches(path, is_dir)
            || (is_dir && self.marked(path))
            || (meta.is_file() && self.larger_than.is_some_and(|max| meta.len() > max))
    }
}

/// A regular file `CACHEDIR.TAG` in `dir` that begins with the signature.
fn is_tagged_cache(dir: &Path) -> bool {
    let tag = dir.join("CACHEDIR.TAG");
    let Ok(tag) = reachable(&tag) else {
        return false;
    };
    if !std::fs::symlink_metadata(&*tag).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    std::fs::File::open(&*tag)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
}

/// A size as `--exclude-larger-than` takes it: bytes, or a number with k, M, G or T
/// (powers of 1024, either case), as restic reads it.
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        Error::Invalid(format!(
            "--exclude-larger-than {s:?}: give a size such as 500M, 2G or 4096"
        ))
    };
    let t = s.trim();
    let (digits, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_rules_on_absolute_paths() {
        let ex = Excludes::new(&ExcludeRules {
            patterns: PatternRules {
                patterns: vec!["*.tmp".into(), "/data/cache".into(), "build/".into()],
                ..PatternRules::default()
            },
            ..ExcludeRules::default()
        })
        .unwrap();
        assert!(ex.matches(Path::new("/home/a/x.tmp"), false));
        assert!(ex.matches(Path::new("/data/cache"), true));
        assert!(!ex.matches(Path::new("/other/data/cache"), true));
        assert!(ex.matches(Path::new("/src/build"), true));
        assert!(!ex.matches(Path::new("/src/build"), false));
        assert!(!ex.matches(Path::new("/home/a/x.txt"), false));
    }

    #[test]
    fn iexclude_ignores_case_and_exclude_does_not() {
        let ex = Excludes::new(&ExcludeRules {
            patterns: PatternRules {
                patterns: vec!["*.log".into()],
                ipatterns: vec!["*.ISO".into(), "/home/*/downloads".into()],
                ..PatternRules::default()
            },
            ..ExcludeRules::default()
        })
        .unwrap();
        assert!(ex.matches(Path::new("/a/x.log"), false));
        assert!(!ex.matches(Path::new("/a/x.LOG"), false));
        assert!(ex.matches(Path::new("/a/disk.iso"), false));
        assert!(ex.matches(Path::new("/a/disk.Iso"), false));
        assert!(ex.matches(Path::new("/home/me/Downloads"), true));
    }

    #[test]
    fn sizes_read_as_restic_reads_them() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        for bad in ["", "M", "-1", "1.5G", "10X", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_signed_cachedir_tag_marks_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (signed, unsigned, linked) = (
            dir.path().join("signed"),
            dir.path().join("unsigned"),
            dir.path().join("linked"),
        );
        for d in [&signed, &unsigned, &linked] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(
            signed.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
        )
        .unwrap();
        std::fs::write(unsigned.join("CACHEDIR.TAG"), b"not a cache").unwrap();
        std::os::unix::fs::symlink(signed.join("CACHEDIR.TAG"), linked.join("CACHEDIR.TAG"))
            .unwrap();
        let ex = Excludes::new(&ExcludeRules {
            caches: true,
            ..ExcludeRules::default()
        })
        .unwrap();
        assert!(ex.marked(&signed));
        assert!(!ex.marked(&unsigned));
        assert!(!ex.marked(&linked), "a tag must be a file of its own");
        assert!(!Excludes::default().marked(&signed), "only when asked");
    }
}
