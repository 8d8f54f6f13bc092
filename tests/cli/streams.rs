//! `backup --stdin` and `backup --stdin-from-command`: a stream as one file of a snapshot.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::common::*;

/// Runs cairn with `input` on its standard input.
fn run_with_input(env: &Env, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = env.cmd(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start cairn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Written beside the reading of the output: a full pipe must not stall either side.
    // A cairn that refuses its options exits unread (the write then fails); one that
    // reads everything is checked by what it stored.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("cairn output");
    writer.join().expect("writer");
    out
}

fn succeeded(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    summary_line(out)
}

fn snapshot_count(env: &Env) -> usize {
    let out = env.ok(&["snapshots", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .len()
}

fn stdin_is_one_file_that_dumps_back_and_deduplicates(env: Env) {
    env.init();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut data = random_bytes(&mut rng, 12 << 20);
    let args = [
        "backup",
        "--json",
        "--stdin",
        "--stdin-filename",
        "db/all.sql",
    ];
    let first = succeeded(&run_with_input(&env, &args, &data));
    assert_eq!(first["files_new"], 1, "{first}");
    assert_eq!(first["dirs_new"], 1, "{first}");
    assert_eq!(first["total_bytes_processed"], data.len() as u64, "{first}");
    assert!(first["data_blobs"].as_u64().unwrap() > 2, "{first}");

    let dumped = env.ok(&["dump", "latest", "/db/all.sql"]);
    assert!(dumped.stdout == data, "dump gives back the bytes of stdin");
    let snaps = env.ok(&["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db/all.sql"]));

    let same = succeeded(&run_with_input(&env, &args, &data));
    assert_eq!(same["files_unmodified"], 1, "{same}");
    assert_eq!(
        same["data_blobs"], 0,
        "the same stream stores nothing: {same}"
    );

    // One byte changed in the middle: a chunk or two travel, not the stream.
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    let edited = succeeded(&run_with_input(&env, &args, &data));
    assert_eq!(edited["files_changed"], 1, "{edited}");
    assert!(
        edited["data_added"].as_u64().unwrap() < data.len() as u64 / 2,
        "only the chunks around the edit: {edited}"
    );
    let dumped = env.ok(&["dump", "latest", "/db/all.sql"]);
    assert!(dumped.stdout == data);

    // An empty stream is an empty file.
    let empty = succeeded(&run_with_input(
        &env,
        &["backup", "--json", "--stdin", "--stdin-filename", "empty"],
        b"",
    ));
    assert_eq!(empty["total_bytes_processed"], 0, "{empty}");
    assert!(env.ok(&["dump", "latest", "/empty"]).stdout.is_empty());

    let restored = env.path("restored");
    env.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    let meta = std::fs::metadata(restored.join("empty")).unwrap();
    assert!(meta.is_file() && meta.len() == 0);
}

fn a_command_s_output_is_a_backup_only_if_it_exits_0(env: Env) {
    env.init();
    let dump = env.path("dump.sql");
    let mut rng = fastrand::Rng::with_seed(8);
    let data = random_bytes(&mut rng, 3 << 20);
    std::fs::write(&dump, &data).unwrap();
    let dump = dump.to_str().unwrap();
    let script = format!("cat '{dump}'; echo 'dump: 1 warning' >&2");
    let out = env.ok(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "mydb.sql",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dump: 1 warning"),
        "what the command said is shown: {stderr}"
    );
    assert!(env.ok(&["dump", "latest", "/mydb.sql"]).stdout == data);
    assert_eq!(snapshot_count(&env), 1);

    // Output, then failure: the output is no backup.
    let failing =
        format!("head -c 1000000 '{dump}'; echo 'ERROR 1045: Access denied for user' >&2; exit 2");
    let out = env.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "mydb.sql",
        "--",
        "sh",
        "-c",
        &failing,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`sh -c 'head -c 1000000 "),
        "the command as typed: {stderr}"
    );
    assert!(stderr.contains("exited with status 2"), "{stderr}");
    assert!(stderr.contains("Access denied for user"), "{stderr}");
    assert!(stderr.contains("no snapshot was saved"), "{stderr}");
    assert_eq!(snapshot_count(&env), 1, "no snapshot of a failed command");

    let out = env.run(&[
        "backup",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        "printf partial; kill -9 $$",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("killed by signal 9"), "{stderr}");

    let out = env.run(&[
        "backup",
        "--stdin-from-command",
        "--",
        "/nonexistent/mysqldump",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot run `/nonexistent/mysqldump`"),
        "{stderr}"
    );
    assert_eq!(snapshot_count(&env), 1);

    // The repository is sound and the failed runs' blobs are reused, not stored again.
    env.ok(&["check"]);
    let again = summary_line(&env.ok(&[
        "backup",
        "--json",
        "--stdin-from-command",
        "--stdin-filename",
        "mydb.sql",
        "--",
        "cat",
        dump,
    ]));
    assert_eq!(again["files_unmodified"], 1, "{again}");
    assert_eq!(again["data_blobs"], 0, "{again}");
}

on_both_backends!(
    stdin_is_one_file_that_dumps_back_and_deduplicates,
    a_command_s_output_is_a_backup_only_if_it_exits_0,
);

/// A password command that reads its standard input gets an empty one: the stream is
/// the backup's, whole.
#[test]
fn a_password_command_never_takes_the_stream() {
    let env = Env::new();
    env.init();
    let payload = vec![7u8; 300_000];
    let command = format!("cat >/dev/null; echo '{PASSWORD}'");
    let out = run_with_input(
        &env,
        &[
            "backup",
            "--stdin",
            "--stdin-filename",
            "data",
            "--json",
            "--password-command",
            &command,
        ],
        &payload,
    );
    succeeded(&out);
    assert_eq!(env.ok(&["dump", "latest", "/data"]).stdout, payload);
}

#[test]
fn wrong_stream_options_are_refused_before_anything_is_read() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let src = src.to_str().unwrap();
    for (args, says) in [
        (vec!["backup", "--stdin", src], "leave out the paths"),
        (
            vec!["backup", "--stdin", "--stdin-filename", "../x"],
            "`..` cannot name a place",
        ),
        (
            vec!["backup", "--stdin", "--stdin-filename", "/"],
            "give a file name",
        ),
        (
            vec!["backup", "--stdin", "--exclude", "*.tmp"],
            "cannot be used with",
        ),
        (
            vec!["backup", "--stdin", "--stdin-from-command", "--", "true"],
            "cannot be used with",
        ),
        (vec!["backup", "--stdin-from-command"], "required"),
    ] {
        let out = run_with_input(&env, &args, b"data");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(snapshot_count(&env), 0);
}

/// A store that fails while a command's output streams in: the backup stops with the
/// store's error (not the command's), the command is stopped rather than left writing
/// into a pipe nobody reads, and no snapshot is saved.
#[test]
fn a_dead_store_stops_the_command_and_saves_nothing() {
    use std::time::{Duration, Instant};

    use cairn::ops::archiver::{StreamOptions, StreamSource, backup_stream};

    let Some(env) = Env::s3() else { return };
    env.init();
    let (faulty, repo) = failing_later(&env);
    let pid_file = env.path("writer.pid");
    // The store dies once the command runs.
    let killer = {
        let (faulty, pid_file) = (faulty.clone(), pid_file.clone());
        std::thread::spawn(move || {
            while !pid_file.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            faulty.set_fail_share(1.0);
        })
    };
    // Writes without end: only being stopped ends it.
    let script = format!("echo $$ > '{}'; exec cat /dev/urandom", pid_file.display());
    let started = Instant::now();
    let result = backup_stream(
        &repo,
        &StreamOptions {
            name: "endless".into(),
            tags: Vec::new(),
            hostname: "test".into(),
            parent: None,
            dry_run: false,
            time: None,
        },
        StreamSource::Command(vec!["sh".into(), "-c".into(), script.into()]),
        &cairn::progress::Silent,
    );
    killer.join().unwrap();
    let Err(err) = result else {
        panic!("a backup into a dead store succeeded");
    };
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Reaped: no such process any more (a zombie would still answer signal 0).
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(!alive, "the command is stopped and reaped");
    drop(repo);
    assert_eq!(snapshot_count(&env), 0);
}
