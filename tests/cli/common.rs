//! Helpers shared by the end-to-end tests: a scratch area with a repository, the real
//! `cairn` binary, seeded random source trees, and a byte-for-byte tree comparison.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use cairn::ops::archiver::{self, BackupOptions};
use cairn::repo::Repository;
use cairn::store::local::LocalBackend;
use cairn::store::retry::RetryPolicy;
use cairn::store::s3::{S3Backend, S3Location, S3Options};
use cairn::store::{Backend, Kind, Listed, ObjectName};

/// Makes each named test body (`fn name(env: Env)`) a test on a local repository
/// (`local::name`) and one on the S3 test server (`s3::name`): one body, two backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $name() { super::$name($crate::common::Env::new()) })*
        }
        mod s3 {
            $(#[test] fn $name() {
                if let Some(env) = $crate::common::Env::s3() {
                    super::$name(env)
                }
            })*
        }
    };
}

pub const PASSWORD: &str = "correct horse battery staple";

/// The S3 test server that `scripts/test.sh` starts (see scripts/s3-server.sh).
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    /// The folder s3s-fs serves; the bucket is its subfolder.
    pub dir: PathBuf,
    pub access_key: String,
    pub secret_key: String,
}

/// A variable that `scripts/s3-server.sh` exports for the S3 test servers. Unset, the
/// tests that need it are skipped, after one line saying so, so that `cargo test` passes
/// on a fresh clone; with `CAIRN_TEST_REQUIRE_S3=1` (which `scripts/test.sh`, and so CI,
/// sets) they fail instead, so that a server that did not start can never pass for one
/// that did.
pub fn test_server_var(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    if std::env::var_os("CAIRN_TEST_REQUIRE_S3").is_some_and(|v| v == "1") {
        panic!(
            "{name} is not set, and CAIRN_TEST_REQUIRE_S3=1 requires the S3 test servers: \
             run ./scripts/test.sh, which installs and starts them (scripts/s3-server.sh)"
        );
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to stderr: the test harness captures `eprintln!`, not this.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: no S3 test server ({name} is not set): the S3 tests pass without running; \
             ./scripts/test.sh installs and starts the servers and runs them"
        );
    });
    None
}

impl S3Server {
    /// The shared server, from the variables `scripts/test.sh` exports; `None` when they
    /// are not set (see [`test_server_var`]).
    pub fn configured() -> Option<S3Server> {
        let endpoint = test_server_var("CAIRN_TEST_S3_ENDPOINT")?;
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} is not set, but CAIRN_TEST_S3_ENDPOINT is"))
        };
        Some(S3Server {
            endpoint,
            bucket: var("CAIRN_TEST_S3_BUCKET"),
            dir: PathBuf::from(var("CAIRN_TEST_S3_DIR")),
            access_key: var("AWS_ACCESS_KEY_ID"),
            secret_key: var("AWS_SECRET_ACCESS_KEY"),
        })
    }

    /// The shared server, where a test already holds one of its repositories.
    pub fn shared() -> S3Server {
        S3Server::configured().expect("the S3 test server")
    }
}

/// Where a test's repository lives.
pub enum Store {
    Local,
    S3(S3Server),
}

/// A scratch directory holding a repository, a cache and source and restore folders.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// The repository URL given to `-r`.
    pub repo: String,
    pub store: Store,
}

