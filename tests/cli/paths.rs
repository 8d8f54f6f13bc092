//! How backup paths are spelled, recorded and looked up: `/`, relative paths, `..`,
//! trailing slashes, symlinks on the way, missing paths, cairn's own folders inside the
//! backed-up tree, and the same rule for every command that takes a snapshot path.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use crate::common::*;

/// Runs cairn in `dir`, whatever the exit code.
fn run_in(env: &Env, dir: &Path, args: &[&str]) -> Output {
    env.cmd(args).current_dir(dir).output().expect("run cairn")
}

/// Runs cairn in `dir` and insists on exit code 0.
fn ok_in(env: &Env, dir: &Path, args: &[&str]) -> Output {
    let out = run_in(env, dir, args);
    assert!(
        out.status.success(),
        "cairn {args:?} in {} failed with {:?}\nstdout: {}\nstderr: {}",
        dir.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The snapshots as `snapshots --json` lists them, with extra arguments (filters).
fn snapshots(env: &Env, dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["snapshots", "--json"];
    args.extend_from_slice(extra);
    let out = ok_in(env, dir, &args);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("snapshots JSON")
        .as_array()
        .expect("array")
        .clone()
}

/// The latest snapshot's recorded paths.
fn latest_paths(env: &Env) -> Vec<String> {
    let all = snapshots(env, env.dir.path(), &[]);
    let last = all.last().expect("a snapshot");
    last["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("path").to_string())
        .collect()
}

/// Every path `ls --json` lists below `path` of the latest snapshot, with its type.
fn listed(env: &Env, path: &str) -> Vec<(String, String)> {
    let out = env.ok(&["ls", "--json", "latest", path]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("ls JSON");
            (
                v["path"].as_str().expect("path").to_string(),
                v["type"].as_str().expect("type").to_string(),
            )
        })
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// A small source tree: `src/a.txt`, `src/sub/b.txt`.
fn small_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"file a\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"file b\n").unwrap();
    src
}

/// Exclude patterns that leave, of everything below `/`, only `keep` and the folders on
/// the way to it: `/*`, `!/tmp`, `/tmp/*`, `!/tmp/x`, ...
fn only(keep: &Path) -> Vec<String> {
    let mut patterns = Vec::new();
    let mut prefix = String::new();
    for name in keep.components().skip(1) {
        patterns.push(format!("{prefix}/*"));
        prefix = format!("{prefix}/{}", name.as_os_str().to_str().expect("UTF-8"));
        patterns.push(format!("!{prefix}"));
    }
    patterns
}

#[test]
fn the_root_in_every_spelling_is_backed_up_with_its_entries() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    let mut excludes = Vec::new();
    for p in only(&src) {
        excludes.push("--exclude".to_string());
        excludes.push(p);
    }
    let top = format!(
        "/{}",
        src.components()
            .nth(1)
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
    );
    let up = "../".repeat(src.components().count() - 1);
    for (dir, spelled) in [
        (env.dir.path(), "/"),
        (env.dir.path(), "//"),
        (Path::new("/"), "."),
        (src.as_path(), up.as_str()),
    ] {
        let mut args = vec!["backup", "--json"];
        args.extend(excludes.iter().map(String::as_str));
        args.push(spelled);
        let summary = summary_line(&ok_in(&env, dir, &args));
        assert_eq!(summary["total_files_processed"], 2, "{spelled}: {summary}");
        assert_eq!(latest_paths(&env), ["/"], "{spelled} in {}", dir.display());
        let entries = listed(&env, "/");
        // The root's own entries are listed, down to the kept tree and nothing beside it.
        assert!(
            entries.contains(&(top.clone(), "dir".into())),
            "{entries:?}"
        );
        assert!(
            entries.contains(&(s(&src.join("sub/b.txt")).into(), "file".into())),
            "{entries:?}"
        );
        assert!(
            entries
                .iter()
                .all(|(p, _)| src.starts_with(p) || Path::new(p).starts_with(&src)),
            "only the way to {} is listed: {entries:?}",
            src.display()
        );
    }
    let later = env.ok(&["backup", "--exclude", "/*", "/"]);
    assert!(
        stderr(&later).contains("using parent snapshot"),
        "{}",
        stderr(&later)
    );
}

#[test]
fn relative_dotted_and_slashed_paths_record_one_absolute_path() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    let sub = src.join("sub");
    let top = env.dir.path();
    for (dir, args) in [
        (top, vec!["src"]),
        (top, vec!["src/"]),
        (top, vec!["./src//"]),
        (top, vec!["src", "src/", s(&src)]),
        (sub.as_path(), vec![".."]),
        (sub.as_path(), vec!["../"]),
        (sub.as_path(), vec!["./../sub/.."]),
        (sub.as_path(), vec!["../sub", ".."]),
    ] {
        let mut full = vec!["backup", "--json"];
        full.extend(&args);
        let summary = summary_line(&ok_in(&env, dir, &full));
        assert_eq!(summary["total_files_processed"], 2, "{args:?}: {summary}");
        let paths = latest_paths(&env);
        if args.contains(&"../sub") {
            // A path inside another is stored once, as part of the outer one; both are
            // recorded.
            assert_eq!(paths, [s(&src), s(&sub)], "{args:?}");
        } else {
            assert_eq!(paths, [s(&src)], "{args:?} in {}", dir.display());
        }
    }
    // The recorded path is the same for every spelling, so every later backup of the same
    // spelling-set found a parent and read nothing again.
    let last = summary_line(&ok_in(&env, &sub, &["backup", "--json", "../"]));
    assert_eq!(last["files_unmodified"], 2, "{last}");
    let listing = listed(&env, s(&src));
    assert_eq!(
        listing.iter().filter(|(_, t)| t == "file").count(),
        2,
        "{listing:?}"
    );

    // A single file, given relatively.
    ok_in(&env, &src, &["backup", "a.txt"]);
    assert_eq!(latest_paths(&env), [s(&src.join("a.txt"))]);
    let out = ok_in(&env, &src, &["dump", "latest", "a.txt"]);
    assert_eq!(out.stdout, b"file a\n");
}

