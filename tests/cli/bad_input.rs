use std::os::unix::fs::PermissionsExt;

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn wrong_password_exits_12() {
    let env = Env::new();
    env.init();
    let out = env
        .cmd(&["snapshots"])
        .env("CAIRN_PASSWORD", "not it")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("not it"),
        "the password must never be printed"
    );
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&env.repo),
        "the message names the repository"
    );
    // A backup without --init does not create it either.
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(10));
    assert!(!std::path::Path::new(&env.repo).exists());
    // With --init it does.
    env.ok(&["backup", "--init", src.to_str().unwrap()]);
    // And init refuses to overwrite it.
    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn password_from_file_and_command() {
    let env = Env::new();
    env.init();
    let pwfile = env.path("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    let out = env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &pwfile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .cmd(&[
            "--password-command",
            &format!("cat {}", pwfile.display()),
            "snapshots",
        ])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // No password source and no terminal: a clear error, not a hang.
    let out = env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no password given"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreadable_file_exits_3_and_keeps_the_rest() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("fine.txt"), b"readable").unwrap();
    std::fs::write(src.join("locked.txt"), b"secret").unwrap();
    std::fs::set_permissions(
        src.join("locked.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let mut cmd = env.cmd(&["backup", src.to_str().unwrap()]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("locked.txt"), "{}", stderr(&out));
    let listing = env.ok(&["ls", "latest"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("fine.txt"), "{listing}");
    assert!(!listing.contains("locked.txt"), "{listing}");
    let dumped = env.ok(&["dump", "latest", src.join("fine.txt").to_str().unwrap()]);
    assert_eq!(dumped.stdout, b"readable");
}

#[test]
fn corrupted_pack_is_named() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    // `fine` goes into the repository first, so that the pack damaged below holds only
    // the blobs of `data`.
    std::fs::write(src.join("fine"), b"unaffected").unwrap();
    env.backup_json(&[&src], &[]);
    std::fs::write(src.join("data"), random_bytes(&mut rng, 3 * 1024 * 1024)).unwrap();
    env.backup_json(&[&src], &[]);
    // The largest pack holds the file's data; flip one byte in its first blob.
    let packs: Vec<_> = all_files(&std::path::Path::new(&env.repo).join("data"));
    let pack = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(pack, bytes).unwrap();
    let pack_name = pack.file_name().unwrap().to_str().unwrap();
    let out = env.run(&["dump", "latest", src.join("data").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(pack_name),
        "error must name the pack: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    let target = env.path("restore");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(pack_name), "{}", stderr(&out));
    // The damaged file is not left half-written; the rest of the snapshot is restored.
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(!restored.join("data").exists());
    assert_eq!(std::fs::read(restored.join("fine")).unwrap(), b"unaffected");
}

#[test]
fn unknown_snapshot_and_bad_paths_are_clear_errors() {
    let env = Env::new();
    env.init();
    let out = env.run(&["ls", "latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no snapshots"), "{}", stderr(&out));
    let out = env.run(&["backup", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/definitely/not/here"),
        "{}",
        stderr(&out)
    );
}
