//! The local index cache is only a cache: deleted, stale or foreign caches must never make
//! a backup skip data the repository does not have.

use crate::common::*;

fn small_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(21);
    std::fs::write(src.join("a"), random_bytes(&mut rng, 2 * 1024 * 1024)).unwrap();
    std::fs::write(src.join("b"), random_bytes(&mut rng, 10_000)).unwrap();
    src
}

#[test]
fn deleted_cache_is_rebuilt_from_the_index_files() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    env.backup_json(&[&src], &[]);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let again = env.backup_json(&[&src], &["--force"]);
    // Rebuilt from the repository, the cache still knows every blob: nothing is re-stored.
    assert_eq!(again["data_blobs"], 0, "{again}");
}

#[test]
fn stale_cache_is_not_trusted() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    let first = env.backup_json(&[&src], &[]);
    // The repository loses the index files the cache was built from, and the packs they
    // listed (as a prune that deleted them would). The cache's entries must not be
    // believed any more.
    for dir in ["index", "data"] {
        for f in all_files(&std::path::Path::new(&env.repo).join(dir)) {
            std::fs::remove_file(f).unwrap();
        }
    }
    let again = env.backup_json(&[&src], &["--force"]);
    assert_eq!(
        again["data_blobs"], first["data_blobs"],
        "every blob must be stored again: {again}"
    );
    env.assert_restores("latest", &src);
}

#[test]
fn cache_of_another_repository_is_ignored() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    env.backup_json(&[&src], &[]);
    let cache = env.path("cache");
    let first_cache = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // A second repository sharing the cache folder. Opening it makes its own cache.
    let mut other = Env::new();
    other.repo = env.path("repo2").to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut c = other.cmd(args);
        c.env("CAIRN_CACHE_DIR", &cache);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&["init"]);
    run(&["snapshots"]);
    let second_cache = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| *p != first_cache)
        .expect("a cache folder per repository id");
    // Plant the first repository's cache, which knows every blob of `src`, in the
    // second's place. Its repository id does not match, so it must be cleared.
    std::fs::remove_dir_all(&second_cache).unwrap();
    copy_dir(&first_cache, &second_cache);
    let out = run(&["backup", "--json", src.to_str().unwrap()]);
    let summary = summary_line(&out);
    let processed = summary["total_bytes_processed"].as_u64().unwrap();
    assert!(
        summary["data_added"].as_u64().unwrap() >= processed,
        "all content stored: {summary}"
    );
    let target = env.path("restore");
    run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn damaged_cache_is_replaced() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    env.backup_json(&[&src], &[]);
    // Overwrite every file of the cache with garbage.
    for f in all_files(&env.path("cache")) {
        std::fs::write(&f, b"garbage").unwrap();
    }
    let again = env.backup_json(&[&src], &["--force"]);
    assert_eq!(again["data_blobs"], 0, "{again}");
}

/// Two backups into one repository at the same time, sharing one cache folder: both
/// succeed and both restore.
fn concurrent_backups_share_repository_and_cache(env: Env) {
    env.init();
    let mut rng = fastrand::Rng::with_seed(33);
    let (a, b) = (env.path("a"), env.path("b"));
    for (dir, n) in [(&a, 0u8), (&b, 1u8)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("shared"),
            random_bytes(&mut fastrand::Rng::with_seed(1), 3_000_000),
        )
        .unwrap();
        std::fs::write(
            dir.join("own"),
            random_bytes(&mut rng, 4_000_000 + usize::from(n)),
        )
        .unwrap();
    }
    let children: Vec<_> = [&a, &b]
        .iter()
        .map(|d| {
            env.cmd(&["backup", d.to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The cache folder of the one that got it is intact and still works.
    let again = env.backup_json(&[&a], &["--force"]);
    assert_eq!(again["data_blobs"], 0, "{again}");
    for d in [&a, &b] {
        let list = env.ok(&["snapshots", "--json", "--path", d.to_str().unwrap()]);
        let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        let id = list.as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        env.assert_restores(&id, d);
    }
}

on_both_backends!(concurrent_backups_share_repository_and_cache);
