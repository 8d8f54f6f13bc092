//! `diff` and `stats` on both backends, checked against what the backups themselves
//! reported and against the source trees.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

/// Regular files below `root` (symlinks not followed) and their total size.
fn regular_files(root: &Path) -> (u64, u64) {
    let (mut count, mut bytes) = (0, 0);
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            let (c, b) = regular_files(&e.path());
            count += c;
            bytes += b;
        } else if t.is_file() {
            count += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (count, bytes)
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct TwoSnapshots {
    first: serde_json::Value,
    second: serde_json::Value,
    /// (files, bytes) of the source at each backup.
    sizes: [(u64, u64); 2],
}

/// Backs up a tree, changes it in every way diff tells apart, and backs it up again.
fn two_snapshots(env: &Env) -> TwoSnapshots {
    // Chunks of at most 1 MiB: with the default 8 MiB maximum, the chunk a one-byte
    // change falls in may (by the repository's random chunker seed) be most of the file.
    env.ok(&[
        "init",
        "--chunk-min",
        "65536",
        "--chunk-avg",
        "262144",
        "--chunk-max",
        "1048576",
    ]);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("gone")).unwrap();
    std::fs::create_dir_all(src.join("same/deep")).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let mut big = random_bytes(&mut rng, 8 << 20);
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("keep"), random_bytes(&mut rng, 2 << 20)).unwrap();
    std::fs::write(src.join("meta"), b"mode changes only").unwrap();
    std::fs::write(src.join("gone/b"), random_bytes(&mut rng, 5000)).unwrap();
    std::fs::write(src.join("same/deep/f"), b"never changes").unwrap();
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();
    let before = regular_files(&src);
    let first = env.backup_json(&[&src], &[]);

    big[4 << 20] ^= 0xff;
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    std::fs::set_permissions(src.join("meta"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(src.join("new"), random_bytes(&mut rng, 300_000)).unwrap();
    std::fs::remove_file(src.join("link")).unwrap();
    std::fs::create_dir(src.join("link")).unwrap();
    std::fs::write(src.join("link/x"), b"a link became a folder").unwrap();
    let after = regular_files(&src);
    let second = env.backup_json(&[&src], &[]);
    TwoSnapshots {
        first,
        second,
        sizes: [before, after],
    }
}

fn id(v: &serde_json::Value) -> &str {
    v["snapshot_id"].as_str().unwrap()
}

fn diff_lists_every_change_and_the_data_it_cost(env: Env) {
    let t = two_snapshots(&env);
    let src = env.path("src");
    let out = env.ok(&["diff", "--json", "--metadata", id(&t.first), id(&t.second)]);
    let lines = json_lines(&out);
    let (changes, summary) = lines.split_at(lines.len() - 1);
    let summary = &summary[0];
    assert_eq!(summary["message_type"], "summary");
    let rel = |p: &str| -> Option<String> {
        let p = p.strip_prefix(src.to_str().unwrap())?;
        Some(p.to_string())
    };
    let listed: BTreeSet<(String, String)> = changes
        .iter()
        .filter_map(|c| {
            Some((
                rel(c["path"].as_str().unwrap())?,
                c["modifier"].as_str().unwrap().to_string(),
            ))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("/", "U"), // its mtime changed
        ("/big", "M"),
        ("/gone/", "-"),
        ("/gone/b", "-"),
        ("/link/", "T"),
        ("/link/x", "+"),
        ("/meta", "U"),
        ("/new", "+"),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(listed, expected, "{}", String::from_utf8_lossy(&out.stdout));

    let s = &summary["stats"];
    let (added, removed) = (&s["added"], &s["removed"]);
    assert_eq!(added["files"], 2);
    assert_eq!(added["file_bytes"], 300_000 + 22);
    assert_eq!(added["dirs"], 1, "the link's folder");
    assert_eq!(removed["files"], 1);
    assert_eq!(removed["file_bytes"], 5000);
    assert_eq!(removed["dirs"], 1);
    assert_eq!(removed["others"], 1, "the symlink");
    assert_eq!(s["modified"], 1);
    assert_eq!(s["type_changed"], 1);
    // Every data blob the second backup stored is one that only the second snapshot's
    // changed files hold: the changed chunk of `big`, `new` and `link/x`. The backup's
    // figure also counts its new trees, a few KiB.
    let added_bytes = added["data_bytes"].as_u64().unwrap();
    let stored_by_backup = t.second["data_added"].as_u64().unwrap();
    assert!(
        added_bytes <= stored_by_backup && stored_by_backup - added_bytes < 16 << 10,
        "diff {added_bytes}, backup {stored_by_backup}"
    );
    assert!(
        added_bytes > 300_000 && added_bytes < (3 << 20) + 300_000,
        "a one-byte change in an 8 MiB file costs its chunk, not the file: {added_bytes}"
    );
    // What went: the chunk of `big` before the change and `gone/b`.
    let removed_bytes = removed["data_bytes"].as_u64().unwrap();
    assert_eq!(removed_bytes, added_bytes - 300_000 - 22 + 5000);

    // Without --metadata, mode and mtime changes are counted but not listed.
    let plain = env.ok(&["diff", id(&t.first), id(&t.second)]);
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains(&format!("M    {}/big\n", src.display())),
        "{text}"
    );
    assert!(!text.contains("/meta"), "{text}");
    let quiet = env.ok(&["diff", "--json", id(&t.first), id(&t.second)]);
    assert!(json_lines(&quiet).iter().all(|c| c["modifier"] != "U"));
    assert_eq!(json_lines(&quiet).last().unwrap()["stats"], *s);

    // A snapshot against itself, and the other way round.
    let same = json_lines(&env.ok(&["diff", "--json", "latest", "latest"]));
    assert_eq!(same.len(), 1, "no changes, only the summary");
    let back = json_lines(&env.ok(&["diff", "--json", id(&t.second), id(&t.first)]));
    let back = &back.last().unwrap()["stats"];
    assert_eq!(back["added"], s["removed"]);
    assert_eq!(back["removed"], s["added"]);

    let missing = env.run(&["diff", id(&t.first), "0123abcd"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no snapshot with id 0123abcd"));
}

fn stats_count_logical_deduplicated_and_stored_sizes(env: Env) {
    let t = two_snapshots(&env);
    let summary = |args: &[&str]| {
        let mut a = vec!["stats", "--json"];
        a.extend_from_slice(args);
        summary_line(&env.ok(&a))
    };
    let all = summary(&[]);
    let [(files_a, bytes_a), (files_b, bytes_b)] = t.sizes;
    assert_eq!(all["snapshots"], 2);
    assert_eq!(all["files"], files_a + files_b);
    assert_eq!(all["logical_bytes"], bytes_a + bytes_b);
    // Each distinct blob once: what the two backups added between them (data and trees).
    let added = |v: &serde_json::Value| v["data_added"].as_u64().unwrap();
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        n(&all, "data_bytes") + n(&all, "tree_bytes"),
        added(&t.first) + added(&t.second)
    );
    assert_eq!(all["missing_blobs"], 0);
    let stored = all["stored_bytes"].as_u64().unwrap();
    assert!(stored <= all["repository_bytes"].as_u64().unwrap());
    assert!(all["packs"].as_u64().unwrap() <= all["repository_packs"].as_u64().unwrap());
    assert!(
        all["packs"].as_u64().unwrap() >= 2,
        "a data and a tree pack"
    );
    let ratio = all["ratio"].as_f64().unwrap();
    assert!((ratio - (bytes_a + bytes_b) as f64 / stored as f64).abs() < 1e-9);
    // Sealed, each distinct blob once: what the two backups wrote between them.
    assert_eq!(
        stored,
        n(&t.first, "data_added_packed") + n(&t.second, "data_added_packed")
    );
    // The second snapshot shares at least `keep` (2 MiB, unchanged) with the first. The
    // changed chunk of `big` can be anything up to 8 MiB, as chunk sizes follow the
    // repository's random key, so no tighter bound holds for every run.
    assert!(
        added(&t.second) < bytes_b - (1 << 20),
        "the second snapshot is partly shared: {} of {bytes_b}",
        added(&t.second)
    );

    let latest = summary(&["latest"]);
    assert_eq!(latest["snapshots"], 1);
    assert_eq!(latest["files"], files_b);
    assert_eq!(latest["logical_bytes"], bytes_b);
    let first = summary(&[id(&t.first)]);
    assert_eq!(first["logical_bytes"], bytes_a);
    assert_eq!(
        n(&first, "data_bytes") + n(&first, "tree_bytes"),
        added(&t.first)
    );

    // Once the first snapshot is forgotten and pruned, the whole repository counts what
    // the second alone did.
    env.ok(&[
        "forget",
        id(&t.first),
        "--prune",
        "--keep-delete",
        "0",
        "--max-unused",
        "0%",
    ]);
    let after = summary(&[]);
    for k in [
        "files",
        "logical_bytes",
        "data_blobs",
        "data_bytes",
        "tree_blobs",
        "tree_bytes",
    ] {
        assert_eq!(after[k], latest[k], "{k}");
    }
    assert!(
        after["repository_bytes"].as_u64().unwrap() < all["repository_bytes"].as_u64().unwrap()
    );

    let text = String::from_utf8_lossy(&env.ok(&["stats"]).stdout).into_owned();
    assert!(text.contains("Snapshots:         1"), "{text}");
    assert!(text.contains("Ratio:"), "{text}");
}

/// `ls -l` shows set-id and sticky bits; `ls` escapes names so that each entry is one
/// line, and the escaped path (also `path_escaped` in `--json`) works as an argument.
#[test]
fn ls_shows_special_bits_and_escaped_names_work_as_arguments() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sticky")).unwrap();
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(src.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    // A newline, a name that looks like an escape, and a byte that is not UTF-8.
    let odd: [&[u8]; 3] = [b"set\\nuid\nfile", b"caf\\xe9", b"caf\xe9"];
    for (i, name) in odd.iter().enumerate() {
        std::fs::write(src.join(OsStr::from_bytes(name)), format!("content {i}")).unwrap();
    }
    std::fs::write(src.join("setgid"), b"g").unwrap();
    mode("set\\nuid\nfile", 0o4755);
    mode("setgid", 0o2644);
    mode("sticky", 0o1777);
    env.backup_json(&[&src], &[]);

    let long = String::from_utf8_lossy(&env.ok(&["ls", "-l", "latest"]).stdout).into_owned();
    let line_of = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {long}"))
            .to_string()
    };
    assert!(
        line_of("/set\\\\nuid\\nfile").starts_with("-rwsr-xr-x "),
        "{long}"
    );
    assert!(line_of("/setgid").starts_with("-rw-r-Sr-- "), "{long}");
    assert!(line_of("/sticky").starts_with("drwxrwxrwt "), "{long}");

    let plain = String::from_utf8_lossy(&env.ok(&["ls", "latest"]).stdout).into_owned();
    assert!(
        plain.lines().all(|l| l.starts_with('/')),
        "one line per entry: {plain}"
    );
    let json = json_lines(&env.ok(&["ls", "--json", "latest"]));
    for (i, name) in odd.iter().enumerate() {
        let raw = src.join(OsStr::from_bytes(name));
        let escaped = json
            .iter()
            .find(|v| v["name"] == String::from_utf8_lossy(name).as_ref() && v["type"] == "file")
            .and_then(|v| v["path_escaped"].as_str())
            .unwrap_or_else(|| panic!("no path_escaped for {raw:?}"))
            .to_string();
        assert!(
            plain.lines().any(|l| l == escaped),
            "{escaped} not in {plain}"
        );
        let dumped = env.ok(&["dump", "latest", &escaped]);
        assert_eq!(
            dumped.stdout,
            format!("content {i}").into_bytes(),
            "{escaped}"
        );
        let target = env.path(&format!("restore-{i}"));
        env.ok(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--include",
            &escaped,
        ]);
        let restored = target.join(raw.strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read(&restored).unwrap(),
            format!("content {i}").into_bytes()
        );
        // The name as typed works too, except `caf\xe9` typed raw: read as escaped text it
        // names the other entry, and the escaped reading wins (see README).
        if i != 1 {
            let typed = env.cmd(&["dump", "latest"]).arg(&raw).output().unwrap();
            assert_eq!(typed.stdout, format!("content {i}").into_bytes(), "{raw:?}");
        }
    }
}

on_both_backends!(
    diff_lists_every_change_and_the_data_it_cost,
    stats_count_logical_deduplicated_and_stored_sizes
);

/// `find` lists, newest snapshot first, the entries whose names match, with type, size
/// and time; snapshots that share trees are all reported; filters and times narrow it.
#[test]
fn find_names_across_snapshots_that_share_trees() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("etc/nginx")).unwrap();
    std::fs::create_dir_all(src.join("shared")).unwrap();
    std::fs::write(src.join("etc/nginx/nginx.conf"), b"worker_processes 2;\n").unwrap();
    std::fs::write(src.join("shared/Report.PDF"), b"pdf").unwrap();
    std::fs::write(src.join("shared/line\nbreak.conf"), b"x").unwrap();
    set_mtime(&src.join("shared/Report.PDF"), 1_600_000_000, 0);
    let first = env.backup_json(&[&src], &["--host", "one"]);
    std::fs::write(src.join("etc/late.conf"), b"late\n").unwrap();
    let second = env.backup_json(&[&src], &["--host", "two"]);

    let out = env.ok(&["find", "--json", "*.conf"]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0]["snapshot"], second["snapshot_id"], "newest first");
    assert_eq!(found[1]["snapshot"], first["snapshot_id"]);
    let names = |i: usize| -> Vec<String> {
        found[i]["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["path"].as_str().unwrap().to_string())
            .collect()
    };
    let under = |rel: &str| format!("{}/{rel}", src.display());
    assert_eq!(
        names(0),
        vec![
            under("etc/late.conf"),
            under("etc/nginx/nginx.conf"),
            under("shared/line\nbreak.conf")
        ]
    );
    assert_eq!(names(1).len(), 2, "the shared trees are found in both");
    let nginx = &found[1]["matches"][0];
    assert_eq!(nginx["type"], "file");
    assert_eq!(nginx["size"], 20);

    // Case, folders, host filter, modification times.
    let out = env.ok(&["find", "--json", "-i", "report.pdf", "--host", "one"]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let out = env.ok(&["find", "--json", "report.pdf"]);
    assert_eq!(out.stdout, b"[]\n", "case counts without -i");
    let out = env.ok(&["find", "--json", "ngin?", "--host", "two"]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found[0]["matches"][0]["type"], "dir");
    let out = env.ok(&["find", "--json", "*.PDF", "--newest", "2021-01-01"]);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2, "modified in 2020");
    let out = env.ok(&["find", "--json", "*.PDF", "--oldest", "2021-01-01"]);
    assert_eq!(out.stdout, b"[]\n");

    // Text: names escaped as `ls` escapes them, one snapshot header each.
    let out = env.ok(&["find", "*.conf"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("snapshot ").count(), 2, "{text}");
    assert!(text.contains("line\\nbreak.conf"), "{text}");

    let out = env.run(&["find", "etc/*.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches names, not paths"));
    let out = env.run(&["find", "x", "--oldest", "yesterday"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oldest"));
}
