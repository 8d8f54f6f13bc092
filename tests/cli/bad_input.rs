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

/// With `--json`, an error on a name that is not UTF-8 is a line like any other: the
/// path lossy and escaped, and the backup's summary and exit code as always.
#[test]
fn unreadable_file_with_a_name_not_utf8_in_json() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let locked = src.join(std::ffi::OsStr::from_bytes(b"locked-\xff"));
    std::fs::write(&locked, b"secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = env.cmd(&["backup", src.to_str().unwrap(), "--json"]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let error = lines.iter().find(|v| v["message_type"] == "error").unwrap();
    assert!(
        error["path_escaped"]
            .as_str()
            .unwrap()
            .ends_with("locked-\\xff"),
        "{error}"
    );
    assert!(lines.iter().any(|v| v["message_type"] == "summary"));
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

fn snapshot_count(env: &Env) -> usize {
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array().unwrap().len()
}

#[test]
fn empty_passwords_are_refused_everywhere() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let empty = env.path("empty-password");
    std::fs::write(&empty, "\n").unwrap();
    let refused = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("empty passwords are not allowed"),
            "{}",
            stderr(&out)
        );
    };
    refused(
        env.cmd(&["init"])
            .env("CAIRN_PASSWORD", "")
            .output()
            .unwrap(),
    );
    refused(
        env.cmd(&["init", "--password-file", empty.to_str().unwrap()])
            .env_remove("CAIRN_PASSWORD")
            .output()
            .unwrap(),
    );
    refused(
        env.cmd(&["backup", "--init", src.to_str().unwrap()])
            .env("CAIRN_PASSWORD", "")
            .output()
            .unwrap(),
    );
    assert!(
        !std::path::Path::new(&env.repo).exists(),
        "no repository was created"
    );
    env.init();
    refused(env.run(&["key", "add", "--new-password-file", empty.to_str().unwrap()]));
    refused(
        env.cmd(&["snapshots"])
            .env("CAIRN_PASSWORD", "")
            .output()
            .unwrap(),
    );
}

#[test]
fn password_flags_beat_the_environment() {
    let env = Env::new();
    env.init();
    let missing = env.path("no-such-password-file");
    let wrong = env.path("wrong-password");
    std::fs::write(&wrong, "not it\n").unwrap();
    let right = env.path("right-password");
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    fn flag(file: &std::path::Path) -> [&str; 3] {
        ["--password-file", file.to_str().unwrap(), "snapshots"]
    }
    // CAIRN_PASSWORD (right) is set by `cmd`; the file given on the command line wins.
    let out = env.run(&flag(&missing));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "the missing file is named: {}",
        stderr(&out)
    );
    let out = env.run(&flag(&wrong));
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let out = env
        .cmd(&["--password-command", "echo not it", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    // The environment's own forms come after CAIRN_PASSWORD.
    env.cmd(&["snapshots"])
        .env("CAIRN_PASSWORD_FILE", &wrong)
        .env("CAIRN_PASSWORD_COMMAND", "echo not it")
        .status()
        .unwrap()
        .success()
        .then_some(())
        .expect("CAIRN_PASSWORD beats CAIRN_PASSWORD_FILE and CAIRN_PASSWORD_COMMAND");
    let out = env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // Two sources on the command line: which one was meant is unclear.
    let out = env.run(&[
        "--password-file",
        right.to_str().unwrap(),
        "--password-command",
        "echo x",
        "snapshots",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));
}

/// Runs `cmd` on a pseudo-terminal without a password in the environment, answering every
/// password prompt with `password`; returns how many prompts there were and the exit code.
fn on_terminal(cmd: &std::process::Command, password: &str) -> (usize, i32) {
    const SCRIPT: &str = r#"
import os, pty, sys
password, argv = sys.argv[1].encode(), sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen, answered = b"", 0
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    seen += data
    while seen.count(b"enter ") > answered:
        os.write(fd, password + b"\n")
        answered += 1
_, status = os.waitpid(pid, 0)
print(answered)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut py = std::process::Command::new("python3");
    py.arg("-c")
        .arg(SCRIPT)
        .arg(password)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v
            && k != "CAIRN_PASSWORD"
        {
            py.env(k, v);
        }
    }
    let out = py.output().expect("run python3");
    let prompts = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("python3 failed: {}", stderr(&out)));
    (prompts, out.status.code().unwrap_or(-1))
}

