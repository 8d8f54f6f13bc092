use crate::common::*;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn no_object_contains_file_names_or_contents(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let name = "zebra-umbrella-7731-secret-name.txt";
    let content = b"the distinctive content quokka-47113-marmalade of a private file";
    // Repeated so that zstd shrinks it: compression must not leave it readable either.
    std::fs::write(src.join(name), content.repeat(200)).unwrap();
    std::fs::write(src.join("short"), content).unwrap();
    env.backup_json(&[&src], &[]);
    let files = all_files(&env.repo_dir());
    assert!(
        files.len() >= 4,
        "expected config, key, pack, index and snapshot"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, name.as_bytes()),
            "{} holds the file name",
            f.display()
        );
        assert!(
            !contains(&bytes, b"zebra-umbrella"),
            "{} holds part of the name",
            f.display()
        );
        assert!(
            !contains(&bytes, b"quokka-47113"),
            "{} holds the content",
            f.display()
        );
        assert!(
            !contains(&bytes, src.to_str().unwrap().as_bytes()),
            "{} holds the path",
            f.display()
        );
    }
}

/// Runs `cmd` under umask 0, so that a file cairn creates without choosing its mode comes
/// out readable by everyone and the test below notices.
fn without_umask(mut cmd: std::process::Command) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let out = cmd.output().expect("run cairn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and folder below `root` (and `root` itself) is its owner's alone.
fn assert_private(root: &std::path::Path) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, wanted, "{} has mode {mode:o}", p.display());
        seen += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    seen
}

/// Key files, packs and every other object of a local repository are 0600 in 0700
/// folders, and so is the cache, whatever the umask.
fn repository_and_cache_are_private(env: Env) {
    let src = env.path("src");
    random_tree(&src, 21);
    let target = env.path("target");
    for args in [
        vec!["init"],
        vec!["backup", src.to_str().unwrap()],
        vec!["check", "--read-data"],
        vec!["restore", "latest", "--target", target.to_str().unwrap()],
    ] {
        without_umask(env.cmd(&args));
    }
    let cache_entries = assert_private(&env.path("cache"));
    assert!(cache_entries > 3, "only {cache_entries} cache entries");
    if matches!(env.store, Store::Local) {
        let objects = assert_private(&env.repo_dir());
        assert!(objects > 5, "only {objects} repository entries");
    }
}

/// The password, a new password and the S3 secret key show nowhere in what cairn prints,
/// even at the most verbose level and when the password is wrong.
fn secrets_never_show_in_output(env: Env) {
    let password = "zanzibar-66120-password";
    let new_password = "kumquat-90871-password";
    let new_password_file = env.path("new-password");
    std::fs::write(&new_password_file, new_password).unwrap();
    let src = env.path("src");
    random_tree(&src, 22);
    let target = env.path("target");
    let mut secrets = vec![password, new_password];
    if let Store::S3(server) = &env.store {
        secrets.push(server.secret_key.as_str());
    }
    let runs: Vec<(Vec<&str>, &str)> = vec![
        (vec!["init"], password),
        (vec!["backup", src.to_str().unwrap()], password),
        (vec!["snapshots"], password),
        (vec!["check", "--read-data"], password),
        (
            vec!["restore", "latest", "--target", target.to_str().unwrap()],
            password,
        ),
        (
            vec![
                "key",
                "add",
                "--new-password-file",
                new_password_file.to_str().unwrap(),
            ],
            password,
        ),
        (vec!["snapshots"], "zanzibar-66120-password-but-wrong"),
        (vec!["key", "list"], new_password),
    ];
    let mut printed = Vec::new();
    for (args, password) in runs {
        let out = env
            .cmd(&args)
            .arg("-vvv")
            .env("CAIRN_PASSWORD", password)
            .output()
            .unwrap();
        let wrong = password.ends_with("wrong");
        assert_eq!(out.status.success(), !wrong, "{args:?}");
        for stream in [&out.stdout, &out.stderr] {
            printed.extend_from_slice(stream);
            for secret in &secrets {
                assert!(
                    !contains(stream, secret.as_bytes()),
                    "cairn {args:?} printed {secret:?}: {}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
    }
    // The most verbose level was on: the search covered the password's path (the key
    // files tried) and every request.
    for expected in [
        "opened key file",
        "is for another password",
        "TRACE GET config",
    ] {
        assert!(
            contains(&printed, expected.as_bytes()),
            "no {expected:?} in the output"
        );
    }
}

on_both_backends!(
    no_object_contains_file_names_or_contents,
    repository_and_cache_are_private,
    secrets_never_show_in_output,
);
