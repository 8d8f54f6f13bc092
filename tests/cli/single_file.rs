use crate::common::*;

fn dump_and_include_restore_return_each_snapshots_version(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let file = src.join("sub/notes.txt");
    std::fs::write(&file, b"old version\n").unwrap();
    std::fs::write(src.join("other.txt"), b"other").unwrap();
    let old = env.backup_json(&[&src], &[]);
    let old_id = old["snapshot_id"].as_str().unwrap().to_string();
    std::fs::write(&file, b"new version, longer than the old one\n").unwrap();
    let new = env.backup_json(&[&src], &[]);
    assert_eq!(new["files_changed"], 1, "{new}");
    let new_id = new["snapshot_id"].as_str().unwrap().to_string();

    let f = file.to_str().unwrap();
    let dumped = env.ok(&["dump", &old_id[..8], f]);
    assert_eq!(dumped.stdout, b"old version\n");
    let dumped = env.ok(&["dump", &new_id, f]);
    assert_eq!(dumped.stdout, b"new version, longer than the old one\n");
    let dumped = env.ok(&["dump", "latest", f]);
    assert_eq!(dumped.stdout, b"new version, longer than the old one\n");

    for (id, want) in [
        (&old_id, &b"old version\n"[..]),
        (&new_id, &b"new version, longer than the old one\n"[..]),
    ] {
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&[
            "restore",
            id,
            "--target",
            target.to_str().unwrap(),
            "--include",
            f,
        ]);
        let restored = target.join(file.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(&restored).unwrap(), want);
        // Only the file (and the folders on its way) came back.
        assert!(
            !target
                .join(src.join("other.txt").strip_prefix("/").unwrap())
                .exists()
        );
    }

    // A directory is refused by dump, with a pointer to restore.
    let out = env.run(&["dump", "latest", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a file"));
}

on_both_backends!(dump_and_include_restore_return_each_snapshots_version);