impl Env {
    /// A repository in a local folder.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo").to_string_lossy().into_owned();
        Env {
            dir,
            repo,
            store: Store::Local,
        }
    }

    /// A repository under a fresh prefix of the shared S3 test server's bucket; `None`
    /// when no server is configured (see [`test_server_var`]).
    pub fn s3() -> Option<Env> {
        S3Server::configured().map(Env::on_server)
    }

    pub fn on_server(server: S3Server) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir
            .path()
            .file_name()
            .expect("temp dir name")
            .to_string_lossy()
            .trim_start_matches('.')
            .to_lowercase();
        let repo = format!("s3://{}/{prefix}", server.bucket);
        Env {
            dir,
            repo,
            store: Store::S3(server),
        }
    }

    /// The folder holding the repository's objects as files: the local repository, or
    /// the S3 server's copy of the prefix.
    pub fn repo_dir(&self) -> PathBuf {
        match &self.store {
            Store::Local => PathBuf::from(&self.repo),
            Store::S3(server) => {
                let bucket_and_prefix = self.repo.trim_start_matches("s3://");
                server.dir.join(bucket_and_prefix)
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `cairn` command on this repository with the password set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"));
        if let Store::S3(server) = &self.store {
            c.env("AWS_ACCESS_KEY_ID", &server.access_key)
                .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ENDPOINT_URL", &server.endpoint)
                // No probing for an EC2 instance role: the keys above are the credentials.
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        c.arg("-r").arg(&self.repo).args(args).stdin(Stdio::null());
        c
    }

    /// Runs cairn and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cairn")
    }

    /// Runs cairn and insists on exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// Backs up `paths` with `--json` and returns the summary line.
    pub fn backup_json(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let ps: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        args.extend(ps.iter().map(String::as_str));
        let out = self.ok(&args);
        summary_line(&out)
    }

    /// Restores `snapshot` with `--verify` into a new folder and asserts that the source
    /// tree `src` came back byte for byte, with its modes and mtimes.
    pub fn assert_restores(&self, snapshot: &str, src: &Path) {
        let target = tempfile::tempdir_in(self.dir.path()).expect("restore dir");
        let t = target.path().to_str().expect("utf-8 temp path");
        self.ok(&["restore", snapshot, "--target", t, "--verify"]);
        assert_same_tree(
            src,
            &target.path().join(src.strip_prefix("/").expect("absolute")),
        );
    }

    /// Total bytes stored in the repository.
    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo_dir())
    }
}

/// The S3 backend of `env`'s repository on the shared test server, called in-process.
pub fn s3_backend(env: &Env, opts: S3Options) -> S3Backend {
    S3Backend::new(
        S3Location::parse(&env.repo).unwrap(),
        S3Options {
            endpoint: Some(S3Server::shared().endpoint),
            connections: 4,
            ..opts
        },
    )
    .unwrap()
}

impl Env {
    /// The repository's backend, called in-process.
    pub fn backend(&self) -> Arc<dyn Backend> {
        match &self.store {
            Store::Local => Arc::new(LocalBackend::new(&self.repo)),
            Store::S3(_) => Arc::new(s3_backend(self, S3Options::default())),
        }
    }

    /// Opens the repository in-process over `backend`, with its own cache folder.
    pub fn open_with(&self, backend: Arc<dyn Backend>, cache: &str) -> Repository {
        Repository::open(
            backend,
            PASSWORD.as_bytes(),
            Some(&self.path(cache)),
            &RetryPolicy::default(),
        )
        .unwrap()
    }
}

/// A change a test wrapper is told about before it reaches the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Write,
    WriteCold,
    Remove,
}

/// Passes every call through to `inner`, but first hands each change to `before`, whose
/// error is returned in place of the change: tests observe writes or stop them on purpose.
pub struct Intercept<F> {
    pub inner: Arc<dyn Backend>,
    pub before: F,
}

