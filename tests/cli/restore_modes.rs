//! Restores over a target that already holds a version of the tree: each `--overwrite`
//! mode, `--delete` (below the restored paths only), `--dry-run` (changes nothing and
//! lists what a restore would do), and `--include`/`--exclude` patterns.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::common::*;

/// Where `src`'s snapshot path lands below `target`.
fn below(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// The `action` lines of a `--json` restore: (action, path below `at`).
fn actions(out: &std::process::Output, at: &Path) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message_type"] == "action")
        .map(|v| {
            let path = PathBuf::from(v["path"].as_str().unwrap());
            let rel = path.strip_prefix(at).unwrap_or(&path).display().to_string();
            (v["action"].as_str().unwrap().to_string(), rel)
        })
        .collect();
    list.sort();
    list
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .collect();
    v.sort();
    v
}

/// Restores `latest` into `target` with `extra` options, listing every action (`--json
/// -v`); returns the output and the actions below `at`.
fn listed(
    env: &Env,
    target: &Path,
    at: &Path,
    extra: &[&str],
) -> (std::process::Output, Vec<(String, String)>) {
    let mut args = vec![
        "restore",
        "latest",
        "-t",
        target.to_str().unwrap(),
        "--json",
        "-v",
    ];
    args.extend_from_slice(extra);
    let out = env.ok(&args);
    let list = actions(&out, at);
    (out, list)
}

const T0: i64 = 1_600_000_000;

/// The snapshot's tree, and a target holding an older state of it: `same` identical,
/// `older` and `newer` changed with an earlier and a later mtime, `disguised` changed
/// behind the snapshot's size and mtime, `big` (12 MiB) changed in 64 KiB and grown,
/// `link` pointing elsewhere (made by `copy`); `missing` is not there.
fn prepared(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let big = random_bytes(&mut rng, 12 << 20);
    for (name, content) in [
        ("same", b"same".to_vec()),
        ("older", b"snapshot's older".to_vec()),
        ("newer", b"snapshot's newer".to_vec()),
        ("disguised", b"snapshot's bytes".to_vec()),
        ("missing", b"missing".to_vec()),
        ("big", big.clone()),
    ] {
        std::fs::write(src.join(name), content).unwrap();
        set_mtime(&src.join(name), T0, 0);
    }
    symlink("same", src.join("link")).unwrap();
    let target = env.path("prepared");
    let at = below(&target, &src);
    std::fs::create_dir_all(&at).unwrap();
    let mut changed = big;
    changed[6 << 20..(6 << 20) + 65536].fill(7);
    changed.extend_from_slice(&[1; 100_000]);
    for (name, content, mtime) in [
        ("same", b"same".to_vec(), T0),
        ("older", b"target's older".to_vec(), T0 - 100),
        ("newer", b"target's newer".to_vec(), T0 + 100),
        ("disguised", b"target's bytes!!".to_vec(), T0),
        ("big", changed, T0 - 100),
    ] {
        std::fs::write(at.join(name), content).unwrap();
        set_mtime(&at.join(name), mtime, 0);
    }
    (src, target)
}

/// A copy of the prepared target, with its symlink.
fn copy(prepared: &Path, src: &Path, to: &Path) {
    copy_dir(prepared, to);
    for e in std::fs::read_dir(below(prepared, src)).unwrap() {
        let m = e.as_ref().unwrap().metadata().unwrap();
        set_mtime(&below(to, src).join(e.unwrap().file_name()), m.mtime(), 0);
    }
    symlink("elsewhere", below(to, src).join("link")).unwrap();
}

