//! forget, prune, check and unlock on both backends: policies against a real repository,
//! space freed without losing what kept snapshots need, prune beside a backup, prune
//! interrupted at every step, locks, and damage that `check` must name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cairn::ops::prune::{PruneOptions, prune};
use cairn::repo::lock::LockInfo;
use cairn::store::{Kind, ObjectName};

use crate::common::*;

/// Snapshot times (local) over two years, crossing day, ISO week, month and year
/// boundaries, and which of them `--keep-daily 3 --keep-weekly 3 --keep-monthly 2
/// --keep-yearly 2` keeps.
///
/// 2025-03-04 (Tue) and 03-03 (Mon) are ISO week 10; 02-28 … 03-02 week 9; 2024-12-31
/// and 2025-01-01 both fall in week 2025-W01.
const HISTORY: [(&str, bool); 10] = [
    ("2023-03-10 12:00:00", false), // two years before the newest
    ("2024-06-15 12:00:00", false),
    ("2024-12-31 12:00:00", true),  // yearly: newest of 2024
    ("2025-01-01 12:00:00", true),  // weekly: newest of 2025-W01
    ("2025-02-28 12:00:00", true),  // monthly: newest of February
    ("2025-03-01 12:00:00", false), // week 9, but not its newest
    ("2025-03-02 12:00:00", true),  // daily 3 and weekly (week 9)
    ("2025-03-03 09:00:00", false), // same day as 18:00
    ("2025-03-03 18:00:00", true),  // daily 2
    ("2025-03-04 12:00:00", true),  // daily 1, weekly, monthly, yearly
];

/// Backs up a changing tree once per time in `HISTORY`, keeping a copy of the tree as it
/// was at each snapshot. `stable` never changes, so its blobs are shared between
/// snapshots that will be forgotten and kept ones.
fn build_history(env: &Env) -> (PathBuf, Vec<(String, PathBuf)>) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(77);
    std::fs::write(src.join("stable"), random_bytes(&mut rng, 3 << 20)).unwrap();
    let mut out = Vec::new();
    for (i, (time, _)) in HISTORY.iter().enumerate() {
        std::fs::write(src.join("changing"), random_bytes(&mut rng, 1 << 20)).unwrap();
        std::fs::write(
            src.join(format!("new-{i}")),
            random_bytes(&mut rng, 600 << 10),
        )
        .unwrap();
        if i >= 2 {
            let _ = std::fs::remove_file(src.join(format!("new-{}", i - 2)));
        }
        let s = env.backup_json(&[&src], &["--time", time]);
        let copy = env.path(&format!("expected-{i}"));
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        out.push((s["snapshot_id"].as_str().unwrap().to_string(), copy));
    }
    (src, out)
}

/// Runs `PRUNE_NOW` and insists that it found nothing to delete or repack.
fn nothing_left_to_prune(env: &Env) -> serde_json::Value {
    let again = prune_now(env);
    assert_eq!(again["packs_deleted"], 0, "{again}");
    assert_eq!(again["packs_repacked"], 0, "{again}");
    again
}

