//! A reader that goes away early (`cairn ls | head -1`): listings stop quietly, and commands
//! that change the repository finish their work with the exit code it deserves.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::*;

/// What a run whose stdout reader went away left behind.
struct CutShort {
    code: Option<i32>,
    stderr: String,
}

/// Runs `cmd` with stdout a pipe whose reader takes `lines` lines and then closes it, as
/// `| head -n LINES` does (0: closed before anything is written).
fn cut_short(mut cmd: Command, lines: usize) -> CutShort {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn");
    let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        stderr_pipe.read_to_string(&mut s).expect("read stderr");
        s
    });
    let mut reader = BufReader::new(child.stdout.take().expect("stdout pipe"));
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read stdout");
    }
    drop(reader);
    let status = child.wait().expect("wait for cairn");
    CutShort {
        code: status.code(),
        stderr: stderr.join().expect("stderr reader"),
    }
}

impl CutShort {
    fn assert_quiet(&self, what: &str, code: i32) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("Broken pipe"),
            "{what}: {}",
            self.stderr
        );
        assert_eq!(self.code, Some(code), "{what}: {}", self.stderr);
    }
}

/// A thousand files with long names, so that every listing of them is far larger than a
/// pipe's 64 KiB buffer.
fn many_files(env: &Env) -> Vec<PathBuf> {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    (0..1000)
        .map(|i| {
            let p = src.join(format!("{i:04}-{}", "long-name-".repeat(10)));
            std::fs::write(&p, format!("file {i}")).unwrap();
            p
        })
        .collect()
}

fn backup_ids(env: &Env, paths: &[PathBuf]) -> String {
    let paths: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    let s = env.backup_json(&paths, &[]);
    s["snapshot_id"].as_str().unwrap().to_string()
}

#[test]
fn listings_stop_quietly_when_the_reader_goes() {
    let env = Env::new();
    env.init();
    let files = many_files(&env);
    let one = backup_ids(&env, &files[..1]);
    let all = backup_ids(&env, &files);
    // A third group for `forget`, whose key alone (999 paths) overflows the pipe.
    backup_ids(&env, &files[1..]);
    let listings: [&[&str]; 4] = [
        &["snapshots"],
        &["ls", &all],
        &["diff", &one, &all],
        &["forget", "--dry-run", "--keep-last", "1"],
    ];
    for args in listings {
        cut_short(env.cmd(args), 1).assert_quiet(&format!("{args:?}"), 0);
        let mut json = vec!["--json"];
        json.extend_from_slice(args);
        cut_short(env.cmd(&json), 1).assert_quiet(&format!("{json:?}"), 0);
    }
    // Reports too short to fill a pipe: their reader goes before they print.
    let reports: [&[&str]; 4] = [
        &["key", "list"],
        &["check"],
        &["stats"],
        &["prune", "--dry-run"],
    ];
    for args in reports {
        cut_short(env.cmd(args), 0).assert_quiet(&format!("{args:?}"), 0);
    }
    // Nothing was removed by any of it.
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[test]
fn backup_finishes_and_keeps_its_exit_code_when_the_reader_goes() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("fine.txt"), b"readable").unwrap();
    let src_arg = src.to_str().unwrap();
    cut_short(env.cmd(&["backup", "-n", src_arg]), 0).assert_quiet("backup -n", 0);
    cut_short(env.cmd(&["--json", "backup", src_arg]), 0).assert_quiet("--json backup", 0);
    let count = || {
        let out = env.ok(&["snapshots", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array().unwrap().len()
    };
    assert_eq!(count(), 1, "the backup saved its snapshot");
    // An unreadable file still makes the exit code 3.
    std::fs::write(src.join("locked.txt"), b"secret").unwrap();
    std::fs::set_permissions(
        src.join("locked.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    for json in [false, true] {
        let mut args = vec!["backup", src_arg];
        if json {
            args.insert(0, "--json");
        }
        let mut cmd = env.cmd(&args);
        drop_read_override(&mut cmd);
        let run = cut_short(cmd, 0);
        run.assert_quiet(&format!("{args:?}"), 3);
        assert!(run.stderr.contains("locked.txt"), "{}", run.stderr);
    }
    assert_eq!(count(), 3, "both backups saved their snapshots");
}
