//! What only an S3 repository can get wrong: credentials, buckets, endpoints, a server
//! that dies mid-backup, and what a run costs in requests.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn wrong_secret_key_is_access_denied_naming_the_bucket() {
    let Some(mut env) = Env::s3() else { return };
    env.init();
    if let Store::S3(server) = &mut env.store {
        server.secret_key = "not-the-secret-key".into();
    }
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("access denied to bucket cairn-test"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
}

#[test]
fn missing_bucket_is_named_and_exits_10() {
    let Some(mut env) = Env::s3() else { return };
    env.repo = "s3://no-such-bucket-here/repo".into();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bucket no-such-bucket-here does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_creates_a_missing_bucket() {
    let Some(mut env) = Env::s3() else { return };
    let bucket = format!("cairn-new-{}", std::process::id());
    env.repo = format!("s3://{bucket}/r");
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"in a new bucket").unwrap();
    env.backup_json(&[&src], &[]);
    env.assert_restores("latest", &src);
}

#[test]
fn unreachable_endpoint_and_bad_urls_are_clear_errors() {
    let Some(env) = Env::s3() else { return };
    // A port nothing listens on.
    let port = free_port();
    let started = Instant::now();
    let out = env
        .cmd(&["snapshots", "--retries", "1"])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot reach http://127.0.0.1:"), "{err}");
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));

    for (url, says) in [
        ("s3://", "names no bucket"),
        ("s3://Bad_Bucket/x", "invalid bucket name"),
        ("s3://ab/x", "invalid bucket name"),
        ("s3:bucket", "does not start with s3://"),
        ("s3://bucket/a/../b", "'..'"),
        ("gs://bucket", "unknown scheme gs://"),
    ] {
        let mut bad = Env::on_server(S3Server::shared());
        bad.repo = url.into();
        let out = bad.run(&["snapshots"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(stderr(&out).contains(says), "{url}: {}", stderr(&out));
    }
}

#[test]
fn unchanged_rerun_costs_a_handful_of_requests() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    random_tree(&src, 21);
    let first = env.backup_json(&[&src], &[]);
    let files = first["files_new"].as_u64().unwrap();
    let puts = first["requests"]["put"].as_u64().unwrap();
    assert!(files > 50, "{first}");
    // Packs, index and snapshot: PUTs follow bytes, not files.
    assert!(puts <= 6, "{puts} PUTs for {files} files: {first}");

    let again = env.backup_json(&[&src], &[]);
    let r = &again["requests"];
    let total: u64 = ["get", "put", "head", "list", "delete"]
        .iter()
        .map(|k| r[k].as_u64().unwrap())
        .sum();
    // config, key, parent snapshot; listings of keys, index files, snapshots and packs;
    // at most a tree pack, an index and a snapshot written. Trees come from the local
    // pack cache.
    assert!(
        total <= 12,
        "{total} requests for an unchanged rerun: {again}"
    );
    assert!(r["get"].as_u64().unwrap() <= 4, "{again}");
    assert_eq!(r["delete"], 0, "{again}");

    // A new machine (empty cache) fetches tree packs whole, not tree by tree.
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let cold = env.backup_json(&[&src], &[]);
    assert!(
        cold["requests"]["get"].as_u64().unwrap() <= 10,
        "cold-cache rerun: {cold}"
    );
}

#[test]
fn single_file_restore_reads_only_what_it_needs() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    random_tree(&src, 22);
    let big = src.join("big");
    let mut rng = fastrand::Rng::with_seed(9);
    std::fs::write(&big, random_bytes(&mut rng, 12 * 1024 * 1024)).unwrap();
    let small = src.join("small.txt");
    std::fs::write(&small, b"one small file among many").unwrap();
    let first = env.backup_json(&[&src], &[]);
    let stored = first["data_added_packed"].as_u64().unwrap();

    let out = env.ok(&["--json", "dump", "latest", small.to_str().unwrap()]);
    assert_eq!(out.stdout, b"one small file among many");

    let target = env.path("one");
    let out = env.ok(&[
        "restore",
        "latest",
        "--json",
        "--target",
        target.to_str().unwrap(),
        "--include",
        small.to_str().unwrap(),
    ]);
    let summary = summary_line(&out);
    let down = summary["requests"]["bytes_down"].as_u64().unwrap();
    assert!(
        down < stored / 4,
        "restoring one small file downloaded {down} of {stored} bytes: {summary}"
    );
    assert_eq!(
        std::fs::read(target.join(small.strip_prefix("/").unwrap())).unwrap(),
        b"one small file among many"
    );

    // A full restore reads packs in few large ranged reads, not one per file.
    let full = env.path("full");
    let out = env.ok(&[
        "restore",
        "latest",
        "--json",
        "--verify",
        "--target",
        full.to_str().unwrap(),
    ]);
    let summary = summary_line(&out);
    let gets = summary["requests"]["get"].as_u64().unwrap();
    let files = summary["files_restored"].as_u64().unwrap();
    assert!(gets * 4 < files, "{gets} GETs for {files} files: {summary}");
    assert_same_tree(&src, &full.join(src.strip_prefix("/").unwrap()));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private s3s-fs instance that this test may kill and restart.
struct OwnServer {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnServer {
    fn start(dir: &Path, port: u16) -> OwnServer {
        let shared = S3Server::shared();
        let bin = std::env::var("CAIRN_TEST_S3FS_BIN").unwrap_or_else(|_| "s3s-fs".into());
        std::fs::create_dir_all(dir.join(&shared.bucket)).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &shared.access_key])
            .args(["--secret-key", &shared.secret_key])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs (CAIRN_TEST_S3FS_BIN)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnServer {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn server(&self) -> S3Server {
        S3Server {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            dir: self.dir.clone(),
            ..S3Server::shared()
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn server_killed_mid_backup_then_next_backup_completes() {
    // Its own s3s-fs, with the shared one's bucket and keys.
    if S3Server::configured().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let store = scratch.path().join("store");
    let port = free_port();
    let mut server = OwnServer::start(&store, port);
    let env = Env::on_server(server.server());
    env.init();

    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(31);
    for i in 0..16 {
        std::fs::write(
            src.join(format!("f{i}")),
            random_bytes(&mut rng, 4 * 1024 * 1024),
        )
        .unwrap();
    }
    let backup = env
        .cmd(&[
            "backup",
            "--json",
            "--retries",
            "2",
            "--s3-connections",
            "1",
        ])
        .arg(&src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the first pack has landed.
    let packs = env.repo_dir().join("data");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !packs.exists() || all_files(&packs).is_empty() {
        assert!(Instant::now() < deadline, "no pack was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let _server = OwnServer::start(&store, port);
    let summary = env.backup_json(&[&src], &[]);
    assert_eq!(summary["files_failed"], 0);
    env.assert_restores("latest", &src);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the finished backup"
    );
}

/// `-vv` and `-vvv` show cairn's own account; the SDK's own logs (over a hundred lines
/// for one `snapshots`) wait for `-vvvv`.
#[test]
fn sdk_logs_only_show_at_four_v() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let lines = |v: &str| {
        let out = env.ok(&[v, "snapshots"]);
        String::from_utf8_lossy(&out.stderr).lines().count()
    };
    let (vv, vvv, vvvv) = (lines("-vv"), lines("-vvv"), lines("-vvvv"));
    assert!(vv <= 10, "-vv printed {vv} lines");
    assert!(vvv <= 30, "-vvv printed {vvv} lines");
    assert!(vvvv >= vvv + 50, "-vvvv shows the SDK's logs: {vvvv} lines");
}