impl<F> Backend for Intercept<F>
where
    F: Fn(Change, &ObjectName) -> cairn::Result<()> + Send + Sync,
{
    fn location(&self) -> String {
        self.inner.location()
    }
    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }
    fn remote(&self) -> bool {
        self.inner.remote()
    }

    fn atomic_create(&self) -> cairn::Result<bool> {
        self.inner.atomic_create()
    }

    fn require_object_lock(
        &self,
        repo: Option<&cairn::format::config::ObjectLockConfig>,
    ) -> cairn::Result<()> {
        self.inner.require_object_lock(repo)
    }

    fn describe_store(&self) -> cairn::Result<Option<String>> {
        self.inner.describe_store()
    }
    fn create(&self) -> cairn::Result<()> {
        self.inner.create()
    }
    fn read(&self, obj: &ObjectName) -> cairn::Result<Vec<u8>> {
        self.inner.read(obj)
    }
    fn read_range(&self, obj: &ObjectName, offset: u64, length: u64) -> cairn::Result<Vec<u8>> {
        self.inner.read_range(obj, offset, length)
    }
    fn write(&self, obj: &ObjectName, data: &[u8]) -> cairn::Result<()> {
        (self.before)(Change::Write, obj)?;
        self.inner.write(obj, data)
    }
    fn write_cold(&self, obj: &ObjectName, data: &[u8]) -> cairn::Result<()> {
        (self.before)(Change::WriteCold, obj)?;
        self.inner.write_cold(obj, data)
    }
    fn list(&self, kind: Kind) -> cairn::Result<Vec<Listed>> {
        self.inner.list(kind)
    }
    fn stat(&self, obj: &ObjectName) -> cairn::Result<Option<u64>> {
        self.inner.stat(obj)
    }
    fn remove(&self, obj: &ObjectName) -> cairn::Result<()> {
        (self.before)(Change::Remove, obj)?;
        self.inner.remove(obj)
    }

    fn remove_leftovers(&self, age: std::time::Duration) -> cairn::Result<u64> {
        self.inner.remove_leftovers(age)
    }
}

/// Backs up `src` in-process (host "wrapped"), reading every file.
pub fn back_up(repo: &Repository, src: &Path) -> cairn::Result<archiver::BackupResult> {
    archiver::backup(
        repo,
        &BackupOptions {
            paths: vec![archiver::SourcePath::as_given(src)],
            tags: Vec::new(),
            hostname: "wrapped".into(),
            parent: None,
            excludes: Default::default(),
            one_file_system: false,
            xattrs: true,
            dry_run: false,
            time: None,
            own_dirs: Vec::new(),
        },
        &cairn::progress::Silent,
    )
}

/// A prune that deletes at once and leaves no unused space.
pub const PRUNE_NOW: [&str; 6] = [
    "prune",
    "--json",
    "--keep-delete",
    "0",
    "--max-unused",
    "0%",
];

/// Runs `PRUNE_NOW` and returns its summary.
pub fn prune_now(env: &Env) -> serde_json::Value {
    summary_line(&env.ok(&PRUNE_NOW))
}

/// Flips one bit of the file at `path`, at byte `at` (or its last byte).
pub fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).expect("read");
    let i = at.min(b.len() - 1);
    b[i] ^= 0x40;
    fs::write(path, b).expect("write");
}