#[test]
fn backup_init_on_a_terminal_asks_for_the_password_twice() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let backup = env.cmd(&["backup", "--init", src.to_str().unwrap()]);
    assert_eq!(on_terminal(&backup, PASSWORD), (2, 0), "new repository");
    assert_eq!(
        on_terminal(&backup, PASSWORD),
        (1, 0),
        "existing repository"
    );
    assert_eq!(on_terminal(&env.cmd(&["snapshots"]), PASSWORD), (1, 0));
    assert_eq!(snapshot_count(&env), 2);
}

#[test]
fn new_repository_options_are_range_checked_and_refused_where_they_do_nothing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let src = src.to_str().unwrap();
    for (option, value) in [
        ("--compression-level", "99"),
        ("--compression-level", "0"),
        ("--chunk-min", "1001"),
        ("--chunk-min", "32"),
        ("--chunk-avg", "8388608"),
        ("--chunk-max", "33554432"),
    ] {
        let out = env.run(&["init", option, value]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{option} {value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(option), "{}", stderr(&out));
    }
    let out = env.run(&["init", "--chunk-min", "1048576", "--chunk-avg", "524288"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--chunk-avg 524288"),
        "{}",
        stderr(&out)
    );
    assert!(!std::path::Path::new(&env.repo).exists());
    // `backup --init` takes them when it creates the repository.
    env.ok(&["backup", "--init", "--compression-level", "9", src]);
    let repo = env.open_with(env.backend(), "cache-in-process");
    assert_eq!(repo.config().zstd_level, 9);
    drop(repo);
    // Elsewhere they would be silently ignored: errors naming the option.
    for args in [
        &["backup", "--compression-level", "19", src][..],
        &["backup", "--init", "--chunk-min", "1000", src],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(args[args.len() - 3]),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(snapshot_count(&env), 1, "the refused backups saved nothing");
}

#[test]
fn impossible_dates_unlistable_folders_and_dumped_sockets_are_explained() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("closed")).unwrap();
    std::fs::write(src.join("closed/inside"), b"x").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    let out = env.run(&[
        "backup",
        "--time",
        "2020-02-30 10:00:00",
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid date"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = env.cmd(&["backup", src.to_str().unwrap()]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let line = stderr(&out)
        .lines()
        .find(|l| l.contains("closed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        line.contains(
            "the folder is in the snapshot, without the entries that could not be listed"
        ),
        "{line}"
    );
    let listing = String::from_utf8_lossy(&env.ok(&["ls", "latest"]).stdout).into_owned();
    assert!(
        listing.contains("/closed\n"),
        "the folder is kept: {listing}"
    );
    let out = env.run(&["dump", "latest", src.join("socket").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !stderr(&out).contains("for directories"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("sockets are not restored"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn restore_usage_asks_only_for_what_is_missing() {
    let env = Env::new();
    // Set in the environment, as they often are: not missing.
    let out = env
        .cmd(&["restore", "latest"])
        .env("CAIRN_REPOSITORY", &env.repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let usage = stderr(&out)
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(usage.contains("--target <TARGET>"), "{usage}");
    assert!(
        !usage.contains("--repo") && !usage.contains("--cache-dir"),
        "{usage}"
    );
}

/// Every value out of range is a command-line error (exit 2, the option named), found
/// before any work: no snapshot written, none forgotten, nothing stored.
#[test]
fn out_of_range_values_exit_2_before_any_work() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let src = src.to_str().unwrap();
    env.ok(&["backup", src]);
    let objects_before = all_files(&env.repo_dir()).len();
    let cases: &[(&[&str], &str)] = &[
        (&["forget", "--keep-daily", "-5"], "--keep-daily"),
        (&["forget", "--keep-within", "3x"], "--keep-within"),
        (
            &["forget", "--keep-last", "1", "--group-by", "planet"],
            "--group-by",
        ),
        (
            &["forget", "latest", "--prune", "--keep-delete", "5x"],
            "--keep-delete",
        ),
        (
            &["check", "--read-data-subset", "150%"],
            "--read-data-subset",
        ),
        (&["prune", "--max-unused", "200%"], "--max-unused"),
        (&["prune", "--keep-delete", "5x"], "--keep-delete"),
        (&["backup", "--time", "yesterday", src], "--time"),
        (&["find", "x", "--oldest", "yesterday"], "--oldest"),
        (
            &["init", "--s3-object-lock-days", "0"],
            "--s3-object-lock-days",
        ),
        (&["snapshots", "--s3-connections", "0"], "--s3-connections"),
    ];
    for (args, option) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(option), "{args:?}: {}", stderr(&out));
    }
    // A local time that does not exist (skipped by a daylight-saving change).
    let out = env
        .cmd(&["find", "x", "--oldest", "2026-03-29 02:30:00"])
        .env("TZ", "Europe/Berlin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_eq!(
        snapshot_count(&env),
        1,
        "nothing forgotten, nothing backed up"
    );
    assert_eq!(
        all_files(&env.repo_dir()).len(),
        objects_before,
        "nothing written"
    );
}

/// A file written to while the backup reads it is saved as read, named in a warning, and
/// the backup exits 3; files left alone are not named.
#[test]
fn a_file_changing_while_read_is_named_and_exits_3() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(40);
    let busy = src.join("busy.log");
    std::fs::write(&busy, random_bytes(&mut rng, 64 << 20)).unwrap();
    std::fs::write(src.join("still"), b"left alone").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(busy).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"another line\n").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let out = env.run(&["backup", src.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("busy.log: file changed while it was read"),
        "{err}"
    );
    assert!(!err.contains("src/still"), "{err}");
    assert_eq!(snapshot_count(&env), 1, "the snapshot is saved");
}

/// `forget` on a repository it may not change: the error names the snapshot and says
/// how many of those it set out to remove were removed (none), so the plan it printed is
/// not mistaken for what happened.
#[test]
fn forget_that_cannot_remove_says_what_was_removed() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"one").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("f"), b"two").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let snapshots = env.repo_dir().join("snapshots");
    std::fs::set_permissions(&snapshots, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = env.cmd(&["forget", "--keep-last", "1"]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    std::fs::set_permissions(&snapshots, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("removing snapshot"), "{err}");
    assert!(
        err.contains("0 of the 1 snapshots to forget were removed"),
        "{err}"
    );
    assert_eq!(snapshot_count(&env), 2);
}

/// A file or folder whose extended attributes and contents both cannot be read is one
/// report, saying what the snapshot truly keeps: nothing of the file, the folder itself.
#[test]
fn an_unreadable_path_is_reported_once_with_what_is_kept() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("closed")).unwrap();
    std::fs::write(src.join("closed/inside"), b"x").unwrap();
    std::fs::write(src.join("secret"), b"x").unwrap();
    std::fs::write(src.join("open"), b"x").unwrap();
    for name in ["closed", "secret"] {
        xattr::set(src.join(name), "user.note", b"1").unwrap();
        std::fs::set_permissions(src.join(name), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let mut cmd = env.cmd(&["backup", "--json", src.to_str().unwrap()]);
    drop_read_override(&mut cmd);
    let out = cmd.output().unwrap();
    for name in ["closed", "secret"] {
        std::fs::set_permissions(src.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let errors: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message_type"] == "error")
        .collect();
    let kept: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap();
            let name = path.rsplit('/').next().unwrap().to_string();
            (name, e["kept"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("closed".to_string(), "folder".to_string()),
            ("secret".to_string(), "nothing".to_string())
        ],
        "{errors:?}"
    );
    assert_eq!(summary_line(&out)["files_failed"], 2);
    let listing = String::from_utf8_lossy(&env.ok(&["ls", "latest"]).stdout).into_owned();
    assert!(listing.contains("/closed\n"), "{listing}");
    assert!(!listing.contains("/secret\n"), "{listing}");
    assert!(listing.contains("/open\n"), "{listing}");
}

/// `dump` writes a file's bytes to stdout: with `--json`, a failure is said on stderr
/// only, never as a JSON line mixed into the data.
#[test]
fn a_failed_dump_writes_no_json_into_the_data() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"data").unwrap();
    env.backup_json(&[&src], &[]);
    let out = env.run(&[
        "dump",
        "--json",
        "latest",
        src.join("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}
