use crate::common::*;

fn random_trees_restore_byte_for_byte(env: Env) {
    env.init();
    for seed in [1, 2] {
        let src = env.path(&format!("src{seed}"));
        random_tree(&src, seed);
        let summary = env.backup_json(&[&src], &[]);
        assert_eq!(summary["files_failed"], 0);
        env.assert_restores("latest", &src);
    }
}

fn unchanged_rerun_reads_nothing_and_restores_the_same(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 3);
    env.backup_json(&[&src], &[]);
    let again = env.backup_json(&[&src], &[]);
    assert_eq!(again["files_new"], 0);
    assert_eq!(again["files_changed"], 0);
    assert_eq!(again["data_blobs"], 0, "{again}");
    // The source tree itself is unchanged. Its ancestors (/tmp and the scratch folder) are
    // stored too, and other tests running beside this one change /tmp's mtime; so at most
    // those few trees are new: one tree pack and one index, then the snapshot.
    let depth = src.ancestors().count() as u64;
    assert!(again["dirs_changed"].as_u64().unwrap() <= depth, "{again}");
    assert!(again["tree_blobs"].as_u64().unwrap() <= depth, "{again}");
    assert!(again["requests"]["put"].as_u64().unwrap() <= 3, "{again}");
    assert!(again["data_added"].as_u64().unwrap() < 64 * 1024, "{again}");
    env.assert_restores("latest", &src);
}

#[test]
fn excludes_leave_paths_out() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("marked")).unwrap();
    std::fs::write(src.join("keep/a.txt"), b"a").unwrap();
    std::fs::write(src.join("keep/b.tmp"), b"b").unwrap();
    std::fs::write(src.join("cache/c"), b"c").unwrap();
    std::fs::write(src.join("marked/.nobackup"), b"").unwrap();
    std::fs::write(src.join("marked/d"), b"d").unwrap();
    let patterns = env.path("patterns");
    std::fs::write(
        &patterns,
        format!("# comment\n{}\n", src.join("cache").display()),
    )
    .unwrap();
    env.backup_json(
        &[&src],
        &[
            "--exclude",
            "*.tmp",
            "--exclude-file",
            patterns.to_str().unwrap(),
            "--exclude-if-present",
            ".nobackup",
        ],
    );
    let out = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("keep/a.txt"), "{listing}");
    assert!(!listing.contains("b.tmp"), "{listing}");
    assert!(!listing.contains("cache"), "{listing}");
    assert!(!listing.contains("marked"), "{listing}");
}