/// `deploy/releases/r1/public/index.html`, `deploy/releases/r2/public/index.html`, and
/// `deploy/current -> releases/r1`.
fn deploy_tree(env: &Env) -> std::path::PathBuf {
    let deploy = env.path("deploy");
    for r in ["r1", "r2"] {
        let public = deploy.join("releases").join(r).join("public");
        std::fs::create_dir_all(&public).unwrap();
        std::fs::write(public.join("index.html"), format!("release {r}\n")).unwrap();
    }
    symlink("releases/r1", deploy.join("current")).unwrap();
    deploy
}

#[test]
fn a_path_through_a_symlink_keeps_its_name_and_its_parent() {
    let env = Env::new();
    env.init();
    let deploy = deploy_tree(&env);
    let public = deploy.join("current/public");
    let first = env.backup_json(&[&public], &[]);
    let first_id = first["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(latest_paths(&env), [s(&public)]);

    std::fs::remove_file(deploy.join("current")).unwrap();
    symlink("releases/r2", deploy.join("current")).unwrap();
    let second = env.backup_json(&[&public], &[]);
    assert_eq!(latest_paths(&env), [s(&public)]);
    let all = snapshots(&env, env.dir.path(), &[]);
    assert_eq!(all[1]["parent"], first_id.as_str(), "{:?}", all[1]);
    assert_eq!(second["files_changed"], 1, "{second}");

    let forget = summary_line(&env.ok(&["forget", "--dry-run", "--json", "--keep-last", "1"]));
    assert_eq!(forget["groups"].as_array().unwrap().len(), 1, "{forget}");

    // The link on the way is a directory in the snapshot, so the recorded path can be
    // listed, dumped and restored.
    let entries = listed(&env, "/");
    assert!(
        entries.contains(&(s(&deploy.join("current")).into(), "dir".into())),
        "{entries:?}"
    );
    let index = public.join("index.html");
    assert_eq!(
        env.ok(&["dump", "latest", s(&index)]).stdout,
        b"release r2\n"
    );
    let target = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        s(&target),
        "--include",
        s(&public),
    ]);
    let restored = target.join(index.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored).unwrap(), b"release r2\n");

    // `.` in a folder reached through the link keeps the link's name, as the shell shows
    // it in $PWD.
    let out = env
        .cmd(&["backup", "."])
        .current_dir(&public)
        .env("PWD", &public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(latest_paths(&env), [s(&public)]);
}

