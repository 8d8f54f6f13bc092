//! A repository's worst day: packs lost or flipped, an index file cut short, the config or
//! the key files gone, snapshots whose data no source has any more. Each test damages a
//! repository as a user's storage would, follows what cairn prints (check's steps, then
//! `repair`), and ends with a repository that checks clean, complete backups and every
//! intact file restorable.

use std::path::PathBuf;
use std::process::Output;

use crate::common::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's objects of one folder (`data`, `index`, `snapshots`, `keys`).
fn objects(env: &Env, dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = all_files(&env.repo_dir().join(dir))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// The largest data pack: the one holding the big files of these tests.
fn largest_pack(env: &Env) -> PathBuf {
    objects(env, "data")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack")
}

/// A source tree of two big random files and some small ones.
fn source(env: &Env, seed: u64) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    std::fs::write(src.join("big"), random_bytes(&mut rng, 3 << 20)).unwrap();
    std::fs::write(src.join("docs/report"), random_bytes(&mut rng, 2 << 20)).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("docs/note{i}")), format!("note {i}\n")).unwrap();
    }
    src
}

fn check_json(env: &Env, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    (out.status.code(), summary_line(&out))
}

fn snapshot_id(summary: &serde_json::Value) -> String {
    summary["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// Item 1 of the damage issue: a pack deleted from the store. The next backup, even of
/// unchanged files, stores their data again, so its snapshot (and every older one that
/// needs the same data) is complete; `repair index` then drops the lost pack and prune
/// runs again.
fn a_lost_pack_is_stored_again_by_the_next_backup(env: Env) {
    env.init();
    let src = source(&env, 1);
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    std::fs::remove_file(largest_pack(&env)).unwrap();

    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is missing from the store"), "{err}");
    assert!(err.contains("/big"), "affected file named: {err}");
    assert!(
        err.contains("`cairn repair index`"),
        "the step named: {err}"
    );

    // The case the issue reports: `backup --force` of the intact source stored nothing.
    let healed = env.backup_json(&[&src], &["--force"]);
    assert!(
        healed["data_added"].as_u64().unwrap() >= 5 << 20,
        "the lost data is stored again: {healed}"
    );
    env.assert_restores("latest", &src);
    // The first snapshot needs the same chunks: it is whole again too.
    env.assert_restores(&first, &src);
    let (code, report) = check_json(&env, &[]);
    assert_eq!(code, Some(1), "the index still lists the lost pack");
    assert_eq!(report["affected"], serde_json::json!([]), "{report}");

    // A plain backup (no --force) after a loss does the same for unchanged files.
    let out = env.run(&["repair", "index", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 missing from the store"),
        "{}",
        stdout(&out)
    );
    env.ok(&["repair", "index"]);
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    prune_now(&env);
    env.assert_restores(&first, &src);
}

/// A plain backup (unchanged files, a parent snapshot) stores again what a deleted pack
/// held, trees included.
fn unchanged_files_are_read_again_when_their_pack_is_lost(env: Env) {
    env.init();
    let src = source(&env, 2);
    env.backup_json(&[&src], &[]);
    for pack in objects(&env, "data") {
        std::fs::remove_file(pack).unwrap();
    }
    let healed = env.backup_json(&[&src], &[]);
    assert!(
        healed["data_added"].as_u64().unwrap() >= 5 << 20,
        "{healed}"
    );
    env.assert_restores("latest", &src);
    let (_, report) = check_json(&env, &[]);
    // The first snapshot's root tree is lost with its pack (the folders above `src`
    // changed since, so the new root differs); the new snapshot is whole.
    let latest = snapshot_id(&healed);
    let affected = report["affected"].as_array().unwrap();
    assert!(
        affected
            .iter()
            .all(|a| !latest.starts_with(a["snapshot"].as_str().unwrap())),
        "{report}"
    );
}

/// One flipped byte in a pack: `check --read-data` names it and records it, the next
/// backup stores its data again, `repair index` salvages the blobs that still open and
/// marks the pack, and a prune deletes it.
fn a_flipped_byte_is_healed_and_the_pack_salvaged(env: Env) {
    env.init();
    let src = source(&env, 3);
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let pack = largest_pack(&env);
    flip_byte(&pack, 1000);
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&pack.file_name().unwrap().to_string_lossy().to_string()),
        "{}",
        stderr(&out)
    );

    // A plain check reads headers only, and says what the record knows.
    let (_, plain) = check_json(&env, &[]);
    assert!(
        plain["notes"].to_string().contains("found damaged before"),
        "{plain}"
    );
    // Known damaged since the check: the next backup stores the pack's data again.
    let healed = env.backup_json(&[&src], &[]);
    assert!(healed["data_added"].as_u64().unwrap() > 0, "{healed}");
    env.assert_restores("latest", &src);
    env.assert_restores(&first, &src);

    let repaired = summary_line(&env.ok(&["repair", "index", "--json"]));
    assert_eq!(repaired["packs_damaged"], 1, "{repaired}");
    assert!(
        repaired["blobs_salvaged"].as_u64().unwrap() > 0,
        "{repaired}"
    );
    assert_eq!(
        repaired["blobs_lost"], 0,
        "stored again by the backup: {repaired}"
    );
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    prune_now(&env);
    assert!(!pack.exists(), "the damaged pack is deleted by prune");
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    env.assert_restores(&first, &src);
}

/// A restore that meets a damaged pack records it, like a check: the next backup stores
/// the pack's data again.
fn a_failed_restore_records_the_damage_for_the_next_backup(env: Env) {
    env.init();
    let src = source(&env, 9);
    env.backup_json(&[&src], &[]);
    flip_byte(&largest_pack(&env), 1000);
    let target = env.path("failed");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let healed = env.backup_json(&[&src], &[]);
    assert!(healed["data_added"].as_u64().unwrap() > 0, "{healed}");
    env.assert_restores("latest", &src);
}

/// `repair index --read-all-packs` finds a flipped byte nobody had noticed, on a machine
/// with no record of it (a fresh cache), and salvages the rest of the pack.
fn read_all_packs_finds_and_salvages_unnoticed_damage(env: Env) {
    env.init();
    let src = source(&env, 4);
    env.backup_json(&[&src], &[]);
    let pack = largest_pack(&env);
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    // Near the end of the blobs: the first file's chunks stay intact.
    flip_byte(&pack, len - 5000);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let plain = summary_line(&env.ok(&["repair", "index", "--json"]));
    assert_eq!(
        plain["changed"], false,
        "headers alone see nothing: {plain}"
    );
    let all = summary_line(&env.ok(&["repair", "index", "--read-all-packs", "--json"]));
    assert_eq!(all["packs_damaged"], 1, "{all}");
    assert!(all["blobs_lost"].as_u64().unwrap() >= 1, "{all}");
    // What was lost is stored again by a backup; everything checks clean.
    env.backup_json(&[&src], &[]);
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    env.assert_restores("latest", &src);
}

/// An index file cut short blocked check's advice and prune for good; `repair index`
/// rebuilds it from the packs.
fn a_truncated_index_file_is_rebuilt(env: Env) {
    env.init();
    let src = source(&env, 5);
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let index = objects(&env, "index").remove(0);
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_dir_all(env.path("cache")).unwrap();

    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let (err, text) = (stderr(&out), stdout(&out));
    assert!(err.contains("`cairn repair index`"), "{err}");
    assert!(
        !text.contains("`cairn prune` removes them"),
        "no wrong advice: {text}"
    );
    assert!(
        !err.contains("run `cairn check`"),
        "check never sends to itself: {err}"
    );
    assert_ne!(env.run(&["prune"]).status.code(), Some(0));

    let repaired = summary_line(&env.ok(&["repair", "index", "--json"]));
    assert_eq!(repaired["index_files_damaged"], 1, "{repaired}");
    assert!(repaired["packs_added"].as_u64().unwrap() >= 2, "{repaired}");
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    env.ok(&["prune"]);
    env.assert_restores(&first, &src);
    // A second repair finds nothing to do and writes nothing.
    let again = summary_line(&env.ok(&["repair", "index", "--json"]));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["index_files_written"], 0, "{again}");
}

