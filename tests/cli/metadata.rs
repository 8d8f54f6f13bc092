//! What a backup carries besides names and bytes: hard links, extended attributes and
//! POSIX ACLs, and the holes of sparse files, through the real binary on real files.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::*;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A POSIX ACL as the kernel stores it in `system.posix_acl_access`: owner rw, user
/// `uid` r, owning group r, mask r, others nothing.
fn acl(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, uid),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// A file capability as the kernel stores it in `security.capability`: version 2,
/// cap_net_bind_service permitted.
fn net_bind_cap() -> [u8; 20] {
    [
        0x00, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ]
}

/// Bytes the file system allocated for `p`.
fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

/// A 64 MiB file holding 1 MiB of data at 10 MiB and 100 bytes at its end; holes elsewhere.
fn sparse_file(p: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let size = 64 << 20;
    let f = fs::File::create(p).unwrap();
    f.set_len(size).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let data = random_bytes(&mut rng, 1 << 20);
    f.write_all_at(&data, 10 << 20).unwrap();
    f.write_all_at(&[0xab; 100], size - 100).unwrap();
    drop(f);
    fs::read(p).unwrap()
}

#[test]
fn hard_links_xattrs_acls_and_holes_are_backed_up_and_restored() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::create_dir_all(src.join("e")).unwrap();
    fs::write(src.join("d/a"), b"one file, three names\n").unwrap();
    fs::hard_link(src.join("d/a"), src.join("e/b")).unwrap();
    fs::hard_link(src.join("d/a"), src.join("c")).unwrap();
    fs::write(src.join("noted"), b"x").unwrap();
    xattr::set(src.join("noted"), "user.comment", b"hello\n\0binary").unwrap();
    xattr::set(src.join("noted"), "system.posix_acl_access", &acl(4321)).unwrap();
    xattr::set(src.join("d"), "user.dir", b"on a directory").unwrap();
    xattr::set(src.join("d"), "system.posix_acl_default", &acl(4321)).unwrap();
    std::os::unix::fs::symlink("noted", src.join("link")).unwrap();
    if is_root() {
        xattr::set(src.join("noted"), "trusted.mark", b"root only").unwrap();
        xattr::set(src.join("d/a"), "security.capability", &net_bind_cap()).unwrap();
        xattr::set(src.join("link"), "trusted.on-a-symlink", b"yes").unwrap();
    } else {
        eprintln!("not root: trusted.* and security.capability are not tried");
    }
    let sparse = sparse_file(&src.join("disk.img"));
    let noted_mode = fs::metadata(src.join("noted")).unwrap().mode();

    let s = env.backup_json(&[&src], &[]);
    assert_eq!(s["total_files_processed"], 5, "{s}");
    assert_eq!(s["files_new"], 5, "{s}");
    // Holes are neither read nor stored: the repository holds about the 1 MiB of data.
    assert!(env.repo_size() < 3 << 20, "{}", env.repo_size());

    let ls = env.ok(&["ls", "--json", "latest"]);
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    assert_eq!(entry("disk.img")["sparse"], true);
    assert_eq!(entry("disk.img")["size"], 64 << 20);
    assert_eq!(entry("c")["links"], 3);
    let names = entry("noted")["xattrs"].to_string();
    assert!(names.contains("user.comment") && names.contains("system.posix_acl_access"));
    let long = String::from_utf8_lossy(&env.ok(&["ls", "-l", "latest"]).stdout).into_owned();
    let line = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {long}"))
            .to_string()
    };
    assert!(line("/noted").starts_with("-rw-r-----@"), "{long}");
    assert!(line("/e").starts_with("drwxr-xr-x  "), "{long}");

    // Restored: one inode for the three names, the attributes and ACLs, the holes.
    let target = env.path("restore");
    let t = target.to_str().unwrap();
    let out = env.ok(&["restore", "latest", "--target", t, "--verify", "--json"]);
    let summary = summary_line(&out);
    assert_eq!(summary["hard_links"], 2, "{summary}");
    let back = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &back);
    let ino = |rel: &str| fs::metadata(back.join(rel)).unwrap().ino();
    assert_eq!(ino("d/a"), ino("e/b"));
    assert_eq!(ino("d/a"), ino("c"));
    assert_eq!(fs::metadata(back.join("c")).unwrap().nlink(), 3);
    assert_eq!(
        fs::metadata(back.join("noted")).unwrap().mode(),
        noted_mode,
        "the ACL's mask and the mode agree"
    );
    assert_eq!(fs::read(back.join("disk.img")).unwrap(), sparse);
    assert!(
        allocated(&back.join("disk.img")) < 2 << 20,
        "holes were written"
    );

    // A second restore over it finds everything in place, links included.
    let out = env.ok(&["restore", "latest", "--target", t, "--json"]);
    let again = summary_line(&out);
    assert_eq!(again["files_restored"], 0, "{again}");
    assert_eq!(ino("d/a"), ino("e/b"));

    // dump writes the holes as zeros.
    let disk = src.join("disk.img");
    let dumped = env.ok(&["dump", "latest", disk.to_str().unwrap()]);
    assert!(dumped.stdout == sparse, "dump of the sparse file differs");

    // One name restored alone is a plain file.
    let one = env.path("one");
    let b = src.join("e/b");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        one.to_str().unwrap(),
        "--include",
        b.to_str().unwrap(),
    ]);
    let b_back = one.join(b.strip_prefix("/").unwrap());
    assert_eq!(fs::read(&b_back).unwrap(), b"one file, three names\n");
    assert_eq!(fs::metadata(&b_back).unwrap().nlink(), 1);

    // --no-xattrs on restore, and on backup.
    let plain = env.path("plain");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        plain.to_str().unwrap(),
        "--no-xattrs",
    ]);
    let noted = plain.join(src.strip_prefix("/").unwrap()).join("noted");
    assert_eq!(xattrs_of(&noted), Vec::new());
    env.ok(&["backup", "--no-xattrs", src.to_str().unwrap()]);
    let ls = env.ok(&["ls", "--json", "latest"]);
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("user.comment"),
        "--no-xattrs stored them"
    );
}

