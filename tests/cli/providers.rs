//! cairn on S3 stores as users have them. moto (a second S3 implementation, independent of
//! s3s-fs) serves the bucket, directly or through `scripts/s3-quirk-proxy.py`, whose
//! profiles behave as real stores do: Backblaze B2 answers 501 to `If-None-Match`, GCS and
//! Garage ignore it, R2, older MinIO and Ceph refuse checksum headers and aws-chunked
//! bodies, and a store may stop answering. Every profile runs the same round trip,
//! dedup, forget + prune and `check --read-data`, and the proxy's log shows what each PUT
//! carried.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::*;

/// Whether the moto server is configured: every test here needs it (see
/// `test_server_var`).
fn moto_configured() -> bool {
    test_server_var("CAIRN_TEST_MOTO_ENDPOINT").is_some()
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the moto server that ./scripts/test.sh installs and starts (scripts/s3-server.sh)"
        )
    })
}

/// A running quirk proxy in front of the moto server.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(profile: &str, dir: &Path) -> Proxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-quirk-proxy.py");
        let log = dir.join(format!(
            "proxy-{}-{}.log",
            profile.replace([',', '='], "_"),
            fastrand::u32(..)
        ));
        let python = std::env::var("CAIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(script)
            .args([
                "--port",
                "0",
                "--upstream",
                &var("CAIRN_TEST_MOTO_ENDPOINT"),
            ])
            .args(["--profile", profile, "--log"])
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the quirk proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("proxy stdout"))
            .read_line(&mut line)
            .expect("read the proxy's port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the proxy said {line:?}"));
        Proxy { child, port, log }
    }

    fn server(&self) -> S3Server {
        moto_at(format!("http://127.0.0.1:{}", self.port))
    }

    /// Every request the proxy saw so far, oldest first.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The requests since the `skip` first ones.
    fn requests_after(&self, skip: usize) -> Vec<serde_json::Value> {
        self.requests().into_iter().skip(skip).collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto server at `endpoint` (itself, or a proxy in front of it).
fn moto_at(endpoint: String) -> S3Server {
    let shared_keys = S3Server::shared();
    S3Server {
        endpoint,
        bucket: var("CAIRN_TEST_MOTO_BUCKET"),
        // moto keeps objects in memory: tests here look at them only through cairn and
        // the proxy's log.
        dir: PathBuf::new(),
        access_key: shared_keys.access_key,
        secret_key: shared_keys.secret_key,
    }
}

fn header<'a>(request: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    request["headers"][name].as_str()
}

/// What a profile's store is expected to be found to do, as `init` reports it.
struct Expect {
    conditional: &'static str,
    checksum: &'static str,
}

/// The PUTs of repository objects (not the probe's) carry one plain integrity header,
/// never a streaming or trailing checksum, and `If-None-Match` only where honoured.
fn assert_wire_format(requests: &[serde_json::Value], expect: &Expect) {
    let mut puts = 0;
    for r in requests {
        let path = r["path"].as_str().unwrap_or_default();
        for banned in [
            "x-amz-sdk-checksum-algorithm",
            "x-amz-trailer",
            "x-amz-checksum-mode",
        ] {
            assert!(header(r, banned).is_none(), "{banned} sent: {r}");
        }
        if let Some(sha) = header(r, "x-amz-content-sha256") {
            assert!(!sha.starts_with("STREAMING"), "streaming payload: {r}");
        }
        if let Some(enc) = header(r, "content-encoding") {
            assert!(!enc.contains("aws-chunked"), "aws-chunked body: {r}");
        }
        if r["method"] != "PUT" || path.contains("cairn-probe-") {
            continue;
        }
        puts += 1;
        let crc = header(r, "x-amz-checksum-crc32c").is_some();
        let md5 = header(r, "content-md5").is_some();
        match expect.checksum {
            "CRC32C" => assert!(crc && !md5, "{r}"),
            _ => assert!(md5 && !crc, "{r}"),
        }
        let conditional = header(r, "if-none-match").is_some();
        assert_eq!(
            conditional,
            expect.conditional == "honoured",
            "If-None-Match on {path}: {r}"
        );
    }
    assert!(puts > 0, "no PUT seen");
}

