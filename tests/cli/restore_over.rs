//! Restores into targets that already hold data: what stands there is never removed
//! unless the snapshot holds that path, never followed when it is a symlink, and an
//! interrupted restore leaves no short file under a real name.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Backs up `src` and returns the snapshot id.
fn snapshot_of(env: &Env, src: &Path) -> String {
    let s = env.backup_json(&[src], &[]);
    s["snapshot_id"].as_str().unwrap().to_string()
}

/// Where `src`'s snapshot path lands below `target`.
fn below(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

fn restore_into(env: &Env, snapshot: &str, target: &Path) -> std::process::Output {
    env.run(&["restore", snapshot, "--target", target.to_str().unwrap()])
}

/// Temporary files a restore left below `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    names_below(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".cairn-restore-"))
        })
        .collect()
}

/// A file (and a symlink) of the snapshot where the target holds a non-empty directory:
/// the directory and what it holds stay, each conflict is named, everything else is
/// restored, and the exit code is 1.
fn non_empty_directory_is_never_replaced(env: Env) {
    env.init();
    let src = env.path("site");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("uploads"), b"a file now").unwrap();
    symlink("elsewhere", src.join("cache")).unwrap();
    std::fs::write(src.join("docs/readme"), b"restored").unwrap();
    let snap = snapshot_of(&env, &src);

    let target = env.path("target");
    let at = below(&target, &src);
    std::fs::create_dir_all(at.join("uploads/2024")).unwrap();
    std::fs::write(at.join("uploads/2024/photo.jpg"), b"precious").unwrap();
    std::fs::create_dir_all(at.join("cache/x")).unwrap();
    std::fs::write(at.join("cache/x/kept"), b"also precious").unwrap();
    // An empty directory in the way of a file holds nothing to lose: it is replaced.
    std::fs::create_dir_all(at.join("docs/readme")).unwrap();

    let out = restore_into(&env, &snap, &target);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for conflict in ["uploads", "cache"] {
        assert!(
            err.contains(&format!(
                "{}: a non-empty directory",
                at.join(conflict).display()
            )),
            "{conflict} not named: {err}"
        );
    }
    assert_eq!(
        std::fs::read(at.join("uploads/2024/photo.jpg")).unwrap(),
        b"precious"
    );
    assert_eq!(
        std::fs::read(at.join("cache/x/kept")).unwrap(),
        b"also precious"
    );
    assert_eq!(std::fs::read(at.join("docs/readme")).unwrap(), b"restored");
    assert!(temp_files(&target).is_empty(), "{:?}", temp_files(&target));
}

/// Symlinks standing in the target, where the snapshot has a directory or a file, are
/// replaced and never followed: nothing is written where they point.
fn symlinks_in_the_target_are_replaced_not_followed(env: Env) {
    env.init();
    let src = env.path("htdocs");
    std::fs::create_dir_all(src.join("css/deep")).unwrap();
    std::fs::write(src.join("css/site.css"), b"body{}").unwrap();
    std::fs::write(src.join("css/deep/x.css"), b"p{}").unwrap();
    std::fs::write(src.join("index.html"), b"<html>").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let snap = snapshot_of(&env, &src);

    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("index.html"), b"not yours").unwrap();
    std::fs::write(elsewhere.join("empty"), b"not yours either").unwrap();
    let target = env.path("target");
    let at = below(&target, &src);
    std::fs::create_dir_all(&at).unwrap();
    symlink(&elsewhere, at.join("css")).unwrap();
    symlink(elsewhere.join("index.html"), at.join("index.html")).unwrap();
    symlink(elsewhere.join("empty"), at.join("empty")).unwrap();

    let out = restore_into(&env, &snap, &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&src, &at);
    let outside: Vec<_> = names_below(&elsewhere).into_iter().collect();
    assert_eq!(
        outside,
        vec![elsewhere.join("empty"), elsewhere.join("index.html")],
        "the restore wrote outside its target"
    );
    assert_eq!(
        std::fs::read(elsewhere.join("index.html")).unwrap(),
        b"not yours"
    );
    assert_eq!(
        std::fs::read(elsewhere.join("empty")).unwrap(),
        b"not yours either"
    );

    // A symlink on the way to an included path is not followed either.
    let target2 = env.path("target2");
    let at2 = below(&target2, &src);
    std::fs::create_dir_all(at2.parent().unwrap()).unwrap();
    symlink(&elsewhere, &at2).unwrap();
    let include = src.join("css");
    env.ok(&[
        "restore",
        &snap,
        "--target",
        target2.to_str().unwrap(),
        "--include",
        include.to_str().unwrap(),
    ]);
    assert!(std::fs::symlink_metadata(&at2).unwrap().is_dir());
    assert_eq!(std::fs::read(at2.join("css/site.css")).unwrap(), b"body{}");
    assert_eq!(names_below(&elsewhere).len(), 2);
}