#[test]
fn restore_sparse_leaves_written_zeros_as_holes() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 16 MiB of written zeros between two MiB of data: dense on disk.
    let mut rng = fastrand::Rng::with_seed(3);
    let mut bytes = random_bytes(&mut rng, 1 << 20);
    bytes.extend(vec![0u8; 16 << 20]);
    bytes.extend(random_bytes(&mut rng, 1 << 20));
    fs::write(src.join("dense.img"), &bytes).unwrap();
    assert!(allocated(&src.join("dense.img")) >= 18 << 20);
    env.ok(&["backup", src.to_str().unwrap()]);
    let rel = src.strip_prefix("/").unwrap().join("dense.img");

    let plain = env.path("plain");
    env.ok(&["restore", "latest", "--target", plain.to_str().unwrap()]);
    assert!(
        allocated(&plain.join(&rel)) >= 18 << 20,
        "holes without --sparse"
    );

    let holes = env.path("holes");
    let h = holes.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", h, "--sparse", "--verify"]);
    assert_eq!(fs::read(holes.join(&rel)).unwrap(), bytes);
    // The zeros inside the edge chunks may stay written; most of them are holes.
    assert!(
        allocated(&holes.join(&rel)) < 12 << 20,
        "{}",
        allocated(&holes.join(&rel))
    );
}

/// A target that refuses a kind of attribute (here: `trusted.*`, for a restore without
/// CAP_SYS_ADMIN) gets one warning for the kind, and the restore succeeds.
#[test]
fn refused_xattrs_are_reported_once_per_kind() {
    if !is_root() {
        eprintln!("not root: trusted.* cannot be backed up, nothing to refuse");
        return;
    }
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        let f = src.join(format!("f{i}"));
        fs::write(&f, b"x").unwrap();
        xattr::set(&f, "trusted.mark", b"t").unwrap();
        xattr::set(&f, "user.kept", b"u").unwrap();
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("restore");
    let mut cmd = env.cmd(&["restore", "latest", "--target", target.to_str().unwrap()]);
    const CAP_SYS_ADMIN: nix::libc::c_ulong = 21;
    drop_capabilities(&mut cmd, &[CAP_SYS_ADMIN]);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(
        err.contains("5 extended attributes of kind trusted"),
        "{err}"
    );
    assert!(err.contains("needs root"), "{err}");
    let f0 = target.join(src.strip_prefix("/").unwrap()).join("f0");
    assert_eq!(xattrs_of(&f0), vec![(b"user.kept".to_vec(), b"u".to_vec())]);
}