#[test]
fn a_symlink_given_as_a_path_is_stored_as_the_link_unless_a_slash_follows_it() {
    let env = Env::new();
    env.init();
    let deploy = deploy_tree(&env);
    let current = deploy.join("current");
    let out = env.ok(&["backup", s(&current)]);
    assert!(
        stderr(&out).contains("warning:") && stderr(&out).contains("symbolic link to a folder"),
        "the link alone is rarely what was meant: {}",
        stderr(&out)
    );
    let json = env.ok(&["backup", "--json", s(&current)]);
    assert!(
        String::from_utf8_lossy(&json.stdout).contains(r#""message_type":"warning""#),
        "{}",
        String::from_utf8_lossy(&json.stdout)
    );
    assert_eq!(
        listed(&env, s(&current)),
        [(s(&current).to_string(), "symlink".to_string())]
    );

    let slashed = format!("{}/", s(&current));
    let out = env.ok(&["backup", &slashed]);
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
    assert_eq!(latest_paths(&env), [s(&current)]);
    let entries = listed(&env, s(&current));
    assert!(
        entries.contains(&(s(&current).into(), "dir".into())),
        "{entries:?}"
    );
    let index = current.join("public/index.html");
    assert!(
        entries.contains(&(s(&index).into(), "file".into())),
        "{entries:?}"
    );

    // A trailing slash on a file is not a directory, as in POSIX.
    let file = format!("{}/", s(&deploy.join("releases/r1/public/index.html")));
    let out = env.run(&["backup", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("index.html"), "{}", stderr(&out));
}

#[test]
fn missing_paths_are_named_and_the_rest_is_saved() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    let missing = env.path("no-such-folder");
    let out = env.run(&["backup", s(&src), s(&missing)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(s(&missing)), "{}", stderr(&out));
    assert_eq!(snapshots(&env, env.dir.path(), &[]).len(), 1);
    let files: Vec<_> = listed(&env, s(&src))
        .into_iter()
        .filter(|(_, t)| t == "file")
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");

    let other = env.path("also-missing");
    let out = env.run(&["backup", s(&missing), s(&other)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(s(&missing)) && err.contains(s(&other)),
        "{err}"
    );
    assert_eq!(snapshots(&env, env.dir.path(), &[]).len(), 1, "no snapshot");
}

fn own_repository_and_cache_are_left_out(env: Env) {
    env.init();
    small_tree(&env);
    let home = env.dir.path();
    // The repository and the cache are inside the backed-up folder, spelled differently
    // from how cairn was given them.
    let spelled = format!("{}/src/..", s(home));
    let first = env.ok(&["backup", &spelled]);
    let note: Vec<_> = stderr(&first)
        .lines()
        .filter(|l| l.contains("cairn's own"))
        .map(str::to_string)
        .collect();
    assert_eq!(note.len(), 1, "one line: {}", stderr(&first));
    let cache = env.path("cache");
    assert!(note[0].contains(s(&cache)), "{note:?}");
    if let Store::Local = env.store {
        assert!(note[0].contains(&env.repo), "{note:?}");
    }

    // No file data is added; trees may be, since /tmp on the way changes its mtime
    // whenever anyone makes a temporary file.
    let second = env.backup_json(&[home], &[]);
    assert_eq!(second["data_blobs"], 0, "{second}");
    assert_eq!(second["files_new"], 0, "{second}");
    assert_eq!(second["files_changed"], 0, "{second}");
    let entries = listed(&env, s(home));
    let repo = env.repo_dir();
    assert!(
        entries
            .iter()
            .all(|(p, _)| !Path::new(p).starts_with(&cache) && !Path::new(p).starts_with(&repo)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&(s(&env.path("src/sub/b.txt")).into(), "file".into())),
        "{entries:?}"
    );
}

#[test]
fn filters_and_snapshot_paths_resolve_like_backup() {
    let env = Env::new();
    env.init();
    let src = small_tree(&env);
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    env.backup_json(&[&other], &[]);
    env.backup_json(&[&src], &[]);
    let top = env.dir.path();

    let abs_slash = format!("{}/", s(&src));
    for spelled in ["src", "src/", "./src", "other/../src", &abs_slash] {
        let found = snapshots(&env, top, &["--path", spelled]);
        assert_eq!(found.len(), 1, "--path {spelled}: {found:?}");
        assert_eq!(found[0]["paths"][0], s(&src));
        let stats = summary_line(&ok_in(&env, top, &["stats", "--json", "--path", spelled]));
        assert_eq!(stats["snapshots"], 1, "stats --path {spelled}: {stats}");
        let forget = summary_line(&ok_in(
            &env,
            top,
            &[
                "forget",
                "--dry-run",
                "--json",
                "--keep-last",
                "1",
                "--path",
                spelled,
            ],
        ));
        let groups = forget["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "forget --path {spelled}: {forget}");
        assert_eq!(groups[0]["keep"][0]["paths"][0], s(&src), "{forget}");
    }

    // Snapshot paths of dump, ls and restore are relative to the working directory too.
    let out = ok_in(&env, top, &["dump", "latest", "src/sub/b.txt"]);
    assert_eq!(out.stdout, b"file b\n");
    let out = ok_in(&env, &src, &["dump", "latest", "./sub/../a.txt"]);
    assert_eq!(out.stdout, b"file a\n");
    let out = ok_in(&env, &src, &["ls", "latest", "sub/"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [s(&src.join("sub")), s(&src.join("sub/b.txt"))]
    );
    let target = env.path("restored");
    ok_in(
        &env,
        top,
        &[
            "restore",
            "latest",
            "--target",
            "restored",
            "--include",
            "src/sub",
        ],
    );
    let back = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(back.join("sub/b.txt")).unwrap(), b"file b\n");
    assert!(!back.join("a.txt").exists(), "only the included path");
}

on_both_backends!(own_repository_and_cache_are_left_out);

/// Below `SNAPSHOT:PATH`, a relative `--include` is taken from that folder; a path that
/// a bare `latest` lacks is explained: which snapshot `latest` was, and the filter that
/// finds the right one.
#[test]
fn relative_includes_below_a_folder_and_latest_without_the_path() {
    let env = Env::new();
    env.init();
    let site = env.path("srv/site1");
    fs::create_dir_all(site.join("wp-content/uploads")).unwrap();
    fs::write(site.join("wp-content/x"), b"the x").unwrap();
    fs::write(site.join("wp-content/uploads/y"), b"the y").unwrap();
    fs::write(site.join("index.php"), b"<?php").unwrap();
    let first = env.backup_json(&[&site], &[]);
    let first = first["snapshot_id"].as_str().unwrap().to_string();
    let other = env.path("elsewhere");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("z"), b"z").unwrap();
    env.backup_json(&[&other], &[]);

    let target = env.path("restored");
    let rooted = format!("{}:{}", &first[..8], s(&site));
    env.ok(&[
        "restore",
        &rooted,
        "--target",
        s(&target),
        "--include",
        "wp-content/x",
    ]);
    assert_eq!(fs::read(target.join("wp-content/x")).unwrap(), b"the x");
    assert!(!target.join("index.php").exists());
    assert!(!target.join("wp-content/uploads").exists());

    let wanted = site.join("wp-content/x");
    let out = env.run(&["dump", "latest", s(&wanted)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the newest of all") && err.contains("--path"),
        "{err}"
    );
    assert!(err.contains(s(&other)), "the snapshot's paths named: {err}");
    // With the filter it names, `latest` is the right one.
    let out = env.ok(&["dump", "latest", "--path", s(&site), s(&wanted)]);
    assert_eq!(out.stdout, b"the x");
}

/// Folders of `depth` 250-byte names below `root`, made through descriptors (the full
/// path soon passes what a system call takes); returns the deepest one, open, and the
/// names.
fn deep_folders(root: &Path, depth: usize) -> (std::os::fd::OwnedFd, Vec<String>) {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, mkdirat};
    let mut dir = open(root, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    let mut names = Vec::new();
    for i in 0..depth {
        let name = format!("{i:02}{}", "d".repeat(248));
        mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(&dir, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        names.push(name);
    }
    (dir, names)
}

/// Opens `names` one after another below `root`.
fn open_below(root: &Path, names: &[String]) -> std::os::fd::OwnedFd {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    let mut dir = open(root, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for name in names {
        dir = openat(&dir, name.as_str(), OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
    dir
}

/// Writes `data` to a new file `name` in the open folder `dir`.
fn write_at(dir: &std::os::fd::OwnedFd, name: &str, data: &[u8]) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    nix::unistd::write(&fd, data).unwrap();
}

/// Reads the file `name` in the open folder `dir`.
fn read_at(dir: &std::os::fd::OwnedFd, name: &str) -> Vec<u8> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    use std::io::Read;
    let fd = openat(dir, name, OFlag::O_RDONLY, Mode::empty()).unwrap();
    let mut out = Vec::new();
    fs::File::from(fd).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn paths_longer_than_path_max_are_backed_up_and_restored() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 20 levels of 250-byte names: a path of over 5,000 bytes.
    let (deep, names) = deep_folders(&src, 20);
    write_at(&deep, "file", b"deep content\n");
    nix::unistd::symlinkat("file", &deep, "link").unwrap();
    // Extended attributes of the deepest folder, read through its descriptor.
    let deep_path = format!("/proc/self/fd/{}/.", std::os::fd::AsRawFd::as_raw_fd(&deep));
    xattr::set(&deep_path, "user.deep", b"yes").unwrap();
    // A cache folder down there, tagged: --exclude-caches must see the tag.
    nix::sys::stat::mkdirat(
        &deep,
        "cache",
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    )
    .unwrap();
    let cache = open_below(&src, &[names.clone(), vec!["cache".into()]].concat());
    write_at(
        &cache,
        "CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    write_at(&cache, "junk", b"cached");

    let out = env.run(&[
        "backup",
        "--json",
        "--exclude-caches",
        src.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &text[..text.len().min(2000)]
    );
    let summary = summary_line(&out);
    assert_eq!(summary["files_failed"], 0, "{summary}");
    assert_eq!(summary["total_files_processed"], 1, "{summary}");
    let id = summary["snapshot_id"].as_str().unwrap().to_string();

    let ls = env.ok(&["ls", &id]);
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    let file = ls
        .lines()
        .find(|l| l.ends_with("/file"))
        .unwrap_or_else(|| panic!("no deep file listed"));
    assert!(file.len() > 5000, "{}", file.len());
    assert!(!ls.contains("/cache"), "the tagged cache is left out");

    let target = env.path("restore");
    for round in 0..2 {
        // The second round restores over the first: all there already, and kept.
        env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
        let restored_src = target.join(src.strip_prefix("/").unwrap());
        let dir = open_below(&restored_src, &names);
        assert_eq!(read_at(&dir, "file"), b"deep content\n", "round {round}");
        assert_eq!(
            nix::fcntl::readlinkat(&dir, "link").unwrap(),
            std::ffi::OsString::from("file")
        );
        let dir_path = format!("/proc/self/fd/{}/.", std::os::fd::AsRawFd::as_raw_fd(&dir));
        assert_eq!(
            xattr::get(&dir_path, "user.deep").unwrap(),
            Some(b"yes".to_vec())
        );
    }

    // Unchanged, the deep file is taken from the parent unread.
    let again = env.backup_json(&[&src], &["--exclude-caches"]);
    assert_eq!(again["files_unmodified"], 1, "{again}");
    env.ok(&["check", "--read-data"]);
}