/// No lock object is left in the repository (`unlock` finds nothing to remove).
fn assert_no_lock_left(env: &Env) {
    let unlock = env.ok(&["unlock", "--json"]);
    let unlock: serde_json::Value = serde_json::from_slice(&unlock.stdout).unwrap();
    assert_eq!(unlock["removed"], false, "a lock was left: {unlock}");
}

fn requests_total(summary: &serde_json::Value) -> u64 {
    ["get", "put", "head", "list", "delete"]
        .iter()
        .map(|k| summary["requests"][k].as_u64().unwrap_or(0))
        .sum()
}

/// The whole life of a repository through one profile.
fn round_trip_through(profile: Option<&str>, expect: Expect) {
    let scratch = tempfile::tempdir().unwrap();
    let proxy = profile.map(|p| Proxy::start(p, scratch.path()));
    let server = match &proxy {
        Some(p) => p.server(),
        None => moto_at(var("CAIRN_TEST_MOTO_ENDPOINT")),
    };
    let name = profile.unwrap_or("moto");
    let env = Env::on_server(server);
    let init = env.ok(&["init"]);
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(
        said.contains(&format!(
            "conditional creates (If-None-Match: *) {}",
            expect.conditional
        )) && said.contains(&format!("upload checksums {}", expect.checksum)),
        "{name}: {said}"
    );

    let src = env.path("src");
    random_tree(&src, 71);
    let big = src.join("big.bin");
    std::fs::write(
        &big,
        random_bytes(&mut fastrand::Rng::with_seed(7), 6 << 20),
    )
    .unwrap();
    let original = std::fs::read(&big).unwrap();
    let started = Instant::now();
    let first = env.backup_json(&[&src], &[]);
    let first_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let unchanged = env.backup_json(&[&src], &[]);
    let unchanged_secs = started.elapsed().as_secs_f64();
    // Only the tree of the folder holding the cache changed.
    assert_eq!(unchanged["data_blobs"], 0, "{name}: {unchanged}");
    assert_eq!(unchanged["files_new"], 0, "{name}: {unchanged}");

    // One byte changed in the middle of a large file costs a chunk or two, not the file.
    let mut edited = original.clone();
    edited[3 << 20] ^= 0xff;
    std::fs::write(&big, &edited).unwrap();
    let third = env.backup_json(&[&src], &[]);
    assert!(
        third["data_added"].as_u64().unwrap() < 4 << 20,
        "{name}: one byte changed added {third}"
    );
    env.assert_restores("latest", &src);

    // A single file from the first snapshot, as it was then.
    let first_id = first["snapshot_id"].as_str().unwrap();
    let one = env.path("one");
    let started = Instant::now();
    let restored = summary_line(&env.ok(&[
        "restore",
        first_id,
        "--json",
        "--target",
        one.to_str().unwrap(),
        "--include",
        big.to_str().unwrap(),
    ]));
    let restore_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        std::fs::read(one.join(big.strip_prefix("/").unwrap())).unwrap(),
        original,
        "{name}"
    );
    eprintln!(
        "{name}: first backup {} requests in {first_secs:.2} s, unchanged rerun {} in {unchanged_secs:.2} s, \
         single-file restore {} in {restore_secs:.2} s ({})",
        requests_total(&first),
        requests_total(&unchanged),
        requests_total(&restored),
        restored["requests"]
    );

    // Forget the snapshots holding the big file as it was, and prune at once: the chunk
    // the edit replaced goes.
    env.ok(&[
        "forget",
        first_id,
        unchanged["snapshot_id"].as_str().unwrap(),
    ]);
    let out = env.ok(&PRUNE_NOW);
    let pruned = summary_line(&out);
    assert!(
        pruned["packs_deleted"].as_u64().unwrap() + pruned["packs_repacked"].as_u64().unwrap() > 0,
        "{name}: {pruned}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("damaged"), "{name}: prune said {err}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);

    // Two prunes at once: each holds the lock or refuses (11), and none is left behind.
    let racers: Vec<Child> = (0..2)
        .map(|_| {
            env.cmd(&PRUNE_NOW)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 11)),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_no_lock_left(&env);
    env.ok(&["check"]);
    if let Some(proxy) = &proxy {
        assert_wire_format(&proxy.requests(), &expect);
    }
}

#[test]
fn moto_itself() {
    if !moto_configured() {
        return;
    }
    round_trip_through(
        None,
        Expect {
            conditional: "honoured",
            // moto stores a wrong CRC32C: the probe finds that it checks nothing.
            checksum: "Content-MD5",
        },
    );
}