/// A restore run again over its own result keeps every file (same size, mtime and
/// content) without reading a pack, and fixes a file whose content was changed behind
/// the same size and mtime.
fn restore_again_keeps_identical_files(env: Env) {
    use std::os::unix::fs::MetadataExt;
    env.init();
    let src = env.path("src");
    random_tree(&src, 17);
    nix::unistd::mkfifo(
        &src.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let snap = snapshot_of(&env, &src);
    let target = env.path("target");
    env.ok(&["restore", &snap, "--target", target.to_str().unwrap()]);
    // A FIFO the same as the snapshot's is kept (same inode), not made again.
    let fifo_inode = std::fs::symlink_metadata(below(&target, &src).join("pipe"))
        .unwrap()
        .ino();
    let files = summary_line(&env.ok(&[
        "restore",
        &snap,
        "--target",
        target.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(files["files_restored"], 0, "{files}");
    assert!(files["files_unchanged"].as_u64().unwrap() > 50, "{files}");
    assert_same_tree(&src, &below(&target, &src));
    let pipe = std::fs::symlink_metadata(below(&target, &src).join("pipe")).unwrap();
    assert_eq!(pipe.ino(), fifo_inode, "the FIFO was made again");

    // Same size and mtime, other bytes: found by the content check and restored.
    let victim = below(&target, &src).join("media/big.bin");
    let meta = std::fs::metadata(&victim).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    set_mtime(&victim, meta.mtime(), meta.mtime_nsec());
    let again = summary_line(&env.ok(&[
        "restore",
        &snap,
        "--target",
        target.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(again["files_restored"], 1, "{again}");
    assert_same_tree(&src, &below(&target, &src));
}

on_both_backends!(
    non_empty_directory_is_never_replaced,
    symlinks_in_the_target_are_replaced_not_followed,
    restore_again_keeps_identical_files,
);

/// Every regular file below `restored` that has a real name is complete: the bytes of
/// the same file below `src`. Returns how many there were.
fn complete_under_real_names(src: &Path, restored: &Path) -> usize {
    let mut n = 0;
    for f in names_below(restored) {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.starts_with(".cairn-restore-") || !f.symlink_metadata().unwrap().is_file() {
            continue;
        }
        let rel = f.strip_prefix(restored).unwrap();
        assert!(
            std::fs::read(&f).unwrap() == std::fs::read(src.join(rel)).unwrap(),
            "{} is visible under its real name but incomplete",
            f.display()
        );
        n += 1;
    }
    n
}

/// Big files restored over a slow link (one connection, a throttled local store is not
/// available, so many files of several packs): Ctrl-C while the first file is written
/// makes the restore remove its temporary files and exit 130; kill -9 leaves temporary
/// files but no short file under a real name; the next restore completes, keeping what
/// was already complete.
#[test]
fn interrupted_restores_leave_no_short_files_and_the_next_finishes() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..12 {
        std::fs::write(
            src.join(format!("part-{i:02}")),
            random_bytes(&mut rng, 6 << 20),
        )
        .unwrap();
    }
    let snap = snapshot_of(&env, &src);
    let target = env.path("target");
    let at = below(&target, &src);
    let t = target.to_str().unwrap();

    // Ctrl-C as soon as a temporary file appears.
    let status = signal_when(
        env.cmd(&["restore", &snap, "--target", t]),
        nix::sys::signal::Signal::SIGINT,
        || !temp_files(&target).is_empty(),
    );
    if let Some(status) = status {
        assert_eq!(status.code(), Some(130), "Ctrl-C: {status:?}");
        assert!(
            temp_files(&target).is_empty(),
            "Ctrl-C left {:?}",
            temp_files(&target)
        );
        complete_under_real_names(&src, &at);
    }

    // kill -9 once some file is complete and others are being written.
    let status = signal_when(
        env.cmd(&["restore", &snap, "--target", t]),
        nix::sys::signal::Signal::SIGKILL,
        || {
            let complete = names_below(&at)
                .iter()
                .filter(|p| !p.to_string_lossy().contains(".cairn-restore-"))
                .count();
            complete >= 1 && !temp_files(&target).is_empty()
        },
    );
    let kept = complete_under_real_names(&src, &at);
    if status.is_some() {
        assert!(kept < 12, "the kill landed after the restore was complete");
    }

    let done = summary_line(&env.ok(&["restore", &snap, "--target", t, "--json"]));
    assert_eq!(
        done["files_unchanged"].as_u64().unwrap() + done["files_restored"].as_u64().unwrap(),
        12,
        "{done}"
    );
    assert!(
        done["files_unchanged"].as_u64().unwrap() >= kept as u64,
        "complete files were downloaded again: {done}"
    );
    assert_same_tree(&src, &at);
    assert!(temp_files(&target).is_empty(), "{:?}", temp_files(&target));
}

/// Sockets are counted as skipped, not as restored.
#[test]
fn sockets_are_reported_as_skipped() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    std::fs::write(src.join("file"), b"x").unwrap();
    let snap = snapshot_of(&env, &src);
    let target = env.path("target");
    let out = env.ok(&["restore", &snap, "--target", target.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("skipped 1 sockets"), "{err}");
    assert!(err.contains(", 0 other,"), "{err}");
    let json = summary_line(&env.ok(&[
        "restore",
        &snap,
        "--target",
        target.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(json["skipped"], 1, "{json}");
    assert_eq!(json["other_restored"], 0, "{json}");
    assert!(!below(&target, &src).join("sock").exists());
}

/// A directory of mode 0500 restored before is written into again by the next restore
/// (a file in it changed), also without the capability that lets root ignore modes; and
/// a restore whose stderr reader has gone finishes with exit code 0, no panic.
#[test]
fn read_only_directories_and_a_closed_stderr() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("locked/in"), b"original").unwrap();
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o500)).unwrap();
    let snap = snapshot_of(&env, &src);
    let target = env.path("target");
    let t = target.to_str().unwrap();
    env.ok(&["restore", &snap, "--target", t]);
    let locked = below(&target, &src).join("locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::remove_file(locked.join("in")).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();

    let mut cmd = env.cmd(&["restore", &snap, "--target", t]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(locked.join("in")).unwrap(), b"original");
    assert_same_tree(&src, &below(&target, &src));

    let mut child = env
        .cmd(&["restore", &snap, "--target", t])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
}