pub fn summary_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in {stdout}"))
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(p).expect("read dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// All files below a directory, recursively.
pub fn all_files(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            out.extend(all_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

pub fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, nsec);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

/// Builds a random tree below `root`: empty files, a file over 20 MiB, non-UTF-8 names,
/// deep nesting, dangling, absolute and self-referencing symlinks, varied modes and mtimes.
pub fn random_tree(root: &Path, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    fs::create_dir_all(root).expect("mkdir");
    // Deep nesting.
    let mut deep = root.to_path_buf();
    for i in 0..40 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).expect("deep");
    fs::write(deep.join("bottom.txt"), b"at the bottom").expect("write");
    // A spread of files in a few folders.
    let dirs = ["", "docs", "docs/sub", "media", "empty-dir"];
    for d in dirs {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for i in 0..60 {
        let dir = dirs[rng.usize(..dirs.len() - 1)];
        let size = match rng.u8(..10) {
            0 => 0,
            1..=6 => rng.usize(1..20_000),
            7 | 8 => rng.usize(20_000..2_000_000),
            _ => rng.usize(2_000_000..4_000_000),
        };
        let p = root.join(dir).join(format!("file-{i}.bin"));
        // Half the files compress well, half do not.
        let data = if i % 2 == 0 {
            random_bytes(&mut rng, size)
        } else {
            (0..size).map(|j| (j % 251) as u8 ^ (i as u8)).collect()
        };
        fs::write(&p, data).expect("write");
        let mode = [0o644, 0o600, 0o755, 0o640, 0o444][rng.usize(..5)];
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        set_mtime(
            &p,
            1_500_000_000 + rng.i64(0..200_000_000),
            rng.i64(0..1_000_000_000),
        );
    }
    // One file above 20 MiB.
    let big = root.join("media/big.bin");
    fs::write(&big, random_bytes(&mut rng, 21 * 1024 * 1024 + 123)).expect("big");
    fs::write(root.join("empty"), b"").expect("empty");
    // Names that are not UTF-8, and odd but legal names.
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9-latin1.txt")),
        b"latin-1 name",
    )
    .expect("latin1");
    fs::create_dir_all(root.join(OsStr::from_bytes(b"dir-\xff\xfe"))).expect("nonutf8 dir");
    fs::write(
        root.join(OsStr::from_bytes(b"dir-\xff\xfe/inner")),
        b"inside",
    )
    .expect("inner");
    fs::write(root.join("with space and\nnewline"), b"odd name").expect("odd");
    // Symlinks: relative, dangling, absolute, and a link to its own directory.
    std::os::unix::fs::symlink("docs/sub", root.join("link-rel")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).expect("symlink");
    std::os::unix::fs::symlink(".", root.join("docs/link-self")).expect("symlink");
    std::os::unix::fs::symlink("..", root.join("docs/sub/link-up")).expect("symlink");
    // Directory modes and mtimes, set last so that writing files does not change them.
    fs::set_permissions(root.join("docs/sub"), fs::Permissions::from_mode(0o750)).expect("chmod");
    for d in ["docs/sub", "docs", "media", "empty-dir"] {
        set_mtime(&root.join(d), 1_600_000_000 + rng.i64(0..1000), 0);
    }
}

/// What the comparison looks at for one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    kind: &'static str,
    mode: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
    /// Extended attributes (ACLs among them), sorted by name.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The extended attributes of `p` (not following a symlink), sorted by name.
pub fn xattrs_of(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = xattr::list(p)
        .expect("list xattrs")
        .map(|n| {
            let v = xattr::get(p, &n).expect("get xattr").unwrap_or_default();
            (n.as_bytes().to_vec(), v)
        })
        .collect();
    out.sort();
    out
}

/// Every entry below `root` (root itself excluded), with content bytes (files), link
/// targets (symlinks), permission bits and mtimes.
pub fn tree_state(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Entry>) {
        for e in fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let ft = m.file_type();
            let (kind, content) = if ft.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&p)
                        .expect("readlink")
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if ft.is_dir() {
                walk(root, &p, out);
                ("dir", Vec::new())
            } else if ft.is_file() {
                ("file", fs::read(&p).expect("read"))
            } else {
                ("other", Vec::new())
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    mode,
                    mtime: (m.mtime(), m.mtime_nsec()),
                    content,
                    xattrs: xattrs_of(&p),
                },
            );
        }
    }
    walk(root, root, &mut out);
    out
}

/// Asserts that two trees hold the same entries, naming the first difference.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = tree_state(expected);
    let b = tree_state(actual);
    for (k, v) in &a {
        let name = String::from_utf8_lossy(k);
        let other = b
            .get(k)
            .unwrap_or_else(|| panic!("{name} missing from {}", actual.display()));
        assert_eq!(v.kind, other.kind, "{name}: type");
        assert_eq!(v.mode, other.mode, "{name}: mode");
        assert!(v.content == other.content, "{name}: content differs");
        assert_eq!(v.mtime, other.mtime, "{name}: mtime");
        assert_eq!(v.xattrs, other.xattrs, "{name}: extended attributes");
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "{} appeared in the restore",
            String::from_utf8_lossy(k)
        );
    }
}