#[test]
fn store_that_refuses_conditional_writes_like_b2() {
    if !moto_configured() {
        return;
    }
    round_trip_through(
        Some("no-conditional"),
        Expect {
            conditional: "refused",
            checksum: "Content-MD5",
        },
    );
}

#[test]
fn store_that_ignores_conditional_writes_like_gcs_and_garage() {
    if !moto_configured() {
        return;
    }
    round_trip_through(
        Some("ignore-conditional"),
        Expect {
            conditional: "ignored",
            checksum: "Content-MD5",
        },
    );
}

#[test]
fn store_that_refuses_checksum_headers_like_r2_and_ceph() {
    if !moto_configured() {
        return;
    }
    round_trip_through(
        Some("no-checksums"),
        Expect {
            conditional: "honoured",
            checksum: "Content-MD5",
        },
    );
}

#[test]
fn store_that_refuses_both() {
    if !moto_configured() {
        return;
    }
    round_trip_through(
        Some("no-conditional,no-checksums"),
        Expect {
            conditional: "refused",
            checksum: "Content-MD5",
        },
    );
}

/// Where `If-None-Match` does not protect the lock, a second prune still refuses (exit 11,
/// naming the first) while the first, stopped with SIGSTOP, holds it; the first then
/// finishes, and no lock object is left.
fn second_prune_refuses_while_the_first_holds_the_lock(profile: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(profile, scratch.path());
    let env = Env::on_server(proxy.server());
    env.init();
    let src = env.path("src");
    random_tree(&src, 72);
    let first = env.backup_json(&[&src], &[]);
    env.backup_json(&[&src], &["--tag", "again"]);
    env.ok(&["forget", first["snapshot_id"].as_str().unwrap()]);
    // A record from when the store honoured If-None-Match (it was upgraded, or moved
    // behind another gateway since): prune must not trust it.
    for record in std::fs::read_dir(env.path("cache/stores")).unwrap() {
        let path = record.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let stale = text
            .replace("\"ignored\"", "\"honoured\"")
            .replace("\"refused\"", "\"honoured\"");
        std::fs::write(&path, stale).unwrap();
    }

    let seen = proxy.requests().len();
    let mut holder = env
        .cmd(&PRUNE_NOW)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let locked = proxy.requests_after(seen).iter().any(|r| {
            r["method"] == "PUT"
                && r["status"] == 200
                && r["path"].as_str().unwrap_or_default().contains("/locks/")
        });
        if locked {
            break;
        }
        assert!(
            holder.try_wait().unwrap().is_none(),
            "the first prune ended before its lock was seen"
        );
        assert!(Instant::now() < deadline, "no lock PUT seen");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = Pid::from_raw(holder.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let second = env.run(&PRUNE_NOW);
    kill(pid, Signal::SIGCONT).unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(11), "{profile}: {err}");
    assert!(
        err.contains(&format!("pid {}", holder.id())),
        "{profile}: {err}"
    );
    let done = holder.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{profile}: the first prune: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_no_lock_left(&env);
    env.ok(&["check"]);
}

#[test]
fn lock_holds_where_conditional_writes_are_ignored() {
    if !moto_configured() {
        return;
    }
    second_prune_refuses_while_the_first_holds_the_lock("ignore-conditional");
}

#[test]
fn lock_holds_where_conditional_writes_are_refused() {
    if !moto_configured() {
        return;
    }
    second_prune_refuses_while_the_first_holds_the_lock("no-conditional");
}

