//! Someone with full access to the store moves sealed bytes between places: blobs inside a
//! pack, whole packs, snapshots and index files. A restore never returns wrong bytes: the
//! files that need a moved object fail, loudly, and everything it restores is right.

use std::path::{Path, PathBuf};

use cairn::format::pack::{BlobType, decode_header};
use cairn::store::{Kind, ObjectName};

use crate::common::*;

/// Restores `snapshot` into a new folder; returns the exit code, stderr and the folder
/// holding the restored copy of `src`.
fn restore(env: &Env, snapshot: &str, src: &Path, name: &str) -> (Option<i32>, String, PathBuf) {
    let target = env.path(name);
    let out = env.run(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        target.join(src.strip_prefix("/").unwrap()),
    )
}

fn swap_files(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    std::fs::write(a, y).unwrap();
    std::fs::write(b, x).unwrap();
}

fn pack_path(env: &Env, id: &cairn::format::id::Id) -> PathBuf {
    env.repo_dir().join(ObjectName::new(Kind::Pack, id).path())
}

fn swapped_blobs_and_packs_never_restore_wrong_bytes(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    // Two files of one incompressible blob each, of the same size: their sealed blobs
    // have the same length and can trade places inside their pack.
    std::fs::write(src.join("left"), random_bytes(&mut rng, 100_000)).unwrap();
    std::fs::write(src.join("right"), random_bytes(&mut rng, 100_000)).unwrap();
    std::fs::write(src.join("other"), random_bytes(&mut rng, 300_000)).unwrap();
    let first = env.backup_json(&[&src], &[]);
    let first = first["snapshot_id"].as_str().unwrap().to_string();
    // A second snapshot whose new data lands in a pack of its own.
    std::fs::write(src.join("later"), random_bytes(&mut rng, 200_000)).unwrap();
    let second = env.backup_json(&[&src], &[]);
    let second = second["snapshot_id"].as_str().unwrap().to_string();

    let repo = env.open_with(env.backend(), "cache-inspect");
    let data_packs: Vec<(cairn::format::id::Id, Vec<cairn::format::pack::PackEntry>)> = repo
        .backend()
        .list(Kind::Pack)
        .unwrap()
        .into_iter()
        .map(|l| {
            let id = cairn::format::id::Id::from_hex(&l.name).unwrap();
            let bytes = std::fs::read(pack_path(&env, &id)).unwrap();
            let entries = decode_header(repo.key(), &bytes, bytes.len() as u64, &l.name).unwrap();
            (id, entries)
        })
        .filter(|(_, e)| e.iter().all(|e| e.kind == BlobType::Data))
        .collect();
    drop(repo);
    assert_eq!(data_packs.len(), 2, "one data pack per backup");

    // 1. Two sealed blobs of one pack trade places.
    let (pack, entries) = data_packs
        .iter()
        .find(|(_, e)| e.len() == 3)
        .expect("the first backup's pack");
    let (a, b) = {
        let same: Vec<_> = entries.iter().filter(|e| e.raw_length == 100_000).collect();
        (*same[0], *same[1])
    };
    assert_eq!(a.length, b.length);
    let path = pack_path(&env, pack);
    let original = std::fs::read(&path).unwrap();
    let mut swapped = original.clone();
    let (ra, rb) = (
        a.offset as usize..(a.offset + a.length) as usize,
        b.offset as usize..(b.offset + b.length) as usize,
    );
    swapped[ra.clone()].copy_from_slice(&original[rb.clone()]);
    swapped[rb].copy_from_slice(&original[ra]);
    std::fs::write(&path, &swapped).unwrap();
    let (code, err, restored) = restore(&env, &first, &src, "t-blobs");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("/left") && err.contains("/right"),
        "both files named: {err}"
    );
    assert_eq!(restored_files_are_right(&src, &restored), 1, "only `other`");
    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains(&pack.to_hex()));
    std::fs::write(&path, &original).unwrap();

    // 2. The two data packs trade names.
    let (p1, p2) = (
        pack_path(&env, &data_packs[0].0),
        pack_path(&env, &data_packs[1].0),
    );
    swap_files(&p1, &p2);
    let (code, err, restored) = restore(&env, &second, &src, "t-packs");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(restored_files_are_right(&src, &restored), 0, "{err}");
    let check = env.run(&["check", "--read-data"]);
    assert_eq!(check.status.code(), Some(1));
    let check_err = String::from_utf8_lossy(&check.stderr);
    assert!(
        check_err.contains(&data_packs[0].0.to_hex())
            && check_err.contains(&data_packs[1].0.to_hex()),
        "{check_err}"
    );
    swap_files(&p1, &p2);

    // 3. The snapshots trade names: neither restores as the other.
    let snaps = env.repo_dir().join("snapshots");
    let (s1, s2) = (snaps.join(&first), snaps.join(&second));
    swap_files(&s1, &s2);
    for (snap, name) in [(&first, "t-snap-1"), (&second, "t-snap-2")] {
        let (code, err, restored) = restore(&env, snap, &src, name);
        assert_ne!(code, Some(0), "{err}");
        assert!(
            !restored.exists(),
            "snapshot {snap} restored from moved bytes"
        );
    }
    swap_files(&s1, &s2);

    // 4. An index file's bytes replaced by a snapshot's: the index file is named as
    // damaged, and nothing is restored from what it no longer lists.
    let index_dir = env.repo_dir().join("index");
    let index = all_files(&index_dir)
        .into_iter()
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let index_bytes = std::fs::read(&index).unwrap();
    std::fs::copy(&s1, &index).unwrap();
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    let name = index.file_name().unwrap().to_string_lossy().into_owned();
    assert!(String::from_utf8_lossy(&check.stderr).contains(&name));
    std::fs::write(&index, index_bytes).unwrap();
    std::fs::remove_dir_all(env.path("cache")).unwrap();

    // Put back, everything restores again.
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&second, &src);
}

on_both_backends!(swapped_blobs_and_packs_never_restore_wrong_bytes);