/// Makes `cmd` run without the capabilities that let root read any file, so that a
/// mode-000 file is unreadable for it as for anyone else.
pub fn drop_read_override(cmd: &mut Command) {
    const CAP_DAC_OVERRIDE: nix::libc::c_ulong = 1;
    const CAP_DAC_READ_SEARCH: nix::libc::c_ulong = 2;
    drop_capabilities(cmd, &[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH]);
}

/// Makes `cmd` run without these capabilities (taken out of its bounding set before exec).
pub fn drop_capabilities(cmd: &mut Command, caps: &'static [nix::libc::c_ulong]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &cap in caps {
                if nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs with `options` (`size=1m`, `ro`, ...) at `dir`, made if missing;
    /// `None` when not running as root, which mounting needs.
    pub fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        if !nix::unistd::Uid::effective().is_root() {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs as root failed");
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every regular file below `restored` is byte-identical to the same file below `src`;
/// returns how many there were. Files a restore refused to write are fine: only a file
/// with wrong bytes is not.
pub fn restored_files_are_right(src: &Path, restored: &Path) -> usize {
    let mut right = 0;
    if !restored.exists() {
        return 0;
    }
    for f in all_files(restored) {
        let meta = std::fs::symlink_metadata(&f).unwrap();
        if !meta.is_file() {
            continue;
        }
        let rel = f.strip_prefix(restored).unwrap();
        assert!(
            std::fs::read(&f).unwrap() == std::fs::read(src.join(rel)).unwrap(),
            "{} was restored with wrong bytes",
            f.display()
        );
        right += 1;
    }
    right
}

/// Names of the files below `dir` (recursively, hidden ones included), or none if it does
/// not exist yet.
pub fn names_below(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    if !dir.exists() {
        return std::collections::BTreeSet::new();
    }
    all_files(dir).into_iter().collect()
}

/// Runs `cmd` and kills it with SIGKILL as soon as `reached()` holds (polled every
/// millisecond, for at most three minutes). Returns whether the kill landed: false when
/// the process finished first.
pub fn kill_when(cmd: Command, reached: impl FnMut() -> bool) -> bool {
    signal_when(cmd, nix::sys::signal::Signal::SIGKILL, reached)
        .is_some_and(|status| status.code().is_none())
}

/// Runs `cmd` and sends it `signal` as soon as `reached()` holds (polled every
/// millisecond, for at most three minutes). Returns its exit status, or None when it
/// finished before.
pub fn signal_when(
    mut cmd: Command,
    signal: nix::sys::signal::Signal,
    mut reached: impl FnMut() -> bool,
) -> Option<std::process::ExitStatus> {
    let mut child = cmd.stdout(Stdio::null()).spawn().expect("start cairn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        if child.try_wait().expect("poll cairn").is_some() {
            return None;
        }
        if reached() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).expect("signal cairn");
    Some(child.wait().expect("reap cairn"))
}

/// Copies a folder tree of plain files.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The S3 repository of `env` opened through a fault injector that fails nothing yet
/// (`set_fail_share(1.0)` makes it a dead store), with short retries: 3 attempts.
pub fn failing_later(env: &Env) -> (Arc<cairn::store::faulty::Faulty>, Repository) {
    let faulty = Arc::new(cairn::store::faulty::Faulty::new(
        Arc::new(s3_backend(env, S3Options::default())),
        0.0,
        std::time::Duration::ZERO,
        0xdead,
    ));
    let policy = RetryPolicy {
        attempts: 3,
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(4),
        ..RetryPolicy::default()
    };
    let backend: Arc<dyn Backend> = faulty.clone();
    let repo = Repository::open(
        backend,
        PASSWORD.as_bytes(),
        Some(&env.path("cache-dead")),
        &policy,
    )
    .expect("open through the fault injector");
    (faulty, repo)
}
