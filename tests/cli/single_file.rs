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

/// `latest` is the newest snapshot that passes `--host`, `--tag` and `--path`, for `ls`,
/// `dump`, `restore` and `diff`; `SNAPSHOT:PATH` takes a folder inside a snapshot as its
/// root.
#[test]
fn latest_follows_the_filters_and_a_snapshot_path_names_a_folder() {
    let env = Env::new();
    env.init();
    let (web, db) = (env.path("web"), env.path("db"));
    std::fs::create_dir_all(web.join("conf")).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(web.join("conf/site.conf"), b"listen 80\n").unwrap();
    std::fs::write(db.join("dump.sql"), b"create table t;\n").unwrap();
    env.backup_json(&[&web], &["--host", "web1", "--tag", "nightly"]);
    env.backup_json(&[&db], &["--host", "db1"]);
    let (web_s, db_s) = (web.to_str().unwrap(), db.to_str().unwrap());

    let site = format!("{web_s}/conf/site.conf");
    let out = env.run(&["dump", "latest", &site]);
    assert!(!out.status.success(), "the newest snapshot is db1's");
    for filter in [["--host", "web1"], ["--tag", "nightly"], ["--path", web_s]] {
        let out = env.ok(&["dump", "latest", &site, filter[0], filter[1]]);
        assert_eq!(out.stdout, b"listen 80\n", "{filter:?}");
    }
    let listing = env.ok(&["ls", "latest", "--host", "db1", "--path", db_s]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains("dump.sql"));

    // A folder as the root: restored into the target itself, listed and dumped from it.
    let folder = format!("latest:{web_s}/conf");
    let target = env.path("restored");
    env.ok(&[
        "restore",
        &folder,
        "--host",
        "web1",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(target.join("site.conf")).unwrap(),
        b"listen 80\n"
    );
    let out = env.ok(&["dump", &folder, "/site.conf", "--host", "web1"]);
    assert_eq!(out.stdout, b"listen 80\n");
    let out = env.ok(&["ls", &folder, "--host", "web1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/site.conf");

    let out = env.run(&["ls", "latest", "--host", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot passes"));
    let not_a_folder = format!("latest:{site}");
    let out = env.run(&["ls", &not_a_folder, "--host", "web1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder"));
    let out = env.run(&["diff", "latest", "latest", "--host", "web1", "--metadata"]);
    assert!(out.status.success());
}
