//! Backups killed with SIGKILL at successive moments leave a repository that checks clean,
//! keeps every earlier snapshot whole, and lets the next backup and prune finish; what
//! the killed runs left behind is cleaned up, never counted as data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;

fn is_temp(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// What the store held when a run started, and what it holds now.
struct Seen {
    data0: BTreeSet<PathBuf>,
    data: BTreeSet<PathBuf>,
    index0: BTreeSet<PathBuf>,
    index: BTreeSet<PathBuf>,
    snapshots0: BTreeSet<PathBuf>,
    snapshots: BTreeSet<PathBuf>,
}

impl Seen {
    fn new_packs(&self) -> usize {
        self.data
            .difference(&self.data0)
            .filter(|p| !is_temp(p))
            .count()
    }
}

type Moment = fn(&Seen) -> bool;

/// Source for the killed runs: `old` (in the first snapshot) and `new`, several packs of
/// incompressible data that only the killed runs and the last one back up.
fn make_source(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.path("src");
    let old = src.join("old");
    random_tree(&old, 91);
    let new = src.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let mut rng = fastrand::Rng::with_seed(91);
    for i in 0..10 {
        std::fs::write(
            new.join(format!("part-{i}")),
            random_bytes(&mut rng, 5 << 20),
        )
        .unwrap();
    }
    (src, old)
}

/// The real binary killed at successive moments of a backup, each spotted in the store: a
/// pack uploaded, a second one, a temporary file being written (local stores), an index
/// file written, the snapshot written. After each kill `check` passes and the snapshot
/// taken before restores identical; then a backup finishes and restores identical, and a
/// prune removes the killed runs' packs and temporary files.
fn backup_killed_at_several_moments_then_the_next_finishes(env: Env) {
    // Small chunks: thousands of blobs, so that the runs have many moments to stop at.
    env.ok(&[
        "init",
        "--chunk-min",
        "2048",
        "--chunk-avg",
        "8192",
        "--chunk-max",
        "32768",
    ]);
    let (src, old) = make_source(&env);
    let before = env.backup_json(&[&old], &[]);
    let before = before["snapshot_id"].as_str().unwrap().to_string();

    let store = env.repo_dir();
    let (data, index, snapshots) = (
        store.join("data"),
        store.join("index"),
        store.join("snapshots"),
    );
    let moments: [(&str, Moment); 6] = [
        ("started", |_| true),
        ("pack uploaded", |s| s.new_packs() >= 1),
        ("second pack uploaded", |s| s.new_packs() >= 2),
        ("temporary file", |s| s.data.iter().any(|p| is_temp(p))),
        ("index written", |s| {
            s.index.difference(&s.index0).next().is_some()
        }),
        ("snapshot written", |s| {
            s.snapshots.difference(&s.snapshots0).next().is_some()
        }),
    ];
    let mut killed = Vec::new();
    for (what, reached) in moments {
        let (data0, index0, snapshots0) = (
            names_below(&data),
            names_below(&index),
            names_below(&snapshots),
        );
        let seen = || Seen {
            data0: data0.clone(),
            data: names_below(&data),
            index0: index0.clone(),
            index: names_below(&index),
            snapshots0: snapshots0.clone(),
            snapshots: names_below(&snapshots),
        };
        if kill_when(env.cmd(&["backup", "-q", src.to_str().unwrap()]), || {
            reached(&seen())
        }) {
            killed.push(what);
        }
        let check = env.run(&["check"]);
        assert!(
            check.status.success(),
            "check after a backup killed at \"{what}\": {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        env.assert_restores(&before, &old);
    }
    eprintln!("backup killed at: {killed:?}");
    assert!(
        killed.contains(&"started") && killed.contains(&"pack uploaded"),
        "killed at {killed:?}"
    );

    // The next backup completes, and so does every snapshot the killed runs finished.
    let after = env.backup_json(&[&src], &[]);
    assert_eq!(after["files_failed"], 0);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for snap in list.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        if id != before {
            env.assert_restores(id, &src);
        }
    }
    env.assert_restores(&before, &old);
    env.ok(&["check", "--read-data"]);

    // Leftovers: packs no index lists, and (on a local store) temporary files. A prune
    // with no grace period removes them; nothing a snapshot needs goes with them.
    let first = prune_now(&env);
    let again = summary_line(&env.ok(&["prune", "--json", "--keep-delete", "0"]));
    assert_eq!(again["packs_unindexed"], 0, "after {first}: {again}");
    let temps: Vec<PathBuf> = names_below(&store)
        .into_iter()
        .filter(|p| is_temp(p))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&before, &old);
    env.assert_restores("latest", &src);
}

on_both_backends!(backup_killed_at_several_moments_then_the_next_finishes);