/// Item 2: a lost config is damage, never an invitation to `init`; `repair config` puts
/// the same config back from the local cache, or writes a new one with the password.
fn a_lost_config_is_never_initialised_over_and_comes_back(env: Env) {
    env.init();
    let src = source(&env, 6);
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let config = env.repo_dir().join("config");
    let original = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    let keys = objects(&env, "keys");

    let out = env.run(&["snapshots"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "damage, not 'does not exist' (10)"
    );
    let err = stderr(&out);
    assert!(err.contains("`cairn repair config`"), "{err}");
    assert!(!err.contains("create it with `cairn init`"), "{err}");
    for args in [
        vec!["init"],
        vec!["backup", "--init", src.to_str().unwrap()],
    ] {
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} refused: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("Do not run `cairn init`"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(objects(&env, "keys"), keys, "no new key file");
    assert!(!config.exists(), "no config written");

    // The copy the cache kept: the very same bytes.
    let dry = stdout(&env.ok(&["repair", "config", "--dry-run"]));
    assert!(dry.contains("would be written back"), "{dry}");
    assert!(!config.exists(), "a dry run writes nothing");
    env.ok(&["repair", "config"]);
    assert_eq!(std::fs::read(&config).unwrap(), original);
    env.assert_restores(&first, &src);

    // No cache anywhere: a new config, and everything still reads.
    std::fs::remove_file(&config).unwrap();
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let made = summary_line(&env.ok(&["repair", "config", "--json"]));
    assert_eq!(made["source"], "new", "{made}");
    // Ids in JSON are hex, as everywhere else users see them.
    let repo_id = made["repository_id"].as_str().unwrap_or_default();
    assert!(
        repo_id.len() == 64 && repo_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    env.assert_restores(&first, &src);
    let again = env.backup_json(&[&src], &[]);
    assert_eq!(
        again["data_blobs"], 0,
        "same chunker: no chunk stored again: {again}"
    );

    // A damaged config is named as such, not as a wrong password, and replaced.
    flip_byte(&config, 40);
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("`config`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
    let replaced = summary_line(&env.ok(&["repair", "config", "--json"]));
    assert_eq!(replaced["replaced_damaged"], true, "{replaced}");
    env.ok(&["snapshots"]);
    // A wrong password still says so, and repairs nothing.
    let mut wrong = env.cmd(&["repair", "config"]);
    wrong.env("CAIRN_PASSWORD", "not it");
    assert_eq!(wrong.output().unwrap().status.code(), Some(12));
}

/// Key files: one of several deleted leaves the others working; none left, or only a
/// damaged one, is named as such (not "wrong password").
fn lost_or_damaged_key_files_are_named(env: Env) {
    env.init();
    let src = source(&env, 7);
    env.backup_json(&[&src], &[]);
    let second = env.path("second-password");
    std::fs::write(&second, "another one").unwrap();
    let before = objects(&env, "keys");
    env.ok(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ]);
    let added: Vec<PathBuf> = objects(&env, "keys")
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    assert_eq!(added.len(), 1);
    // The second key gone: the first password opens as before.
    std::fs::remove_file(&added[0]).unwrap();
    env.assert_restores("latest", &src);

    let only = objects(&env, "keys").remove(0);
    flip_byte(&only, 5);
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no usable key file"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&only).unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keys/ holds no key file"),
        "{}",
        stderr(&out)
    );
}

/// Data no source has any more: `repair snapshots` writes copies that hold what is left,
/// names every mended path, marks a file with lost chunks by its name, and (with
/// --forget) removes the originals and snapshot objects that do not open.
fn snapshots_needing_lost_data_are_repaired(env: Env) {
    env.init();
    // Small files first, in packs of their own; then the big ones.
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("sub/deeper/kept"), "small and safe\n").unwrap();
    std::fs::write(src.join("docs/note3"), "note 3\n").unwrap();
    env.backup_json(&[&src], &[]);
    let packs_before = objects(&env, "data");
    let mut rng = fastrand::Rng::with_seed(8);
    let big = random_bytes(&mut rng, 3 << 20);
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("docs/report"), random_bytes(&mut rng, 2 << 20)).unwrap();
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let big_pack = objects(&env, "data")
        .into_iter()
        .filter(|p| !packs_before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("the big files' pack");
    std::fs::write(src.join("docs/note9"), "a third snapshot\n").unwrap();
    let third = snapshot_id(&env.backup_json(&[&src], &[]));
    std::fs::remove_file(big_pack).unwrap();
    // The sources of the big files are gone too: nothing can store them again.
    std::fs::remove_file(src.join("big")).unwrap();
    std::fs::remove_file(src.join("docs/report")).unwrap();
    // And one snapshot object is damaged beyond reading.
    let snap_file = objects(&env, "snapshots")
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&third))
        .unwrap();
    flip_byte(&snap_file, 30);

    env.ok(&["repair", "index"]);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`cairn repair snapshots`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--forget"), "{}", stderr(&out));
    assert_ne!(env.run(&["prune"]).status.code(), Some(0), "prune refuses");

    let dry = env.ok(&["repair", "snapshots", "--dry-run"]);
    assert!(stdout(&dry).contains("/big"), "{}", stdout(&dry));
    assert_eq!(
        objects(&env, "snapshots").len(),
        3,
        "a dry run writes nothing"
    );
    // Without --forget, a copy is written once however often it runs.
    env.ok(&["repair", "snapshots"]);
    env.ok(&["repair", "snapshots"]);
    assert_eq!(objects(&env, "snapshots").len(), 4, "one repaired copy");

    let report = summary_line(&env.ok(&["repair", "snapshots", "--forget", "--json"]));
    assert_eq!(report["damaged"], 1, "{report}");
    assert_eq!(report["unreadable_removed"], 1, "{report}");
    let repaired = &report["repaired"][0];
    assert_eq!(
        repaired["original"],
        serde_json::json!(full_id(&env, &first))
    );
    let mended: Vec<String> = repaired["mended"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_string())
        .collect();
    let big_path = format!("{}/big", src.display());
    assert!(mended.contains(&big_path), "{mended:?}");
    let new = repaired["repaired"].as_str().unwrap().to_string();

    let (code, report) = check_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{report}");
    env.ok(&["prune"]);
    let listed = stdout(&env.ok(&["snapshots"]));
    assert!(listed.contains("repaired"), "{listed}");
    assert_eq!(listed.matches(&new[..8]).count(), 1, "{listed}");

    // Every intact file restores; the damaged one is there under its marked name.
    let target = env.path("restored");
    env.ok(&["restore", &new, "--target", target.to_str().unwrap()]);
    let inside = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(inside.join("sub/deeper/kept")).unwrap(),
        b"small and safe\n"
    );
    assert_eq!(
        std::fs::read(inside.join("docs/note3")).unwrap(),
        b"note 3\n"
    );
    assert!(!inside.join("big").exists());
    let marked = std::fs::read(inside.join("big.damaged")).unwrap();
    assert!(marked.len() < big.len());
    assert!(big.starts_with(&marked) || marked.is_empty());
}

