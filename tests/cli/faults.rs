//! Backend wrappers around the real S3 test server. Fault injection: a wrapper fails 5% of the calls to the real S3 test server on
//! purpose, and retries must carry a backup, every single-file read and a full restore
//! through it without a wrong byte.

use std::sync::Arc;
use std::time::Duration;

use cairn::backend::faulty::Faulty;
use cairn::backend::retry::RetryPolicy;
use cairn::backend::s3::S3Options;
use cairn::backend::{Backend, Kind, ObjectName};
use cairn::pack::{BlobType, decode_header};
use cairn::repository::Repository;
use cairn::restorer::{self, RestoreOptions};

use crate::common::*;

#[test]
fn retries_carry_a_backup_and_restore_through_five_percent_failures() {
    let env = Env::s3();
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
        let node = restorer::find_node(&repo, snap.tree, &file).unwrap();
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
            target: target.clone(),
            includes: Vec::new(),
            verify: true,
        },
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert!(
        faulty.injected() >= 3,
        "only {} failures were injected",
        faulty.injected()
    );

    // The repository the faults left behind is whole for a clean client too.
    env.assert_restores("latest", &src);
}

#[test]
fn storage_class_goes_to_data_packs_only() {
    let env = Env::s3();
    env.init();
    let src = env.path("src");
    random_tree(&src, 43);
    // s3s-fs refuses every class but STANDARD (InvalidStorageClass, which shows the
    // header does reach the server); the routing is what is checked here.
    let s3 = s3_backend(
        &env,
        S3Options {
            storage_class: Some(cairn::backend::s3::parse_storage_class("standard").unwrap()),
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
        entries.iter().map(|e| e.kind()).collect::<Vec<_>>()
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
