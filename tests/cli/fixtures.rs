//! Repositories written by earlier format versions (tests/fixtures/) are read, restored,
//! checked and written to by this cairn.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use crate::common::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs cairn on the copy of a fixture with its password, insisting on success.
fn run_ok(env: &Env, password: &str, args: &[&str]) -> std::process::Output {
    let out = env
        .cmd(args)
        .env("CAIRN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Checks the fixture's data (`--read-data`), restores its latest snapshot and checks what
/// every fixture holds in `dir`: `hello.txt` with `text`, mode 0640 and `mtime` (seconds),
/// and the symlink `link` to it. Returns the restored `dir`.
fn restore_and_check_hello(env: &Env, pw: &str, dir: &str, text: &[u8], mtime: i64) -> PathBuf {
    run_ok(env, pw, &["check", "--read-data"]);
    let target = env.path("restore");
    run_ok(
        env,
        pw,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    let restored = target.join(dir);
    let hello = restored.join("hello.txt");
    assert_eq!(std::fs::read(&hello).unwrap(), text);
    let meta = std::fs::metadata(&hello).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.mtime(), mtime);
    assert_eq!(
        std::fs::read_link(restored.join("link")).unwrap(),
        PathBuf::from("hello.txt")
    );
    restored
}

/// The content of the fixtures' `sparse.img` (versions 3 and 4): 300,000 bytes, byte i =
/// (i * 7919) mod 251 but for zeros from 8,192 to 200,000.
fn sparse_pattern() -> Vec<u8> {
    (0..300_000u64)
        .map(|i| {
            if (8192..200_000).contains(&i) {
                0
            } else {
                ((i * 7919) % 251) as u8
            }
        })
        .collect()
}

#[test]
fn version_2_repository_is_read_restored_checked_and_extended() {
    let env = Env::new();
    copy_dir(&fixture("repo-v2"), std::path::Path::new(&env.repo));
    let pw = "fixture-v2";
    let snaps = run_ok(&env, pw, &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["hostname"], "fixture", "{snaps}");
    let ls = run_ok(&env, pw, &["ls", "latest"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("/tmp/fx/src/docs/sub/pattern.bin"), "{ls}");
    let docs = restore_and_check_hello(
        &env,
        pw,
        "tmp/fx/src/docs",
        b"hello from a version 2 repository\n",
        1_767_323_045, // 2026-01-02 03:04:05 UTC
    );
    let pattern: Vec<u8> = (0..300_000u64).map(|i| ((i * 7919) % 251) as u8).collect();
    assert_eq!(
        std::fs::read(docs.join("sub/pattern.bin")).unwrap(),
        pattern
    );

    // This cairn writes to it as it is: a backup deduplicating against the old data, a
    // prune, and the old snapshot still whole.
    let src = env.path("src");
    random_tree(&src, 61);
    std::fs::write(src.join("pattern.bin"), &pattern).unwrap();
    run_ok(&env, pw, &["backup", src.to_str().unwrap()]);
    run_ok(&env, pw, &["prune"]);
    run_ok(&env, pw, &["check", "--read-data"]);
    let again = env.path("again");
    run_ok(
        &env,
        pw,
        &["restore", "latest", "--target", again.to_str().unwrap()],
    );
    assert_same_tree(&src, &again.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn version_3_repository_is_read_restored_checked_and_extended() {
    let env = Env::new();
    copy_dir(&fixture("repo-v3"), std::path::Path::new(&env.repo));
    let pw = "fixture-v3";
    let ls = run_ok(&env, pw, &["ls", "--json", "latest"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("/tmp/fx3/src/data/sparse.img"), "{ls}");
    let data = restore_and_check_hello(
        &env,
        pw,
        "tmp/fx3/src/data",
        b"hello from a version 3 repository\n",
        1_780_272_000, // 2026-06-01 00:00:00 UTC
    );
    // Version 3 recorded no device: the two names come back as two copies.
    let (a, b) = (data.join("hard/a.txt"), data.join("sub/b.txt"));
    assert_eq!(std::fs::read(&a).unwrap(), b"one inode, two names\n");
    assert_eq!(std::fs::read(&b).unwrap(), b"one inode, two names\n");
    assert_ne!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
    let pattern = sparse_pattern();
    assert_eq!(std::fs::read(data.join("sparse.img")).unwrap(), pattern);

    // Its zeros were stored as data; --sparse makes them holes again.
    let sparse = env.path("sparse");
    run_ok(
        &env,
        pw,
        &[
            "restore",
            "latest",
            "--target",
            sparse.to_str().unwrap(),
            "--sparse",
            "--verify",
        ],
    );
    let img = sparse.join("tmp/fx3/src/data/sparse.img");
    assert_eq!(std::fs::read(&img).unwrap(), pattern);
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(allocated < 200_000, "{allocated} bytes allocated");

    // This cairn writes version 2 trees into it beside the old ones; all stay readable.
    let src = env.path("src");
    random_tree(&src, 62);
    let first_file = all_files(&src)
        .into_iter()
        .find(|p| p.symlink_metadata().unwrap().is_file())
        .unwrap();
    std::fs::hard_link(&first_file, src.join("second-name")).unwrap();
    run_ok(&env, pw, &["backup", src.to_str().unwrap()]);
    run_ok(&env, pw, &["check", "--read-data"]);
    let again = env.path("again");
    run_ok(
        &env,
        pw,
        &["restore", "latest", "--target", again.to_str().unwrap()],
    );
    assert_same_tree(&src, &again.join(src.strip_prefix("/").unwrap()));
    let old = env.path("old");
    let snaps = run_ok(&env, pw, &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    run_ok(
        &env,
        pw,
        &["restore", &first, "--target", old.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(old.join("tmp/fx3/src/data/sparse.img")).unwrap(),
        pattern
    );
}

#[test]
fn version_4_repository_is_read_restored_checked_and_extended() {
    let env = Env::new();
    copy_dir(&fixture("repo-v4"), std::path::Path::new(&env.repo));
    let pw = "fixture-v4";
    let data = restore_and_check_hello(
        &env,
        pw,
        "tmp/fx4/src/data",
        b"hello from a version 4 repository\n",
        1_793_491_200, // 2026-11-01 00:00:00 UTC
    );
    assert_eq!(
        xattr::get(data.join("hello.txt"), "user.fixture").unwrap(),
        Some(b"version 4".to_vec())
    );
    // Version 2 trees record the device: the two names come back as one file.
    let (a, b) = (data.join("hard/a.txt"), data.join("sub/b.txt"));
    assert_eq!(std::fs::read(&b).unwrap(), b"one inode, two names\n");
    assert_eq!(
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino()
    );
    let pattern = sparse_pattern();
    let img = data.join("sparse.img");
    assert_eq!(std::fs::read(&img).unwrap(), pattern);
    let allocated = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(allocated < 200_000, "{allocated} bytes allocated");

    // This cairn writes a version 3 tree into it (a time after 2262) beside the old ones.
    let src = env.path("src");
    random_tree(&src, 63);
    std::fs::write(src.join("far"), b"far").unwrap();
    set_mtime(&src.join("far"), 10_413_835_200, 9);
    let out = run_ok(&env, pw, &["backup", "--json", src.to_str().unwrap()]);
    let new = summary_line(&out)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    run_ok(&env, pw, &["prune"]);
    run_ok(&env, pw, &["check", "--read-data"]);
    let again = env.path("again");
    run_ok(
        &env,
        pw,
        &["restore", &new, "--target", again.to_str().unwrap()],
    );
    let restored = again.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    let far = std::fs::metadata(restored.join("far")).unwrap();
    assert_eq!((far.mtime(), far.mtime_nsec()), (10_413_835_200, 9));
    // The fixture's snapshot (dated after this test was written) is whole still.
    let old = env.path("old");
    run_ok(
        &env,
        pw,
        &[
            "restore",
            "latest",
            "--host",
            "fixture",
            "--target",
            old.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(old.join("tmp/fx4/src/data/hello.txt")).unwrap(),
        b"hello from a version 4 repository\n"
    );
}
