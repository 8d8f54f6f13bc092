//! Hostile and odd input: damaged, empty and truncated objects, unknown format versions, a
//! key file of another repository, an index entry that points outside its pack, and odd
//! entries in the source (long names, huge directories, FIFOs, sockets, devices, files
//! that change or vanish while the backup runs). Each ends in a clear error or documented
//! behaviour with the documented exit code, never a panic or a hang.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn::format::id::Id;
use cairn::format::index::IndexFile;
use cairn::repo::tree_walk::find_node;
use cairn::store::{Kind, ObjectName};

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn only_object(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = all_files(dir)
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// A repository with one small snapshot of two files.
fn small_repository(env: &Env) -> (PathBuf, String) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(17);
    std::fs::write(src.join("victim"), random_bytes(&mut rng, 50_000)).unwrap();
    std::fs::write(src.join("bystander"), random_bytes(&mut rng, 70_000)).unwrap();
    let s = env.backup_json(&[&src], &[]);
    (src, s["snapshot_id"].as_str().unwrap().to_string())
}

#[test]
fn damaged_empty_and_truncated_objects_are_named() {
    let env = Env::new();
    let (src, snap) = small_repository(&env);
    let store = env.repo_dir();

    // A key file with one byte changed: no key opens, and the damage is named.
    let key = only_object(&store.join("keys"));
    let key_bytes = std::fs::read(&key).unwrap();
    let mut damaged = key_bytes.clone();
    let last = damaged.len() - 5;
    damaged[last] ^= 0x20;
    // The only key file damaged (here it no longer decodes; emptied next): damage, not
    // a wrong password.
    for bytes in [&damaged[..], b""] {
        std::fs::write(&key, bytes).unwrap();
        let out = env.run(&["snapshots"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("no usable key file"), "{err}");
        assert!(err.contains(&name_of(&key)), "{err}");
        assert!(!err.contains("cairn check"), "{err}");
    }
    std::fs::write(&key, &key_bytes).unwrap();

    // The config, changed and truncated.
    let config = store.join("config");
    let config_bytes = std::fs::read(&config).unwrap();
    for bad in [&config_bytes[..config_bytes.len() / 2], b"".as_slice()] {
        std::fs::write(&config, bad).unwrap();
        let out = env.run(&["snapshots"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    std::fs::write(&config, &config_bytes).unwrap();

    // An empty snapshot: listed as damaged, `check` names it and fails.
    let snapshot = store.join("snapshots").join(&snap);
    let snapshot_bytes = std::fs::read(&snapshot).unwrap();
    std::fs::write(&snapshot, b"").unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&snap), "{}", stderr(&out));
    std::fs::write(&snapshot, &snapshot_bytes).unwrap();

    // A data pack cut in half: `check --read-data` names it, the file in it fails to
    // restore, loudly, and is not left behind.
    let packs: Vec<PathBuf> = all_files(&store.join("data"))
        .into_iter()
        .filter(|p| !name_of(p).starts_with('.'))
        .collect();
    let data_pack = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let pack_bytes = std::fs::read(data_pack).unwrap();
    std::fs::write(data_pack, &pack_bytes[..pack_bytes.len() / 2]).unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&name_of(data_pack)),
        "{}",
        stderr(&out)
    );
    let target = env.path("t");
    let out = env.run(&["restore", &snap, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("victim") || stderr(&out).contains("bystander"));
    restored_files_are_right(&src, &target.join(src.strip_prefix("/").unwrap()));
    std::fs::write(data_pack, &pack_bytes).unwrap();
    env.ok(&["check", "--read-data"]);
}

#[test]
fn unknown_format_versions_say_to_upgrade() {
    let env = Env::new();
    let (_, snap) = small_repository(&env);
    let repo = env.open_with(env.backend(), "cache-craft");

    // A snapshot from a newer cairn: listed as such, the others still work.
    let (_, mut newer) = repo.snapshots().unwrap().into_iter().next().unwrap();
    newer.v = 7;
    let (id, bytes) = repo.seal_meta(&newer).unwrap();
    repo.backend()
        .write(&ObjectName::new(Kind::Snapshot, &id), &bytes)
        .unwrap();
    let out = env.run(&["snapshots"]);
    assert!(
        stderr(&out).contains("uses format version 7, but this cairn understands version 1"),
        "{}",
        stderr(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&snap[..8]),
        "{out:?}"
    );
    // Prune refuses to run while a snapshot cannot be read: its data would look unused.
    let packs_before = all_files(&env.repo_dir().join("data")).len();
    let out = env.run(&["prune", "--keep-delete", "0", "--max-unused", "0%"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Prune deletes nothing while a snapshot cannot be read"),
        "{}",
        stderr(&out)
    );
    assert_eq!(all_files(&env.repo_dir().join("data")).len(), packs_before);
    // `forget ID` removes a snapshot that cannot be read, and prune runs again.
    env.ok(&["forget", &id.to_hex()[..10]]);
    assert!(!env.repo_dir().join("snapshots").join(id.to_hex()).exists());
    env.ok(&["prune"]);

    // A repository from a newer cairn: refused with what to do.
    let mut config = repo.config().clone();
    config.v = 99;
    let (_, bytes) = repo.seal_meta(&config).unwrap();
    drop(repo);
    std::fs::write(env.repo_dir().join("config"), bytes).unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("uses format version 99") && stderr(&out).contains("upgrade cairn"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn key_file_of_another_repository_is_named() {
    let env = Env::new();
    small_repository(&env);
    let other = Env::new();
    other.init();
    let own = only_object(&env.repo_dir().join("keys"));
    let foreign = only_object(&other.repo_dir().join("keys"));
    std::fs::remove_file(&own).unwrap();
    std::fs::copy(
        &foreign,
        env.repo_dir().join("keys").join(name_of(&foreign)),
    )
    .unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to another repository")
            && stderr(&out).contains(&name_of(&foreign)),
        "{}",
        stderr(&out)
    );
}

/// An index entry moved past the end of its pack (as a buggy writer or someone with the
/// key could make it): the file that needs it fails naming the pack, the rest restores.
#[test]
fn index_entry_outside_its_pack_fails_that_file_only() {
    let env = Env::new();
    let (src, snap) = small_repository(&env);
    let repo = env.open_with(env.backend(), "cache-craft");
    let (_, snapshot) = repo.snapshots().unwrap().into_iter().next().unwrap();
    let victim = find_node(&repo, snapshot.tree, &src.join("victim")).unwrap();
    let blob = victim.content[0];
    let index_path = only_object(&env.repo_dir().join("index"));
    let old_id = Id::from_hex(&name_of(&index_path)).unwrap();
    let mut index: IndexFile = repo.load_meta(&old_id).unwrap();
    let mut pack_id = None;
    for pack in &mut index.packs {
        for e in &mut pack.blobs {
            if e.id == blob {
                e.offset = pack.size as u32 + 1000;
                pack_id = Some(pack.id);
            }
        }
    }
    let pack_id = pack_id.expect("the victim's blob is indexed");
    let (new_id, bytes) = repo.seal_meta(&index).unwrap();
    repo.backend()
        .write(&ObjectName::new(Kind::Index, &new_id), &bytes)
        .unwrap();
    std::fs::remove_file(&index_path).unwrap();
    drop(repo);

    let target = env.path("t");
    let out = env.run(&["restore", &snap, "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/victim") && err.contains(&pack_id.to_hex()),
        "{err}"
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(restored_files_are_right(&src, &restored), 1);
    assert!(restored.join("bystander").exists());
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&pack_id.to_hex()), "{}", stderr(&out));
}

/// Names of 255 bytes (the longest Linux allows), 100,000 entries in one directory, FIFOs,
/// sockets and (as root) device nodes: all backed up without reading or hanging on any of
/// them, and restored as documented (sockets are not recreated).
#[test]
fn long_names_huge_directories_and_special_files() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let crowd = src.join("crowd");
    std::fs::create_dir_all(&crowd).unwrap();
    for i in 0..100_000 {
        let path = crowd.join(format!("entry-{i:06}"));
        if i % 10_000 == 0 {
            std::fs::write(&path, format!("content {i}")).unwrap();
        } else {
            std::fs::File::create(&path).unwrap();
        }
    }
    let long = "n".repeat(250) + ".long";
    assert_eq!(long.len(), 255);
    std::fs::write(src.join(&long), b"a name as long as Linux allows").unwrap();
    std::fs::create_dir_all(src.join(&long[..255 - 4]).join(&long)).unwrap();
    let special = src.join("special");
    std::fs::create_dir_all(&special).unwrap();
    nix::unistd::mkfifo(
        &special.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(special.join("socket")).unwrap();
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        nix::sys::stat::mknod(
            &special.join("null-device"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }

    let summary = env.backup_json(&[&src], &[]);
    assert_eq!(summary["files_failed"], 0, "{summary}");
    let target = env.path("t");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read_dir(restored.join("crowd")).unwrap().count(),
        100_000
    );
    assert_eq!(
        std::fs::read(restored.join("crowd/entry-050000")).unwrap(),
        b"content 50000"
    );
    assert_eq!(
        std::fs::read(restored.join(&long)).unwrap(),
        b"a name as long as Linux allows"
    );
    assert!(restored.join(&long[..255 - 4]).join(&long).is_dir());
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let fifo = std::fs::symlink_metadata(restored.join("special/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o777, 0o640);
    assert!(
        !restored.join("special/socket").exists(),
        "sockets are not recreated"
    );
    if root {
        let dev = std::fs::symlink_metadata(restored.join("special/null-device")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    }
}

/// While a backup runs, one file keeps growing and shrinking and others appear and vanish.
/// The backup finishes (exit 0, or 3 naming only vanished files), and what it stored is
/// self-consistent: `check --read-data` passes, `restore --verify` passes, and the files
/// that stood still restore identical.
#[test]
fn files_that_change_or_vanish_during_the_backup() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    random_tree(&src, 61);
    let churn = env.path("churn");
    std::fs::create_dir_all(&churn).unwrap();
    std::fs::write(
        churn.join("busy"),
        random_bytes(&mut fastrand::Rng::new(), 1 << 20),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, churn) = (stop.clone(), churn.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(w);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if w == 0 {
                        // Grows and shrinks between 0 and 3 MiB, rewritten in place.
                        let len = rng.usize(..3 << 20);
                        let _ = std::fs::write(churn.join("busy"), random_bytes(&mut rng, len));
                    } else {
                        let p = churn.join(format!("fleeting-{}", i % 50));
                        if p.exists() {
                            let _ = std::fs::remove_file(&p);
                        } else {
                            let _ = std::fs::write(&p, random_bytes(&mut rng, 20_000));
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let out = env.run(&[
        "backup",
        "--json",
        src.to_str().unwrap(),
        churn.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(3), "{}", stderr(&out));
    for line in stderr(&out).lines().filter(|l| l.starts_with("error")) {
        assert!(
            line.contains("/churn/fleeting-"),
            "unexpected failure: {line}"
        );
    }
    env.ok(&["check", "--read-data"]);
    // Restored with --verify: the changing file is whatever the snapshot holds of it.
    env.assert_restores("latest", &src);
}
