//! The bytes a backup will read, counted beside it for the progress bar's total and ETA.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::ops::long_path::reachable;
use crate::progress::Progress;

use super::leave_out::{LeaveOut, Verdict};
use super::path_trie::PathTrie;

/// Counts the bytes under the paths, for the progress bar's total and ETA, leaving out
/// what the walk leaves out. Runs beside the backup only when someone watches its progress
/// (a bar, or `--json` status lines); the total is told once the count is complete.
pub fn scan_totals(
    trie: &PathTrie,
    leave_out: &LeaveOut,
    one_file_system: bool,
    progress: &dyn Progress,
) {
    let mut scan = Scan {
        leave_out,
        one_file_system,
        device: 0,
        total: 0,
    };
    scan.trie(Path::new("/"), trie);
    progress.total(scan.total);
}

struct Scan<'a> {
    leave_out: &'a LeaveOut<'a>,
    one_file_system: bool,
    /// Device of the backup path being scanned.
    device: u64,
    total: u64,
}

impl Scan<'_> {
    fn trie(&mut self, path: &Path, trie: &PathTrie) {
        if trie.target {
            match trie.target_metadata(path) {
                Ok(m) if self.leave_out.is_own(&m) => {}
                Ok(m) if m.is_dir() => {
                    self.device = m.dev();
                    self.dir(path);
                }
                Ok(m) if m.is_file() => self.total += m.len(),
                _ => {}
            }
            return;
        }
        for (name, child) in &trie.children {
            self.trie(&path.join(name), child);
        }
    }

    fn dir(&mut self, dir: &Path) {
        let Ok(rd) = reachable(dir).and_then(|p| std::fs::read_dir(&*p)) else {
            return;
        };
        for e in rd.flatten() {
            let path = dir.join(e.file_name());
            let Ok(meta) = e.metadata() else { continue };
            if self.leave_out.judge(&path, &meta) != Verdict::Keep {
                continue;
            }
            if meta.is_dir() {
                if !self.one_file_system || meta.dev() == self.device {
                    self.dir(&path);
                }
            } else if meta.is_file() {
                self.total += meta.len();
            }
        }
    }
}