#[test]
fn case_blind_patterns_caches_large_files_and_path_lists() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for d in ["keep", "Downloads", "build-cache", "fake-cache", "nul"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("keep/small"), vec![1u8; 1000]).unwrap();
    std::fs::write(src.join("keep/big"), vec![2u8; 3000]).unwrap();
    std::fs::write(src.join("keep/DISK.ISO"), b"iso").unwrap();
    std::fs::write(src.join("Downloads/x"), b"x").unwrap();
    std::fs::write(
        src.join("build-cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    std::fs::write(src.join("build-cache/obj"), b"o").unwrap();
    std::fs::write(src.join("fake-cache/CACHEDIR.TAG"), b"no signature").unwrap();
    std::fs::write(src.join("nul/line\nbreak"), b"n").unwrap();
    env.backup_json(
        &[&src],
        &[
            "--iexclude",
            "*.iso",
            "--iexclude",
            "downloads/",
            "--exclude-caches",
            "--exclude-larger-than",
            "2k",
        ],
    );
    let out = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("keep/small"), "{listing}");
    assert!(
        !listing.contains("keep/big"),
        "larger than 2 KiB: {listing}"
    );
    assert!(!listing.contains("DISK.ISO"), "{listing}");
    assert!(!listing.contains("Downloads"), "{listing}");
    assert!(!listing.contains("build-cache"), "{listing}");
    assert!(
        listing.contains("fake-cache/CACHEDIR.TAG"),
        "unsigned: {listing}"
    );
    let out = env.run(&[
        "backup",
        "--exclude-larger-than",
        "lots",
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "a bad size is a usage error");

    // Path lists: lines (comments and blank lines skipped) and NUL-separated names, which
    // may hold newlines.
    let list = env.path("list");
    std::fs::write(
        &list,
        format!("# what to keep\n\n{}\n", src.join("keep/small").display()),
    )
    .unwrap();
    let raw = env.path("raw");
    let mut bytes = src
        .join("nul/line\nbreak")
        .into_os_string()
        .into_encoded_bytes();
    bytes.push(0);
    bytes.extend_from_slice(src.join("Downloads").as_os_str().as_encoded_bytes());
    bytes.push(0);
    std::fs::write(&raw, bytes).unwrap();
    env.ok(&[
        "backup",
        "--files-from",
        list.to_str().unwrap(),
        "--files-from-raw",
        raw.to_str().unwrap(),
    ]);
    let out = env.ok(&["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let newest = snaps.as_array().unwrap().last().unwrap();
    let paths = newest["paths"].as_array().unwrap().clone();
    assert_eq!(paths.len(), 3, "{paths:?}");
    let dumped = env.ok(&[
        "dump",
        "latest",
        src.join("nul/line\nbreak").to_str().unwrap(),
    ]);
    assert_eq!(dumped.stdout, b"n");

    let empty = env.path("empty-list");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let out = env.run(&["backup", "--files-from", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name no path"));
}

#[test]
fn dry_run_writes_nothing() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    random_tree(&src, 4);
    let before = env.repo_size();
    let summary = env.backup_json(&[&src], &["--dry-run"]);
    assert!(summary["data_added"].as_u64().unwrap() > 0);
    assert!(summary["snapshot_id"].is_null());
    assert_eq!(env.repo_size(), before);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

fn snapshots_and_ls_json(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("x"), b"12345").unwrap();
    env.backup_json(&[&src], &["--tag", "daily", "--host", "box"]);
    let out = env.ok(&["snapshots", "--json", "--tag", "daily"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snap = &list[0];
    assert_eq!(snap["hostname"], "box");
    assert_eq!(snap["tags"][0], "daily");
    assert_eq!(snap["paths"][0], src.to_str().unwrap());
    let none = env.ok(&["snapshots", "--json", "--host", "other"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&none.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = env.ok(&["ls", "--json", "latest", src.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let x = lines.iter().find(|l| l["name"] == "x").expect("x listed");
    assert_eq!(x["size"], 5);
    assert_eq!(x["type"], "file");
}

#[test]
fn one_file_system_keeps_mount_points_empty() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let mnt = src.join("mnt");
    let Some(_mounted) = Tmpfs::mount(&mnt, "size=1m") else {
        eprintln!("one_file_system test needs root to mount a tmpfs; not run");
        return;
    };
    std::fs::write(src.join("here"), b"same fs").unwrap();
    std::fs::write(mnt.join("other-fs"), b"on the tmpfs").unwrap();

    env.backup_json(&[&src], &["--one-file-system"]);
    let out = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("/src/here"), "{listing}");
    assert!(
        listing.contains("/src/mnt"),
        "the mount point itself is kept: {listing}"
    );
    assert!(!listing.contains("other-fs"), "{listing}");

    // Without the option the other file system is included.
    env.backup_json(&[&src], &[]);
    let out = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("other-fs"));
}

on_both_backends!(
    random_trees_restore_byte_for_byte,
    unchanged_rerun_reads_nothing_and_restores_the_same,
    snapshots_and_ls_json,
);

/// Tools that copy repositories (rclone, git, a sync from S3) drop empty folders; the copy
/// takes backups, prunes and checks like the original.
#[test]
fn repository_copied_without_empty_folders_takes_backups() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    random_tree(&src, 8);
    env.backup_json(&[&src], &[]);
    remove_empty_dirs(&env.repo_dir());
    assert!(!env.repo_dir().join("locks").exists());
    std::fs::write(src.join("new.bin"), b"written after the copy").unwrap();
    env.backup_json(&[&src], &[]);
    env.ok(&["forget", "--keep-last", "1"]);
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);
}

fn remove_empty_dirs(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            remove_empty_dirs(&path);
            let _ = std::fs::remove_dir(&path);
        }
    }
}
