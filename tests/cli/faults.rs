//! Faults: a wrapper fails a share of the calls to the real S3 test server on purpose. At
//! 5%, retries must carry a backup, every single-file read and a full restore through it
//! without a wrong byte; at 100%, both stop with a clear message and change nothing. A
//! restore into a full or read-only file system stops and says how far it got.

use std::sync::Arc;
use std::time::Duration;

use cairn::format::pack::{BlobType, decode_header};
use cairn::ops::restorer::{self, RestoreOptions};
use cairn::repo::Repository;
use cairn::store::faulty::Faulty;
use cairn::store::retry::RetryPolicy;
use cairn::store::s3::S3Options;
use cairn::store::{Backend, Kind, ObjectName};

use crate::common::*;

#[test]
fn retries_carry_a_backup_and_restore_through_five_percent_failures() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    random_tree(&src, 41);
    let mut rng = fastrand::Rng::with_seed(41);
    std::fs::write(src.join("big"), random_bytes(&mut rng, 40 * 1024 * 1024)).unwrap();

    let faulty = Arc::new(Faulty::new(
        Arc::new(s3_backend(&env, S3Options::default())),
        0.05,
        Duration::from_millis(2),
        0x5eed,
    ));
    // Short pauses keep the test quick; enough attempts that 5% never runs out of them.
    let policy = RetryPolicy {
        attempts: 12,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(40),
        ..RetryPolicy::default()
    };
    let backend: Arc<dyn Backend> = faulty.clone();
    let repo = Repository::open(
        backend,
        PASSWORD.as_bytes(),
        Some(&env.path("cache-faulty")),
        &policy,
    )
    .unwrap();
    let result = back_up(&repo, &src).expect("backup through 5% failures");
    assert!(result.failed.is_empty());
    let snapshot = result.snapshot_id.expect("a snapshot");

    // Every file, read on its own through the faulty store.
    let (_, snap) = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|(id, _)| *id == snapshot)
        .unwrap();
    let mut compared = 0;
    for file in all_files(&src) {
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let node = cairn::repo::tree_walk::find_node(&repo, snap.tree, &file).unwrap();
        let mut out = Vec::new();
        restorer::write_content(&repo, &node, &mut out).unwrap();
        assert!(out == std::fs::read(&file).unwrap(), "{}", file.display());
        compared += 1;
    }
    assert!(compared > 50);

    // And a full restore through it.
    let target = env.path("restored");
    let summary = restorer::restore(
        &repo,
        snap.tree,
        &RestoreOptions {
            verify: true,
            ..RestoreOptions::new(target.clone())
        },
        &cairn::progress::Silent,
        &|_| {},
    )
    .unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // Every kind of fault was met, and carried through.
    let counts = faulty.counts();
    eprintln!("injected: {counts:?}");
    assert!(
        counts.errors > 0 && counts.timeouts > 0 && counts.truncated > 0 && counts.slow > 0,
        "not every kind of fault was injected: {counts:?}"
    );

    // The repository the faults left behind is whole for a clean client too.
    env.assert_restores("latest", &src);
}