#[test]
fn a_config_is_never_replaced_where_conditional_writes_are_ignored() {
    if !moto_configured() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("ignore-conditional", scratch.path());
    let env = Env::on_server(proxy.server());
    env.init();
    // The user's choices are said as such.
    let mut off = Env::on_server(proxy.server());
    off.repo.push_str("-off");
    let said = off.ok(&["init", "--s3-conditional-writes=off"]);
    assert!(
        String::from_utf8_lossy(&said.stdout).contains("not used (--s3-conditional-writes=off)"),
        "{}",
        String::from_utf8_lossy(&said.stdout)
    );
    let refusing = Proxy::start("no-conditional", scratch.path());
    let mut forced = Env::on_server(refusing.server());
    forced.repo.push_str("-forced");
    let out = forced.run(&["init", "--s3-conditional-writes=on"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the command line asked for that"), "{err}");
    assert!(!err.contains("gave up"), "a refusal is not retried: {err}");
    let again = env.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    env.ok(&["snapshots"]);
}

/// Runs cairn on `env`'s repository with `--s3-timeout 2` through a new proxy of
/// `profile` in front of moto; returns its output and how long it took.
fn through(
    env: &Env,
    scratch: &tempfile::TempDir,
    profile: &str,
    args: &[&str],
    paths: &[&Path],
) -> (std::process::Output, Duration) {
    let proxy = Proxy::start(profile, scratch.path());
    let mut full = vec!["--s3-timeout", "2"];
    full.extend_from_slice(args);
    let mut cmd = env.cmd(&full);
    cmd.args(paths)
        .env("AWS_ENDPOINT_URL", proxy.server().endpoint);
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (out, started.elapsed())
}

#[test]
fn hung_store_fails_within_the_timeout_and_the_next_backup_completes() {
    if !moto_configured() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let good = Proxy::start("passthrough", scratch.path());
    let env = Env::on_server(good.server());
    env.init();
    // Small files: each upload is given the timeout plus its transfer time at 256 KiB/s,
    // and the point here is the timeout.
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i}\n").repeat(100)).unwrap();
    }

    // A store that takes the connection and never answers, from the start and mid-backup.
    for profile in ["hung", "hung-after=12"] {
        let (out, took) = through(
            &env,
            &scratch,
            profile,
            &["--retries", "2", "backup"],
            &[&src],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{profile}: {err}");
        assert!(
            err.contains("no answer from") && err.contains("gave up after 3 attempts"),
            "{profile}: {err}"
        );
        // Three attempts of 2 s (plus the time an upload may take) and the pauses.
        assert!(took < Duration::from_secs(60), "{profile}: took {took:?}");
    }
    // The probe itself meets the hung store (6 reads answered, then the first write):
    // one probe fails, and every upload waiting on it fails with it.
    let (out, took) = through(
        &env,
        &scratch,
        "hung-after=6",
        &["--retries", "1", "backup"],
        &[&src],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("probing what the S3 store supports"), "{err}");
    assert!(
        took < Duration::from_secs(25),
        "the probe took {took:?}: {err}"
    );

    let done = env.backup_json(&[&src], &[]);
    assert!(done["snapshot_id"].is_string(), "{done}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);

    // Reads that meet a hung store fail: `snapshots` never shows fewer snapshots (the
    // fifth request is the GET of a snapshot: config, key listing, key, snapshot listing
    // come first, and no index is read), and a restore stops instead of waiting out every
    // blob's retries.
    let (out, _) = through(
        &env,
        &scratch,
        "hung-after=4",
        &["--retries", "1", "snapshots"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("0 snapshots"),
        "{err}"
    );
    let target = env.path("hung-restore");
    let restore = ["--retries", "1", "restore", "latest", "--target"];
    let (out, took) = through(&env, &scratch, "hung-after=6", &restore, &[&target]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("reading from the store failed"), "{err}");
    assert!(
        took < Duration::from_secs(60),
        "the restore took {took:?}: {err}"
    );
    env.assert_restores("latest", &src);
}

#[test]
fn object_lock_is_a_property_of_the_repository() {
    if !moto_configured() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("passthrough", scratch.path());
    let mut env = Env::on_server(proxy.server());
    // A bucket of its own: `init` creates it with object lock enabled.
    let bucket = format!("lock-{}", fastrand::u64(..));
    env.repo = format!("s3://{bucket}/repo");
    let init = env.ok(&["init", "--s3-object-lock-days", "1"]);
    assert!(
        String::from_utf8_lossy(&init.stdout)
            .contains("object lock: every object but locks is kept for 1 day, governance mode"),
        "{}",
        String::from_utf8_lossy(&init.stdout)
    );
    let src = env.path("src");
    random_tree(&src, 74);
    let seen = proxy.requests().len();
    let snap = env.backup_json(&[&src], &[]);
    let puts: Vec<_> = proxy
        .requests_after(seen)
        .into_iter()
        .filter(|r| r["method"] == "PUT" && !r["path"].as_str().unwrap().contains("cairn-probe-"))
        .collect();
    assert!(puts.len() >= 3, "{puts:?}");
    for r in &puts {
        assert_eq!(
            header(r, "x-amz-object-lock-mode"),
            Some("GOVERNANCE"),
            "{r}"
        );
        assert!(
            header(r, "x-amz-object-lock-retain-until-date").is_some(),
            "{r}"
        );
    }

    // Asking for less than the repository's retention is an error; more is fine.
    let less = env.run(&[
        "--s3-object-lock-days",
        "1",
        "--s3-object-lock-mode",
        "governance",
        "snapshots",
    ]);
    assert!(less.status.success(), "the same is not less");
    let mut weaker = Env::on_server(proxy.server());
    weaker.repo = format!("s3://{bucket}/strict");
    weaker.ok(&[
        "init",
        "--s3-object-lock-days",
        "2",
        "--s3-object-lock-mode",
        "compliance",
    ]);
    for args in [
        [
            "--s3-object-lock-days",
            "1",
            "--s3-object-lock-mode",
            "compliance",
        ],
        [
            "--s3-object-lock-days",
            "5",
            "--s3-object-lock-mode",
            "governance",
        ],
    ] {
        let mut full = args.to_vec();
        full.push("backup");
        full.push(src.to_str().unwrap());
        let out = weaker.run(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("less than the repository's"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // What the command line leaves out comes from the repository: more days keep its
    // compliance mode.
    let seen = proxy.requests().len();
    weaker.ok(&[
        "--s3-object-lock-days",
        "3",
        "backup",
        src.to_str().unwrap(),
    ]);
    let modes: Vec<_> = proxy
        .requests_after(seen)
        .into_iter()
        .filter(|r| r["method"] == "PUT" && !r["path"].as_str().unwrap().contains("/locks/"))
        .map(|r| header(&r, "x-amz-object-lock-mode").map(str::to_string))
        .collect();
    assert!(
        !modes.is_empty() && modes.iter().all(|m| m.as_deref() == Some("COMPLIANCE")),
        "{modes:?}"
    );
    // A mode alone is a usage error.
    let out = env.run(&["--s3-object-lock-mode", "compliance", "snapshots"]);
    assert_eq!(out.status.code(), Some(2));

    // forget must leave a snapshot under retention, and says so; prune then has nothing
    // it may delete, and the lock it took is gone (locks carry no retention).
    let id = snap["snapshot_id"].as_str().unwrap();
    let forget = env.run(&["forget", id]);
    assert_eq!(forget.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&forget.stderr).contains("object-lock retention"),
        "{}",
        String::from_utf8_lossy(&forget.stderr)
    );
    env.ok(&PRUNE_NOW);
    assert_no_lock_left(&env);
    env.assert_restores(id, &src);

    // A local repository cannot lock objects.
    let local = Env::new();
    let out = local.run(&["init", "--s3-object-lock-days", "1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn archived_packs_are_reported_once_retrieved_on_request_and_then_restored() {
    if !moto_configured() {
        return;
    }
    let env = Env::on_server(moto_at(var("CAIRN_TEST_MOTO_ENDPOINT")));
    env.init();
    let src = env.path("src");
    random_tree(&src, 75);
    env.backup_json(&[&src], &["--s3-storage-class", "GLACIER"]);

    // check reads no archived data, and says so.
    let check = env.ok(&["check"]);
    let said = String::from_utf8_lossy(&check.stderr).into_owned()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("their headers not read"), "{said}");

    // A restore names each archived pack once, not each file, and exits 4.
    let target = env.path("restore");
    let t = target.to_str().unwrap();
    let out = env.run(&["restore", "latest", "--target", t]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let packs = err
        .lines()
        .filter(|l| l.contains("is in storage class GLACIER"))
        .count();
    assert!(packs >= 1, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        packs + 1,
        "one line per pack and a total: {err}"
    );
    assert!(err.contains("--retrieve-cold"), "{err}");

    // --retrieve-cold requests exactly those packs, and exits 4 until they are readable.
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        t,
        "--retrieve-cold",
        "--tier",
        "bulk",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "requested the retrieval of {packs} archived data packs"
        )),
        "{err}"
    );
    // moto makes retrieved copies readable at once: the same restore now completes.
    let out = env.ok(&["restore", "latest", "--target", t, "--retrieve-cold"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("are retrieved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    env.ok(&["check", "--read-data"]);
}

/// A moto server of this test's own that checks every request against IAM after the
/// first `free_requests` (which create the users).
struct IamMoto {
    child: Child,
    endpoint: String,
}

impl IamMoto {
    fn start(free_requests: u32) -> IamMoto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(var("CAIRN_TEST_MOTO_BIN"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", free_requests.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // moto listens before its app is loaded; a TCP connect is not enough, but the
        // user setup below retries nothing, so wait for an HTTP answer.
        loop {
            let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                s.write_all(b"GET /moto-api/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .is_ok()
                    && s.read(&mut [0u8; 16]).is_ok_and(|n| n > 0)
            });
            if answered {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        IamMoto { child, endpoint }
    }
}

impl Drop for IamMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// README's backup-only policy, on a store that enforces IAM: backup works with it; what
/// deletes (forget, prune) fails with a message naming the refused request; a missing
/// credential is named at once, never retried.
#[test]
fn backup_only_credential_backs_up_and_cannot_delete() {
    if !moto_configured() {
        return;
    }
    let moto = IamMoto::start(6);
    let admin =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    let backup_only = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":["s3:ListBucket"],"Resource":"arn:aws:s3:::iam-bucket"},
        {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::iam-bucket/laptop/*"}]}"#;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-iam-users.py");
    let made = Command::new(var("CAIRN_TEST_PYTHON"))
        .arg(script)
        .arg(&moto.endpoint)
        .arg(format!("admin={admin}"))
        .arg(format!("backup={backup_only}"))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let keys: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let as_user = |user: &str| {
        let mut server = moto_at(moto.endpoint.clone());
        server.access_key = keys[user][0].as_str().unwrap().to_string();
        server.secret_key = keys[user][1].as_str().unwrap().to_string();
        let mut env = Env::on_server(server);
        env.repo = "s3://iam-bucket/laptop".into();
        env
    };
    let admin_env = as_user("admin");
    let backup_env = as_user("backup");
    admin_env.init();
    let src = backup_env.path("src");
    random_tree(&src, 76);
    let snap = backup_env.backup_json(&[&src], &[]);
    backup_env.assert_restores("latest", &src);

    let forget = backup_env.run(&["forget", snap["snapshot_id"].as_str().unwrap()]);
    let err = String::from_utf8_lossy(&forget.stderr);
    assert_eq!(forget.status.code(), Some(1), "{err}");
    assert!(
        err.contains("access denied") && err.contains("DELETE snapshots/"),
        "{err}"
    );
    let prune = backup_env.run(&["prune"]);
    let err = String::from_utf8_lossy(&prune.stderr);
    assert_eq!(prune.status.code(), Some(1), "{err}");
    assert!(
        err.contains("access denied") && err.contains("DELETE"),
        "{err}"
    );
    // What the refused prune left, a credential that may delete clears.
    admin_env.ok(&["unlock"]);
    admin_env.ok(&["check", "--read-data"]);

    // No credentials at all: said at once, not retried.
    let mut none = backup_env.cmd(&["snapshots"]);
    none.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let started = Instant::now();
    let out = none.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no usable AWS credentials"), "{err}");
    assert!(!err.contains("gave up"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
}

/// `snapshots`, `key list`, `forget` and `unlock` read no index file, even on a machine
/// with an empty cache; `ls`, which needs the index, does.
#[test]
fn commands_that_need_no_index_read_none() {
    if !moto_configured() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("passthrough", scratch.path());
    let env = Env::on_server(proxy.server());
    env.init();
    let src = env.path("src");
    random_tree(&src, 72);
    env.backup_json(&[&src], &[]);
    std::fs::write(src.join("changed"), b"second snapshot").unwrap();
    env.backup_json(&[&src], &[]);
    let index_gets = |args: &[&str]| {
        std::fs::remove_dir_all(env.path("cache")).unwrap();
        let before = proxy.requests().len();
        env.ok(args);
        proxy
            .requests_after(before)
            .iter()
            .filter(|r| {
                r["method"] == "GET" && r["path"].as_str().is_some_and(|p| p.contains("/index/"))
            })
            .count()
    };
    for args in [
        &["snapshots"][..],
        &["snapshots", "--json"],
        &["key", "list"],
        &["unlock"],
        &["forget", "--keep-last", "1"],
    ] {
        assert_eq!(index_gets(args), 0, "cairn {args:?} read index files");
    }
    assert!(index_gets(&["ls", "latest"]) > 0, "ls reads the index");
}