/// `diff --metadata` sees a changed ACL, a new user attribute and (as root) a file
/// capability as `U` changes: the whole entry is compared, not only mode and owner.
#[test]
fn diff_metadata_sees_acls_xattrs_and_capabilities() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for name in ["acl", "attr", "cap", "same"] {
        fs::write(src.join(name), name).unwrap();
    }
    let first = env.backup_json(&[&src], &[]);
    xattr::set(src.join("acl"), "system.posix_acl_access", &acl(4321)).unwrap();
    xattr::set(src.join("attr"), "user.note", b"added").unwrap();
    if is_root() {
        xattr::set(src.join("cap"), "security.capability", &net_bind_cap()).unwrap();
    }
    let second = env.backup_json(&[&src], &[]);
    let out = env.ok(&[
        "diff",
        "--metadata",
        first["snapshot_id"].as_str().unwrap(),
        second["snapshot_id"].as_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let changed: Vec<&str> = text.lines().filter(|l| l.starts_with("U ")).collect();
    let mut want = vec!["acl", "attr"];
    if is_root() {
        want.push("cap");
    }
    for name in &want {
        assert!(
            changed.iter().any(|l| l.ends_with(&format!("/{name}"))),
            "{name}: {text}"
        );
    }
    assert!(!changed.iter().any(|l| l.ends_with("/same")), "{text}");
    assert_eq!(changed.len(), want.len(), "{text}");
}

/// Seconds and nanoseconds of `p`'s mtime, as the file system holds it.
fn mtime_of(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn times_beyond_2262_and_before_1677_are_kept_exactly() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for name in ["future", "past", "d/deep"] {
        fs::write(src.join(name), name).unwrap();
    }
    // 2300-01-01 12:00:00.123456789 UTC and 1600-06-01 00:00:00.5 UTC: 64-bit nanoseconds
    // reach only 2262-04-11 and 1677-09-21. A file system without 64-bit seconds clamps
    // them; the test compares with what the source holds.
    set_mtime(&src.join("future"), 10_413_835_200, 123_456_789);
    set_mtime(&src.join("past"), -11_670_912_000, 500_000_000);
    set_mtime(&src.join("d"), 10_413_835_200, 7);
    let want: Vec<_> = ["future", "past", "d", "d/deep"]
        .iter()
        .map(|n| (*n, mtime_of(&src.join(n))))
        .collect();
    assert_eq!(
        want[0].1,
        (10_413_835_200, 123_456_789),
        "the test's file system cannot hold 2300"
    );
    let first = env.backup_json(&[&src], &[]);
    let first = first["snapshot_id"].as_str().unwrap().to_string();

    let target = env.path("restore");
    env.ok(&["restore", &first, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (name, t) in &want {
        assert_eq!(mtime_of(&restored.join(name)), *t, "{name}");
    }

    // Shown as dates, and found by them.
    let ls = env
        .cmd(&["ls", "--json", &first])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains(r#""mtime":"2300-01-01T12:00:00.123456789+00:00""#),
        "{ls}"
    );
    let found = env.ok(&["find", "--json", "--oldest", "2299-01-01", "*"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let names: Vec<&str> = found[0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["d", "future"], "{found}");

    // Unchanged, they are taken from the parent unread; a second later is a change.
    let again = env.backup_json(&[&src], &[]);
    assert_eq!(again["files_unmodified"], 3, "{again}");
    set_mtime(&src.join("future"), 10_413_835_201, 123_456_789);
    let third = env.backup_json(&[&src], &[]);
    let out = env.ok(&[
        "diff",
        "--metadata",
        &first,
        third["snapshot_id"].as_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The folder above src/ changed too: the restore target was made in it.
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("U ") && l.contains("/src"))
        .collect();
    assert_eq!(changed.len(), 1, "{text}");
    assert!(changed[0].ends_with("/src/future"), "{text}");
    env.ok(&["check", "--read-data"]);
}