#[test]
fn storage_class_goes_to_data_packs_only() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    random_tree(&src, 43);
    // s3s-fs refuses every class but STANDARD (InvalidStorageClass, which shows the
    // header does reach the server); the routing is what is checked here.
    let s3 = s3_backend(
        &env,
        S3Options {
            storage_class: Some(cairn::store::s3::parse_storage_class("standard").unwrap()),
            ..S3Options::default()
        },
    );
    // The storage class itself is not kept by the test server, so the test checks what
    // cairn asked for: which objects went to `write_cold`.
    let s3: Arc<dyn Backend> = Arc::new(s3);
    let hot = Arc::new(std::sync::Mutex::new(Vec::new()));
    let cold = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = Intercept {
        inner: s3.clone(),
        before: {
            let (hot, cold) = (hot.clone(), cold.clone());
            move |change, obj: &ObjectName| {
                match change {
                    Change::Write => hot.lock().unwrap().push(obj.clone()),
                    Change::WriteCold => cold.lock().unwrap().push(obj.clone()),
                    Change::Remove => {}
                }
                Ok(())
            }
        },
    };
    let repo = Repository::open(
        Arc::new(observed),
        PASSWORD.as_bytes(),
        None,
        &RetryPolicy::default(),
    )
    .unwrap();
    back_up(&repo, &src).unwrap();
    let kinds_in = |obj: &ObjectName| {
        let bytes = s3.read(obj).unwrap();
        let entries = decode_header(repo.key(), &bytes, bytes.len() as u64, &obj.path()).unwrap();
        entries.iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    let cold = cold.lock().unwrap().clone();
    let hot = hot.lock().unwrap().clone();
    assert!(!cold.is_empty());
    for obj in &cold {
        assert_eq!(obj.kind, Kind::Pack);
        assert!(kinds_in(obj).iter().all(|k| *k == BlobType::Data), "{obj}");
    }
    let hot_packs: Vec<_> = hot.iter().filter(|o| o.kind == Kind::Pack).collect();
    assert!(!hot_packs.is_empty(), "tree packs go to hot storage");
    for obj in hot_packs {
        assert!(kinds_in(obj).iter().all(|k| *k == BlobType::Tree), "{obj}");
    }
    // Index files and the snapshot are hot too.
    assert!(hot.iter().any(|o| o.kind == Kind::Index));
    assert!(hot.iter().any(|o| o.kind == Kind::Snapshot));
}

/// Every call fails: a backup and a restore give up with a message that says what failed
/// and what to do, and the repository is left as it was for the next run.
#[test]
fn total_failure_stops_clearly_and_changes_nothing() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    random_tree(&src, 43);
    let before = env.backup_json(&[&src], &[]);
    let before = before["snapshot_id"].as_str().unwrap().to_string();
    let extra = env.path("extra");
    random_tree(&extra, 44);

    let (faulty, repo) = failing_later(&env);
    let (_, snap) = repo.snapshots().unwrap().into_iter().next().unwrap();
    faulty.set_fail_share(1.0);

    let Err(err) = back_up(&repo, &extra) else {
        panic!("a backup into a dead store succeeded");
    };
    let err = err.to_string();
    assert!(
        err.contains("gave up after 3 attempts") && err.contains("check the network"),
        "{err}"
    );
    let Err(err) = restorer::restore(
        &repo,
        snap.tree,
        &RestoreOptions::new(env.path("restored")),
        &cairn::progress::Silent,
        &|_| {},
    ) else {
        panic!("a restore from a dead store succeeded");
    };
    let err = err.to_string();
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    drop(repo);

    // Nothing changed: the repository checks clean with every byte read, the snapshot
    // restores, and the next backup completes.
    env.ok(&["check", "--read-data"]);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    env.assert_restores(&before, &src);
    let after = env.backup_json(&[&extra], &[]);
    env.assert_restores(after["snapshot_id"].as_str().unwrap(), &extra);
}

/// A restore into a file system that fills up stops at the first write that finds no
/// space, says so and how far it got, and leaves no partly written file that could pass
/// for a restored one; into a read-only one it stops at once.
#[test]
fn restore_into_a_full_or_read_only_target_stops_clearly() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..40 {
        std::fs::write(
            src.join(format!("f{i:02}")),
            random_bytes(&mut rng, 100_000),
        )
        .unwrap();
    }
    let snap = env.backup_json(&[&src], &[]);
    let snap = snap["snapshot_id"].as_str().unwrap().to_string();

    let small = env.path("small");
    let Some(_full) = Tmpfs::mount(&small, "size=1m") else {
        eprintln!("the full-disk restore test needs root to mount a tmpfs; not run");
        return;
    };
    let out = env.run(&["restore", &snap, "--target", small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(err.contains("were restored before it"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "one message, not one per file: {err}"
    );
    let restored = small.join(src.strip_prefix("/").unwrap());
    let complete = restored_files_are_right(&src, &restored);
    assert!(complete > 0 && complete < 40, "{complete} files restored");

    let read_only = env.path("read-only");
    let Some(_ro) = Tmpfs::mount(&read_only, "ro,size=1m") else {
        return;
    };
    let out = env.run(&["restore", &snap, "--target", read_only.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped") && err.contains("Read-only file system"),
        "{err}"
    );
    assert!(err.contains("0 files (0 bytes) were restored"), "{err}");
}