fn overwrite_modes_over_a_prepared_target(env: Env) {
    env.init();
    let (src, prepared) = prepared(&env);
    env.backup_json(&[&src], &[]);
    let restore = |target: &Path, extra: &[&str]| listed(&env, target, &below(target, &src), extra);
    let content =
        |target: &Path, name: &str| std::fs::read(below(target, &src).join(name)).unwrap();

    // A dry run lists what `always` does, and changes nothing.
    let dry = env.path("dry");
    copy(&prepared, &src, &dry);
    let before = tree_state(&dry);
    let (out, list) = restore(&dry, &["--dry-run"]);
    assert_eq!(tree_state(&dry), before, "a dry run changed the target");
    let list: Vec<_> = list
        .into_iter()
        .filter(|(_, p)| !p.starts_with('/') && !p.is_empty())
        .collect();
    let expected = pairs(&[
        ("unchanged", "same"),
        ("replace", "older"),
        ("replace", "newer"),
        ("replace", "disguised"),
        ("update", "big"),
        ("create", "missing"),
        ("replace", "link"),
    ]);
    assert_eq!(list, expected);
    let s = summary_line(&out);
    assert_eq!(
        (s["dry_run"].as_bool(), s["files_updated"].as_u64()),
        (Some(true), Some(1))
    );

    // always: every difference found by reading, the big file rewritten only where it
    // differed (its inode stays, and about one chunk is fetched, not 12 MiB).
    let always = env.path("always");
    copy(&prepared, &src, &always);
    let inode = std::fs::metadata(below(&always, &src).join("big"))
        .unwrap()
        .ino();
    let (out, _) = restore(&always, &["--verify"]);
    assert_same_tree(&src, &below(&always, &src));
    assert_eq!(
        std::fs::metadata(below(&always, &src).join("big"))
            .unwrap()
            .ino(),
        inode
    );
    let fetched = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["action"] == "update")
        .unwrap()["bytes"]
        .as_u64()
        .unwrap();
    assert!(
        fetched > 0 && fetched < 6 << 20,
        "fetched {fetched} bytes of 12 MiB"
    );
    let s = summary_line(&out);
    assert_eq!(s["files_updated"], 1, "{s}");
    assert_eq!(s["files_verified"], 5, "{s}");

    // if-changed: the file behind the snapshot's size and mtime is taken as identical.
    let changed = env.path("if-changed");
    copy(&prepared, &src, &changed);
    restore(&changed, &["--overwrite", "if-changed"]);
    assert_eq!(content(&changed, "disguised"), b"target's bytes!!");
    assert_eq!(content(&changed, "older"), b"snapshot's older");
    assert_eq!(content(&changed, "newer"), b"snapshot's newer");
    assert_eq!(
        content(&changed, "big"),
        std::fs::read(src.join("big")).unwrap()
    );

    // if-newer: only what is older than the snapshot's is replaced.
    let newer = env.path("if-newer");
    copy(&prepared, &src, &newer);
    let (_, list) = restore(&newer, &["--overwrite", "if-newer"]);
    assert_eq!(content(&newer, "older"), b"snapshot's older");
    assert_eq!(content(&newer, "newer"), b"target's newer");
    assert_eq!(content(&newer, "disguised"), b"target's bytes!!");
    assert_eq!(
        content(&newer, "big"),
        std::fs::read(src.join("big")).unwrap()
    );
    assert_eq!(content(&newer, "missing"), b"missing");
    let kept: Vec<_> = list.into_iter().filter(|(a, _)| a == "keep").collect();
    assert_eq!(
        kept,
        pairs(&[
            ("keep", "newer"),
            ("keep", "disguised"),
            ("keep", "same"),
            ("keep", "link"),
        ])
    );

    // never: what stands there is left, content, mtime and all; the rest is restored.
    let never = env.path("never");
    copy(&prepared, &src, &never);
    let before = tree_state(&below(&never, &src));
    restore(&never, &["--overwrite", "never"]);
    let after = tree_state(&below(&never, &src));
    for (name, entry) in &before {
        assert_eq!(
            after.get(name),
            Some(entry),
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(content(&never, "missing"), b"missing");
}

/// `--delete` removes what the snapshot lacks below its backup paths (or the included
/// ones) only, leaves what `--exclude` matches, may replace a non-empty directory that
/// stands where a file goes, and is refused where it would clean `/`.
fn delete_stays_below_restored_paths(env: Env) {
    env.init();
    let src = env.path("data");
    std::fs::create_dir_all(src.join("a/deep")).unwrap();
    std::fs::write(src.join("a/deep/f"), b"f").unwrap();
    std::fs::write(src.join("b"), b"b").unwrap();
    std::fs::write(src.join("c"), b"c is a file").unwrap();
    env.backup_json(&[&src], &[]);

    let target = env.path("target");
    let at = below(&target, &src);
    std::fs::create_dir_all(at.join("a/deep")).unwrap();
    std::fs::create_dir_all(at.join("extra/nested")).unwrap();
    std::fs::write(at.join("extra/nested/x"), b"x").unwrap();
    std::fs::write(at.join("a/stray"), b"stray").unwrap();
    std::fs::write(at.join("a/notes.keep"), b"keep me").unwrap();
    std::fs::create_dir_all(at.join("c/full")).unwrap();
    std::fs::write(at.join("c/full/y"), b"y").unwrap();
    symlink("/etc", at.join("a/deep/link")).unwrap();
    // Beside the backup path: not the snapshot's to clean.
    std::fs::write(at.parent().unwrap().join("neighbour"), b"n").unwrap();
    let t = target.to_str().unwrap();

    // Only inside the included folder.
    let inc = src.join("a");
    let (_, list) = listed(
        &env,
        &target,
        &at,
        &["--delete", "-i", inc.to_str().unwrap()],
    );
    assert_eq!(
        list,
        pairs(&[
            ("create", "a/deep/f"),
            ("delete", "a/deep/link"),
            ("delete", "a/notes.keep"),
            ("delete", "a/stray"),
        ])
    );
    assert!(at.join("extra/nested/x").exists() && !at.join("a/stray").exists());
    assert!(Path::new("/etc/passwd").exists());

    // The whole snapshot, with a pattern kept; a dry run first changes nothing.
    std::fs::write(at.join("a/notes.keep"), b"keep me").unwrap();
    let args = ["--delete", "-e", "*.keep"];
    let before = tree_state(&target);
    let (_, dry) = listed(&env, &target, &at, &[&args[..], &["--dry-run"]].concat());
    assert_eq!(tree_state(&target), before);
    let expected = pairs(&[
        ("create", "b"),
        ("delete", "c"),
        ("replace", "c"),
        ("delete", "extra"),
        ("unchanged", "a/deep/f"),
    ]);
    assert_eq!(dry, expected);
    let (out, list) = listed(&env, &target, &at, &args);
    assert_eq!(list, expected);
    assert_eq!(summary_line(&out)["deleted"], 2);
    assert_eq!(std::fs::read(at.join("a/notes.keep")).unwrap(), b"keep me");
    assert_eq!(
        std::fs::read(at.parent().unwrap().join("neighbour")).unwrap(),
        b"n"
    );
    // Removing it changed its folder's mtime: a restore sets it again.
    std::fs::remove_file(at.join("a/notes.keep")).unwrap();
    env.ok(&["restore", "latest", "-t", t]);
    assert_same_tree(&src, &at);

    // A symlink where the snapshot has a folder: a dry run reads nothing through it, and
    // the restore replaces it by the folder.
    std::fs::remove_dir_all(at.join("a/deep")).unwrap();
    symlink("/etc", at.join("a/deep")).unwrap();
    let (_, list) = listed(&env, &target, &at, &["--delete", "--dry-run"]);
    assert_eq!(
        list,
        pairs(&[
            ("create", "a/deep/f"),
            ("replace", "a/deep"),
            ("unchanged", "b"),
            ("unchanged", "c"),
        ])
    );
    env.ok(&["restore", "latest", "-t", t, "--delete"]);
    assert_same_tree(&src, &at);
    assert!(!Path::new("/etc/f").exists());

    // Without --delete a non-empty directory in a file's way stays, and is named.
    std::fs::remove_file(at.join("c")).unwrap();
    std::fs::create_dir_all(at.join("c/full")).unwrap();
    let out = env.run(&["restore", "latest", "-t", t]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restore with --delete"));
    assert!(at.join("c/full").is_dir());

    // A snapshot folder as the root, restored to / with --delete: refused before anything.
    let whole = format!("latest:{}", src.display());
    let out = env.run(&["restore", &whole, "-t", "/", "--delete", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--target /"),
        "{out:?}"
    );
}

on_both_backends!(
    overwrite_modes_over_a_prepared_target,
    delete_stays_below_restored_paths,
    interrupted_in_place_updates_are_finished_by_the_next,
);

/// `--include` patterns take matching entries anywhere (and make only the folders on
/// the way to them), `--iinclude` regardless of case, `--exclude` leaves out even inside
/// an included folder; a pattern matching nothing says so.
#[test]
fn include_and_exclude_patterns() {
    let env = Env::new();
    env.init();
    let src = env.path("etc");
    for (p, c) in [
        ("ssh/sshd.conf", "a"),
        ("ssh/keys/host", "b"),
        ("nginx/site.CONF", "c"),
        ("nginx/cache/x.tmp", "d"),
        ("nginx/html/index.html", "e"),
        ("empty/readme", "f"),
    ] {
        std::fs::create_dir_all(src.join(p).parent().unwrap()).unwrap();
        std::fs::write(src.join(p), c).unwrap();
    }
    env.backup_json(&[&src], &[]);
    let files_in = |t: &Path| -> Vec<String> {
        let at = below(t, &src);
        names_below(&at)
            .into_iter()
            .map(|p| p.strip_prefix(&at).unwrap().display().to_string())
            .collect()
    };

    let t1 = env.path("t1");
    env.ok(&[
        "restore",
        "latest",
        "-t",
        t1.to_str().unwrap(),
        "-i",
        "*.conf",
        "--iinclude",
        "*.Html",
    ]);
    assert_eq!(files_in(&t1), ["nginx/html/index.html", "ssh/sshd.conf"]);

    let t2 = env.path("t2");
    let nginx = src.join("nginx");
    env.ok(&[
        "restore",
        "latest",
        "-t",
        t2.to_str().unwrap(),
        "-i",
        nginx.to_str().unwrap(),
        "-e",
        "cache/",
        "--iexclude",
        "*.conf",
    ]);
    assert_eq!(files_in(&t2), ["nginx/html/index.html"]);
    assert!(!below(&t2, &src).join("nginx/cache").exists());
    assert!(!below(&t1, &src).join("empty").exists());

    let t3 = env.path("t3");
    let out = env.ok(&[
        "restore",
        "latest",
        "-t",
        t3.to_str().unwrap(),
        "-i",
        "*.nothing",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no entry of snapshot"),
        "{out:?}"
    );
    let missing = env.path("no-such-list");
    let out = env.run(&[
        "restore",
        "latest",
        "-t",
        t3.to_str().unwrap(),
        "--exclude-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-list"),
        "{out:?}"
    );
}

/// Run again over its own result, a restore of hard links lists every name unchanged
/// (the names are links of the kept first one already); a name made a copy is linked
/// again, and `never` leaves it a copy.
#[test]
fn hard_links_rerun_unchanged() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("a"), b"linked").unwrap();
    std::fs::hard_link(src.join("a"), src.join("x/b")).unwrap();
    env.backup_json(&[&src], &[]);
    let target = env.path("t");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "-t", t]);
    let at = below(&target, &src);
    let (_, list) = listed(&env, &target, &at, &["--dry-run"]);
    assert_eq!(list, pairs(&[("unchanged", "a"), ("unchanged", "x/b")]));

    std::fs::remove_file(at.join("x/b")).unwrap();
    std::fs::write(at.join("x/b"), b"linked").unwrap();
    let (_, list) = listed(&env, &target, &at, &["--overwrite", "never"]);
    assert_eq!(list, pairs(&[("keep", "a"), ("keep", "x/b")]));
    assert_eq!(std::fs::metadata(at.join("a")).unwrap().nlink(), 1);
    let (_, list) = listed(&env, &target, &at, &[]);
    assert_eq!(list, pairs(&[("unchanged", "a"), ("replace", "x/b")]));
    assert_eq!(std::fs::metadata(at.join("a")).unwrap().nlink(), 2);
}