fn snapshot_ids(env: &Env) -> BTreeSet<String> {
    let out = env.ok(&["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn restore_matches(env: &Env, snapshot: &str, src: &Path, expected: &Path) {
    let target = tempfile::tempdir_in(env.dir.path()).unwrap();
    env.ok(&[
        "restore",
        snapshot,
        "--target",
        target.path().to_str().unwrap(),
        "--verify",
    ]);
    assert_same_tree(
        expected,
        &target.path().join(src.strip_prefix("/").unwrap()),
    );
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    summary_line(out)
}

fn policy_forget_prune_and_restore_every_kept_snapshot(env: Env) {
    let (src, history) = build_history(&env);
    let policy = [
        "--keep-daily",
        "3",
        "--keep-weekly",
        "3",
        "--keep-monthly",
        "2",
        "--keep-yearly",
        "2",
    ];
    let mut args = vec!["forget", "--json", "--dry-run"];
    args.extend(policy);
    let dry = json_of(&env.ok(&args));
    assert_eq!(dry["removed"].as_array().unwrap().len(), 0, "{dry}");
    assert_eq!(
        snapshot_ids(&env).len(),
        HISTORY.len(),
        "a dry run removes nothing"
    );

    let mut args = vec!["forget", "--json"];
    args.extend(policy);
    let done = json_of(&env.ok(&args));
    let expected_kept: BTreeSet<String> = history
        .iter()
        .zip(HISTORY)
        .filter(|(_, (_, keep))| *keep)
        .map(|((id, _), _)| id.clone())
        .collect();
    assert_eq!(snapshot_ids(&env), expected_kept, "{done}");
    let group = &done["groups"][0];
    let reasons: Vec<String> = group["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reasons"].to_string())
        .collect();
    assert!(
        reasons[0].contains("daily") && reasons[0].contains("yearly"),
        "{reasons:?}"
    );
    assert_eq!(
        group["remove"].as_array().unwrap().len(),
        HISTORY.iter().filter(|(_, keep)| !keep).count(),
        "{done}"
    );

    // First prune: unneeded packs are only marked.
    let before = env.repo_size();
    let first = json_of(&env.ok(&["prune", "--json"]));
    assert!(
        first["packs_marked"].as_u64().unwrap() + first["packs_repacked"].as_u64().unwrap() > 0,
        "{first}"
    );
    assert_eq!(first["packs_deleted"], 0, "{first}");
    env.ok(&["check"]);
    // Nothing has been deleted, so every snapshot still restores.
    for ((id, copy), (_, keep)) in history.iter().zip(HISTORY) {
        if keep {
            restore_matches(&env, id, &src, copy);
        }
    }
    // Second prune with no grace period deletes them.
    let second = json_of(&env.ok(&["prune", "--json", "--keep-delete", "0"]));
    assert!(second["packs_deleted"].as_u64().unwrap() > 0, "{second}");
    let after = env.repo_size();
    assert!(
        after + (1 << 20) < before,
        "prune freed too little: {before} -> {after}"
    );
    let check = env.ok(&["check", "--read-data", "--json"]);
    assert_eq!(json_of(&check)["clean"], true);
    for ((id, copy), (_, keep)) in history.iter().zip(HISTORY) {
        if keep {
            restore_matches(&env, id, &src, copy);
        }
    }
    // A third prune has nothing left to do.
    let third = json_of(&env.ok(&["prune", "--json", "--keep-delete", "0"]));
    assert_eq!(third["packs_deleted"], 0, "{third}");
    assert_eq!(third["index_files_written"], 0, "{third}");
}

fn forget_refuses_an_empty_policy_and_mixed_arguments(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 3);
    env.backup_json(&[&src], &[]);
    let out = env.run(&["forget"]);
    assert_eq!(out.status.code(), Some(2), "a command-line error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("never removes everything"));
    let out = env.run(&["forget", "--keep-last", "1", "latest"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(snapshot_ids(&env).len(), 1);
    // By id, with --prune.
    env.ok(&["forget", "latest", "--prune", "--keep-delete", "0"]);
    assert!(snapshot_ids(&env).is_empty());
    let check = json_of(&env.ok(&["check", "--json"]));
    assert_eq!(check["packs"], 0, "{check}");
}

/// A backup that looked at the index before a prune marked a pack may still use that
/// pack's blobs. The next prune must bring the pack back instead of deleting it.
fn backup_running_during_prune_loses_nothing(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 21);
    let mut rng = fastrand::Rng::with_seed(21);
    std::fs::write(src.join("big"), random_bytes(&mut rng, 5 << 20)).unwrap();
    env.backup_json(&[&src], &[]);
    // The slow backup starts: its view of the index is taken now.
    let early = env.open_with(env.backend(), "cache-early");
    early.index().unwrap();
    // Meanwhile the only snapshot is forgotten and pruned: every pack gets marked.
    env.ok(&["forget", "latest"]);
    let p = json_of(&env.ok(&["prune", "--json"]));
    assert!(p["packs_marked"].as_u64().unwrap() > 0, "{p}");
    // The backup finishes, deduplicating against packs that are now marked.
    let result = back_up(&early, &src).unwrap();
    assert_eq!(
        result.summary.data_blobs, 0,
        "the early backup reused marked blobs"
    );
    drop(early);
    let snap = result.snapshot_id.unwrap().to_hex();
    let check = json_of(&env.ok(&["check", "--json"]));
    assert_eq!(check["clean"], true, "{check}");
    assert!(!check["notes"].as_array().unwrap().is_empty(), "{check}");
    // Past the grace period, prune recovers the packs instead of deleting them.
    let p = json_of(&env.ok(&["prune", "--json", "--keep-delete", "0"]));
    assert!(p["packs_recovered"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(p["packs_deleted"], 0, "{p}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&snap, &src);
    // A new backup deduplicates against the recovered packs again.
    let again = env.backup_json(&[&src], &["--force"]);
    assert_eq!(again["data_blobs"], 0, "{again}");
}

/// A prune stopped after 0, 1, 2, … of its writes and deletions: after each stop the
/// repository checks clean and every kept snapshot restores; the run that is not stopped
/// finishes the job.
fn prune_stopped_at_every_step_leaves_a_sound_repository(env: Env) {
    let (src, history) = build_history(&env);
    env.ok(&["forget", "--keep-last", "3"]);
    let kept: Vec<&(String, PathBuf)> = history[HISTORY.len() - 3..].iter().collect();
    let instant = PruneOptions {
        keep_delete: chrono::Duration::zero(),
        max_unused: 0.0,
        ..PruneOptions::default()
    };
    let mut stops = 0;
    for budget in 0.. {
        // Every write and removal after the budget fails, as if the prune were killed.
        let left = AtomicI64::new(budget);
        let stopping = Intercept {
            inner: env.backend(),
            before: move |_, obj: &ObjectName| {
                if left.fetch_sub(1, Ordering::SeqCst) <= 0 {
                    return Err(cairn::Error::Store(format!("stopped before {obj}")));
                }
                Ok(())
            },
        };
        let repo = env.open_with(Arc::new(stopping), &format!("cache-stop-{budget}"));
        let outcome = prune(&repo, &instant, &cairn::progress::Silent);
        drop(repo);
        let check = env.run(&["check", "--json"]);
        assert!(
            check.status.success(),
            "check after a prune stopped at step {budget}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        match outcome {
            Err(e) => {
                assert!(e.to_string().contains("stopped before"), "{e}");
                stops += 1;
            }
            Ok(stats) => {
                // Stopped runs left work; the last one must have done some of it.
                assert!(stops > 0);
                let _ = stats;
                break;
            }
        }
        assert!(budget < 500, "prune never finished");
    }
    assert!(stops >= 3, "only {stops} stopping points were exercised");
    // The job is done: another prune finds nothing.
    nothing_left_to_prune(&env);
    env.ok(&["check", "--read-data"]);
    for (id, copy) in kept {
        restore_matches(&env, id, &src, copy);
    }
}

/// The real binary killed with SIGKILL at successive moments of a prune, each spotted in
/// the store: lock taken, a repacked pack uploaded, a new index file written, an old
/// index file removed, an old pack deleted. After each kill `check` passes; the next prune
/// takes over the dead process's lock and carries on, and the last one finishes the job.
fn prune_killed_at_several_moments_then_the_next_finishes(env: Env) {
    let (src, history) = build_history(&env);
    env.ok(&["forget", "--keep-last", "3"]);
    let store = env.repo_dir();
    let (data, index) = (store.join("data"), store.join("index"));
    type Moment = fn(
        &BTreeSet<PathBuf>,
        &BTreeSet<PathBuf>,
        &BTreeSet<PathBuf>,
        &BTreeSet<PathBuf>,
        bool,
    ) -> bool;
    let moments: [(&str, Moment); 5] = [
        ("lock taken", |_, _, _, _, locked| locked),
        ("pack uploaded", |d0, _, d, _, _| {
            d.difference(d0).next().is_some()
        }),
        ("index written", |_, i0, _, i, _| {
            i.difference(i0).next().is_some()
        }),
        ("index removed", |_, i0, _, i, _| {
            i0.difference(i).next().is_some()
        }),
        ("pack deleted", |d0, _, d, _, _| {
            d0.difference(d).next().is_some()
        }),
    ];
    let mut killed = Vec::new();
    for (what, reached) in moments {
        let (d0, i0) = (names_below(&data), names_below(&index));
        let reached_now = || {
            let locked = store.join("locks/exclusive").exists();
            reached(&d0, &i0, &names_below(&data), &names_below(&index), locked)
        };
        if kill_when(env.cmd(&PRUNE_NOW), reached_now) {
            killed.push(what);
        }
        let check = env.run(&["check"]);
        assert!(
            check.status.success(),
            "check after a prune killed at \"{what}\": {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    eprintln!("prune killed at: {killed:?}");
    assert!(killed.contains(&"lock taken"), "killed at {killed:?}");
    // The last kill left a lock too: this prune takes it over and completes.
    prune_now(&env);
    let again = nothing_left_to_prune(&env);
    assert_eq!(
        again["packs_unindexed"], 0,
        "leftovers of killed runs are gone: {again}"
    );
    env.ok(&["check", "--read-data"]);
    for (id, copy) in &history[HISTORY.len() - 3..] {
        restore_matches(&env, id, &src, copy);
    }
}

/// Packs under object-lock retention are never deleted before it ends: prune leaves them
/// in place, names them, keeps the repository sound, and a later prune deletes them.
fn prune_leaves_objects_under_retention_and_deletes_them_later(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    std::fs::write(src.join("old"), random_bytes(&mut rng, 2 << 20)).unwrap();
    let first = env.backup_json(&[&src], &[]);
    std::fs::remove_file(src.join("old")).unwrap();
    std::fs::write(src.join("new"), random_bytes(&mut rng, 2 << 20)).unwrap();
    let second = env.backup_json(&[&src], &[]);
    let second = second["snapshot_id"].as_str().unwrap().to_string();
    env.ok(&["forget", first["snapshot_id"].as_str().unwrap()]);
    let packs_before = env.backend().list(Kind::Pack).unwrap().len();

    // The store refuses every pack deletion, as S3 does for objects under retention.
    let retaining = || Intercept {
        inner: env.backend(),
        before: |change: Change, obj: &ObjectName| match (change, obj.kind) {
            (Change::Remove, Kind::Pack) => Err(cairn::Error::Retained {
                object: obj.path(),
                until: "2099-01-01T00:00:00Z".into(),
            }),
            _ => Ok(()),
        },
    };
    let options = |keep_delete| PruneOptions {
        keep_delete,
        max_unused: 0.0,
        ..PruneOptions::default()
    };
    let hidden = cairn::progress::Silent;
    // Two-phase: the first prune marks, the second finds the marks expired but may not
    // delete; the packs stay marked.
    let repo = env.open_with(Arc::new(retaining()), "cache-retained");
    let marked = prune(&repo, &options(chrono::Duration::hours(23)), &hidden).unwrap();
    assert!(marked.packs_marked > 0, "{marked:?}");
    assert!(marked.retained.is_empty());
    let refused = prune(&repo, &options(chrono::Duration::zero()), &hidden).unwrap();
    drop(repo);
    assert_eq!(refused.packs_deleted, 0, "{refused:?}");
    assert_eq!(refused.bytes_deleted, 0);
    assert_eq!(refused.retained.len() as u64, marked.packs_marked);
    assert!(
        refused
            .retained
            .iter()
            .all(|r| r.starts_with("data/") && r.ends_with("until 2099-01-01T00:00:00Z")),
        "{:?}",
        refused.retained
    );
    assert_eq!(env.backend().list(Kind::Pack).unwrap().len(), packs_before);
    env.ok(&["check"]);
    env.assert_restores(&second, &src);

    // Once retention ends, the next prune deletes them.
    let freed = prune_now(&env);
    assert_eq!(
        freed["packs_deleted"].as_u64(),
        Some(marked.packs_marked),
        "{freed}"
    );
    assert!(env.backend().list(Kind::Pack).unwrap().len() < packs_before);
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&second, &src);
}

/// Ctrl-C (or SIGTERM) during a prune stops it between steps and removes its lock: no
/// lock object and no temporary file is left in `locks/`, the repository checks clean, and
/// the next prune (which no stale lock stops) finishes the job.
fn an_interrupted_prune_leaves_no_lock(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(31);
    for i in 0..12 {
        std::fs::write(src.join("f"), random_bytes(&mut rng, 300 << 10)).unwrap();
        std::fs::write(src.join(format!("g{i}")), random_bytes(&mut rng, 1000)).unwrap();
        env.backup_json(&[&src], &[]);
    }
    env.ok(&["forget", "--keep-last", "1"]);
    let locks = env.repo_dir().join("locks");
    let mut interrupted = 0;
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let cmd = env.cmd(&["prune", "--keep-delete", "0", "--max-unused", "0%"]);
        let held = || std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some());
        let status = signal_when(cmd, signal, held);
        eprintln!("{signal}: {status:?}");
        if let Some(status) = status {
            assert!(
                matches!(status.code(), Some(130) | Some(0)),
                "{signal}: {status:?}"
            );
            interrupted += usize::from(status.code() == Some(130));
        }
        let left: Vec<_> = std::fs::read_dir(&locks)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{signal}: left in locks/: {left:?}");
        env.ok(&["check"]);
    }
    assert!(
        interrupted > 0,
        "no signal landed while prune held its lock"
    );
    env.ok(&["prune", "--keep-delete", "0", "--max-unused", "0%"]);
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);
}

fn locks_keep_a_second_prune_out_and_unlock_removes_stale_ones(env: Env) {
    env.init();
    if let Store::Local = env.store {
        // Something in locks/ that is no lock (a stray file, what an S3 console makes of a
        // folder) blocks nothing.
        std::fs::write(env.repo_dir().join("locks/README"), b"not a lock").unwrap();
    }
    let src = env.path("src");
    random_tree(&src, 5);
    env.backup_json(&[&src], &[]);
    let repo = env.open_with(env.backend(), "cache-lock");
    let held = cairn::repo::lock::acquire(&repo, "prune").unwrap();
    let out = env.run(&["prune"]);
    assert_eq!(out.status.code(), Some(11), "locked exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("cairn unlock"),
        "{err}"
    );
    // Its holder (this test) is alive: plain unlock refuses, --force removes it.
    assert_eq!(env.run(&["unlock"]).status.code(), Some(11));
    env.ok(&["unlock", "--force"]);
    env.ok(&["prune"]);
    drop(held);

    // A lock whose process is gone is taken over by the next prune.
    let dead = LockInfo {
        v: 1,
        operation: "prune".into(),
        hostname: cairn::sysinfo::hostname(),
        username: "someone".into(),
        pid: 4_000_000_000,
        time: chrono::Utc::now().timestamp_nanos_opt().unwrap(),
    };
    let (_, bytes) = repo.seal_meta(&dead).unwrap();
    let name = ObjectName {
        kind: Kind::Lock,
        name: "exclusive".into(),
    };
    repo.backend().write(&name, &bytes).unwrap();
    let out = env.ok(&["prune"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no longer running"));
    assert_eq!(repo.backend().stat(&name).unwrap(), None, "lock released");
    // `unlock` removes such a lock without --force.
    repo.backend().write(&name, &bytes).unwrap();
    env.ok(&["unlock"]);
    assert_eq!(repo.backend().stat(&name).unwrap(), None);
}

fn names_in(dir: &Path) -> BTreeSet<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

fn check_names_damaged_objects_and_other_files_still_restore(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    std::fs::write(src.join("a/first"), random_bytes(&mut rng, 2 << 20)).unwrap();
    let s1 = env.backup_json(&[&src], &[]);
    let before = names_in(&env.repo_dir());
    std::fs::write(src.join("second"), random_bytes(&mut rng, 2 << 20)).unwrap();
    let s2 = env.backup_json(&[&src], &[]);
    let added: Vec<PathBuf> = names_in(&env.repo_dir())
        .difference(&before)
        .cloned()
        .collect();
    let pick = |dir: &str| {
        added
            .iter()
            .find(|p| p.to_string_lossy().contains(&format!("/{dir}/")))
            .unwrap_or_else(|| panic!("no new object in {dir}/: {added:?}"))
            .clone()
    };
    env.ok(&["check", "--read-data"]);
    let s1 = s1["snapshot_id"].as_str().unwrap().to_string();
    let s2 = s2["snapshot_id"].as_str().unwrap().to_string();

    // The pack that holds `second` (the largest new pack).
    let pack = added
        .iter()
        .filter(|p| p.to_string_lossy().contains("/data/"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let pack_name = pack.file_name().unwrap().to_string_lossy().into_owned();
    flip_byte(&pack, 1000);
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&pack_name), "{err}");
    assert!(err.contains("/second"), "affected file named: {err}");
    // Restoring what does not need the pack still works; what does fails loudly.
    let target = env.path("t1");
    let t = target.to_str().unwrap();
    let first = src.join("a/first");
    env.ok(&[
        "restore",
        &s2,
        "--target",
        t,
        "--include",
        first.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(target.join(first.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read(&first).unwrap()
    );
    let second = src.join("second");
    let out = env.run(&["dump", &s2, second.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    flip_byte(&pack, 1000);

    // An index file.
    let index = pick("index");
    let index_name = index.file_name().unwrap().to_string_lossy().into_owned();
    flip_byte(&index, 40);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&index_name));
    // The first snapshot needs nothing the damaged index file lists.
    let target = env.path("t-index");
    env.ok(&["restore", &s1, "--target", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(target.join(first.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read(&first).unwrap()
    );
    flip_byte(&index, 40);

    // A snapshot.
    let snap = pick("snapshots");
    let snap_name = snap.file_name().unwrap().to_string_lossy().into_owned();
    flip_byte(&snap, 30);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&snap_name));
    let target = env.path("t2");
    env.ok(&["restore", &s1, "--target", target.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(target.join(first.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read(&first).unwrap()
    );
}

on_both_backends!(
    policy_forget_prune_and_restore_every_kept_snapshot,
    forget_refuses_an_empty_policy_and_mixed_arguments,
    backup_running_during_prune_loses_nothing,
    prune_stopped_at_every_step_leaves_a_sound_repository,
    prune_killed_at_several_moments_then_the_next_finishes,
    prune_leaves_objects_under_retention_and_deletes_them_later,
    locks_keep_a_second_prune_out_and_unlock_removes_stale_ones,
    an_interrupted_prune_leaves_no_lock,
    check_names_damaged_objects_and_other_files_still_restore,
    prune_report_adds_up_and_its_dry_run_foresees_the_requests,
);

/// prune's figures add up (every byte of the packs is used, unused or header), and
/// `--dry-run` foresees exactly the requests that the real run then makes.
fn prune_report_adds_up_and_its_dry_run_foresees_the_requests(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(18);
    std::fs::write(src.join("kept"), random_bytes(&mut rng, 3 << 20)).unwrap();
    env.backup_json(&[&src], &[]);
    std::fs::write(src.join("dropped"), random_bytes(&mut rng, 3 << 20)).unwrap();
    let second = env.backup_json(&[&src], &[]);
    env.ok(&["forget", second["snapshot_id"].as_str().unwrap()]);
    let mut dry_args = PRUNE_NOW.to_vec();
    dry_args.push("--dry-run");
    let dry = summary_line(&env.ok(&dry_args));
    let text = String::from_utf8_lossy(&env.ok(&["prune", "--dry-run"]).stdout).into_owned();
    let real = prune_now(&env);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
    for v in [&dry, &real] {
        assert_eq!(
            n(v, "pack_bytes"),
            n(v, "used_bytes") + n(v, "unused_bytes") + n(v, "header_bytes"),
            "{v}"
        );
        assert!(
            n(v, "unused_bytes") >= 3 << 20,
            "the forgotten file is unused: {v}"
        );
    }
    assert!(
        text.contains("unused,") && text.contains("pack headers"),
        "{text}"
    );
    assert!(n(&real, "packs_deleted") > 0, "{real}");
    for kind in ["get", "put", "head", "list", "delete"] {
        assert_eq!(
            dry["requests"][kind], real["requests"][kind],
            "{kind}: estimated {dry}\nmade {real}"
        );
    }
}

/// An S3 front for the test server that reports every snapshot object as under
/// governance-mode retention until 2099, as a bucket with object lock does; s3s-fs itself
/// has no object lock. It takes one request per connection (asking the server to close
/// after its answer), which is all cairn's read, HEAD and DELETE requests need.
struct RetainingProxy {
    endpoint: String,
}

impl RetainingProxy {
    fn start(upstream: &str) -> RetainingProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let upstream = upstream.clone();
                std::thread::spawn(move || relay(client, &upstream));
            }
        });
        RetainingProxy { endpoint }
    }
}

fn relay(mut client: std::net::TcpStream, upstream: &str) {
    use std::io::{Read, Write};
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut forwarded = format!("{request_line}\r\n");
    let mut body_len = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert_ne!(
            name, "transfer-encoding",
            "the proxy relays no chunked bodies"
        );
        if name == "content-length" {
            body_len = line[15..].trim().parse().unwrap();
        }
        if name != "connection" {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; body_len];
    client.read_exact(&mut body).unwrap();
    let mut server = std::net::TcpStream::connect(upstream).unwrap();
    server.write_all(forwarded.as_bytes()).unwrap();
    server.write_all(&body).unwrap();
    let mut response = Vec::new();
    server.read_to_end(&mut response).unwrap();
    let retained = request_line.starts_with("HEAD ") && request_line.contains("/snapshots/");
    if retained && let Some(end) = response.windows(2).position(|w| w == b"\r\n") {
        let lock = b"\r\nx-amz-object-lock-mode: GOVERNANCE\r\nx-amz-object-lock-retain-until-date: 2099-01-01T00:00:00.000Z";
        response.splice(end..end, lock.iter().copied());
    }
    let _ = client.write_all(&response);
}

/// `forget` of snapshots under object-lock retention removes none of them and says so
/// with a failing exit code, instead of "removed 0 snapshots" and success.
#[test]
fn forget_of_retained_snapshots_fails_naming_the_retention() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"kept by the lock").unwrap();
    let first = env.backup_json(&[&src], &[])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    env.backup_json(&[&src], &["--force"]);
    let proxy = RetainingProxy::start(&S3Server::shared().endpoint);
    for args in [
        &["forget", &first[..8]][..],
        &["forget", "--keep-last", "1"],
    ] {
        let out = env
            .cmd(args)
            .env("AWS_ENDPOINT_URL", &proxy.endpoint)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&first[..8]) && stderr.contains("retention until 2099"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("were not removed"), "{stderr}");
    }
    assert_eq!(snapshot_ids(&env).len(), 2, "nothing was removed");
    // Without the lock the same forget succeeds.
    env.ok(&["forget", &first[..8]]);
    assert_eq!(snapshot_ids(&env).len(), 1);
}