/// One flipped byte in a tree pack is one damaged tree, on S3 too (where tree packs are
/// fetched whole into the local cache); once a backup stored that tree again, a machine
/// with a fresh cache reads it from its sound copy.
fn a_flipped_tree_pack_is_one_damaged_tree(env: Env) {
    env.init();
    let src = env.path("src");
    for i in 0..20 {
        std::fs::create_dir_all(src.join(format!("d{i}/sub"))).unwrap();
        std::fs::write(src.join(format!("d{i}/sub/f")), format!("file {i}")).unwrap();
    }
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let tree_pack = {
        let repo = env.open_with(env.backend(), "cache-in-process");
        let mut pack = None;
        repo.index()
            .unwrap()
            .for_each(&mut |loc| {
                if loc.entry.kind == cairn::format::pack::BlobType::Tree {
                    pack = Some(loc.pack);
                }
                Ok(())
            })
            .unwrap();
        let hex = pack.expect("a tree pack").to_hex();
        objects(&env, "data")
            .into_iter()
            .find(|p| p.ends_with(&hex))
            .expect("the tree pack's file")
    };
    flip_byte(&tree_pack, 100);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let (code, report) = check_json(&env, &[]);
    assert_eq!(code, Some(1), "{report}");
    let trees = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["object"].as_str().unwrap().starts_with("tree "))
        .count();
    assert_eq!(trees, 1, "{report}");
    let name = tree_pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        report.to_string().contains(&name),
        "the pack is named: {report}"
    );
    // The check recorded the pack: the next backup stores the tree again.
    env.backup_json(&[&src], &[]);
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    env.ok(&["ls", &first]);
    env.assert_restores(&first, &src);
}

