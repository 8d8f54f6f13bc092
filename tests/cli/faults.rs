//! Fault injection: a backend wrapper fails 5% of the calls to the real S3 test server on
//! purpose, and retries must carry a backup, every single-file read and a full restore
//! through it without a wrong byte.

use std::sync::Arc;
use std::time::Duration;

use cairn::archiver::{self, BackupOptions};
use cairn::backend::Backend;
use cairn::backend::faulty::Faulty;
use cairn::backend::retry::RetryPolicy;
use cairn::backend::s3::{S3Backend, S3Location, S3Options};
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

    let server = S3Server::shared();
    let s3 = S3Backend::new(
        S3Location::parse(&env.repo).unwrap(),
        S3Options {
            endpoint: Some(server.endpoint.clone()),
            connections: 4,
            ..S3Options::default()
        },
    )
    .unwrap();
    let faulty = Arc::new(Faulty::new(
        Arc::new(s3),
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
    let paths = vec![src.clone()];
    let result = archiver::backup(
        &repo,
        &BackupOptions {
            paths,
            tags: Vec::new(),
            hostname: "faulty".into(),
            parent: None,
            excludes: Default::default(),
            one_file_system: false,
            dry_run: false,
        },
        &indicatif::ProgressBar::hidden(),
    )
    .expect("backup through 5% failures");
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