/// A restore stopped (Ctrl-C, then `kill -9`) while it updates big files in place leaves
/// every one of them there (never removed as a temporary file would be), and the next
/// restore finishes them.
fn interrupted_in_place_updates_are_finished_by_the_next(env: Env) {
    use nix::sys::signal::Signal;
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(9);
    let names = ["one.img", "two.img", "three.img"];
    for name in names {
        std::fs::write(src.join(name), random_bytes(&mut rng, 12 << 20)).unwrap();
    }
    env.backup_json(&[&src], &[]);
    for signal in [Signal::SIGINT, Signal::SIGKILL] {
        let target = env.path(&format!("t-{signal}"));
        let at = below(&target, &src);
        std::fs::create_dir_all(&at).unwrap();
        for name in names {
            let mut old = std::fs::read(src.join(name)).unwrap();
            old[..8 << 20].fill(3);
            std::fs::write(at.join(name), old).unwrap();
            set_mtime(&at.join(name), T0, 0);
        }
        let written = || {
            names
                .iter()
                .any(|n| std::fs::metadata(at.join(n)).is_ok_and(|m| m.mtime() != T0))
        };
        let cmd = env.cmd(&["restore", "latest", "-t", target.to_str().unwrap()]);
        let status = signal_when(cmd, signal, written);
        eprintln!("{signal}: {status:?}");
        for name in names {
            let len = std::fs::metadata(at.join(name)).unwrap().len();
            assert_eq!(len, 12 << 20, "{name} after {signal}");
        }
        let out = env.ok(&[
            "restore",
            "latest",
            "-t",
            target.to_str().unwrap(),
            "--json",
        ]);
        assert!(summary_line(&out)["files_updated"].as_u64().unwrap() <= 3);
        assert_same_tree(&src, &at);
    }
}