/// The full id of a snapshot given by a prefix.
/// Two copies of the same data: the damaged pack's and the one a healing backup stored.
/// Another machine, whose cache knows nothing of the damage, restores and dumps from the
/// sound copy within the run. Each copy is damaged in turn, so that whichever copy its
/// index picks first, one of the two rounds meets the damaged one.
fn a_sound_copy_is_read_when_the_first_one_fails(env: Env) {
    env.init();
    let src = source(&env, 11);
    let first = snapshot_id(&env.backup_json(&[&src], &[]));
    let before = objects(&env, "data");
    let p1 = largest_pack(&env);
    let p1_sound = std::fs::read(&p1).unwrap();
    flip_byte(&p1, 1000);
    assert_eq!(env.run(&["check", "--read-data"]).status.code(), Some(1));
    env.backup_json(&[&src], &[]);
    let p2 = objects(&env, "data")
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("the healing backup's pack");
    let wanted: Vec<(PathBuf, Vec<u8>)> = ["big", "docs/report"]
        .iter()
        .map(|n| (src.join(n), std::fs::read(src.join(n)).unwrap()))
        .collect();
    for round in 0..2 {
        if round == 1 {
            std::fs::write(&p1, &p1_sound).unwrap();
            flip_byte(&p2, 1000);
        }
        let elsewhere = |c: &mut std::process::Command, name: &str| {
            c.env(
                "CAIRN_CACHE_DIR",
                env.path(&format!("cache-{round}-{name}")),
            );
        };
        let target = env.path(&format!("restore-{round}"));
        let mut restore = env.cmd(&[
            "restore",
            &first,
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ]);
        elsewhere(&mut restore, "restore");
        let out = restore.output().unwrap();
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

        for (k, (path, bytes)) in wanted.iter().enumerate() {
            let mut dump = env.cmd(&["dump", &first, path.to_str().unwrap()]);
            elsewhere(&mut dump, &format!("dump-{k}"));
            let out = dump.output().unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
            assert!(
                out.stdout == *bytes,
                "round {round}: {} differs",
                path.display()
            );
        }
    }
}

fn full_id(env: &Env, prefix: &str) -> String {
    objects(env, "snapshots")
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| prefix.to_string())
}

on_both_backends!(
    a_lost_pack_is_stored_again_by_the_next_backup,
    unchanged_files_are_read_again_when_their_pack_is_lost,
    a_flipped_byte_is_healed_and_the_pack_salvaged,
    a_failed_restore_records_the_damage_for_the_next_backup,
    read_all_packs_finds_and_salvages_unnoticed_damage,
    a_truncated_index_file_is_rebuilt,
    a_lost_config_is_never_initialised_over_and_comes_back,
    lost_or_damaged_key_files_are_named,
    snapshots_needing_lost_data_are_repaired,
    a_flipped_tree_pack_is_one_damaged_tree,
    a_sound_copy_is_read_when_the_first_one_fails,
);