/// `--overwrite never` (and `if-newer`) over a target where a symlink stands in place of
/// a snapshot folder: the symlink is kept, nothing below it is restored, and both the dry
/// run and the real run say so and count alike.
#[test]
fn a_kept_symlink_in_place_of_a_folder_is_reported() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for sub in ["site/a", "site/b/c", "other"] {
        std::fs::create_dir_all(src.join(sub)).unwrap();
        std::fs::write(src.join(sub).join("f"), sub).unwrap();
    }
    env.backup_json(&[&src], &[]);
    for mode in ["never", "if-newer"] {
        let target = env.path(&format!("target-{mode}"));
        let at = below(&target, &src);
        std::fs::create_dir_all(at.join("other")).unwrap();
        std::fs::create_dir_all(env.path("elsewhere")).unwrap();
        symlink(env.path("elsewhere"), at.join("site")).unwrap();
        let (dry, _) = listed(&env, &target, &at, &["--overwrite", mode, "--dry-run"]);
        let dry = summary_line(&dry);
        let (out, _) = listed(&env, &target, &at, &["--overwrite", mode]);
        let real = summary_line(&out);
        assert_eq!(
            dry["dirs_restored"], real["dirs_restored"],
            "{mode}: {dry} {real}"
        );
        let site = at.join("site").to_string_lossy().into_owned();
        assert_eq!(
            real["folders_not_restored"],
            serde_json::json!([site]),
            "{real}"
        );
        assert_eq!(dry["folders_not_restored"], real["folders_not_restored"]);
        let text = env.ok(&[
            "restore",
            "latest",
            "-t",
            target.to_str().unwrap(),
            "--overwrite",
            mode,
        ]);
        let err = String::from_utf8_lossy(&text.stderr);
        assert!(err.contains("nothing below it was restored"), "{err}");
        assert!(
            std::fs::symlink_metadata(at.join("site"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "kept"
        );
        assert!(
            !env.path("elsewhere/a").exists(),
            "never written through the link"
        );
        assert_eq!(std::fs::read(at.join("other/f")).unwrap(), b"other");
    }
}
