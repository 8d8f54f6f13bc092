//! Several passwords on one repository: add, list, remove, change; the last key and the
//! key in use are never removed.

use crate::common::*;

fn with_password(env: &Env, password: &str, args: &[&str]) -> std::process::Output {
    env.cmd(args)
        .env("CAIRN_PASSWORD", password)
        .output()
        .unwrap()
}

fn key_ids(env: &Env, password: &str) -> Vec<(String, bool)> {
    let out = with_password(env, password, &["key", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["current"] == true))
        .collect()
}

fn several_passwords_open_one_repository(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 8);
    env.backup_json(&[&src], &[]);
    let second = env.path("second-password");
    std::fs::write(&second, "a second password\n").unwrap();
    env.ok(&[
        "key",
        "add",
        "--new-password-file",
        second.to_str().unwrap(),
    ]);
    let keys = key_ids(&env, PASSWORD);
    assert_eq!(keys.len(), 2);
    let first_id = keys.iter().find(|(_, cur)| *cur).unwrap().0.clone();
    let other = keys.iter().find(|(_, cur)| !*cur).unwrap().0.clone();
    // The new password opens the same repository and its snapshots.
    let out = with_password(&env, "a second password", &["snapshots", "--json"]);
    assert!(out.status.success());
    assert_eq!(
        key_ids(&env, "a second password")
            .iter()
            .filter(|k| k.1)
            .count(),
        1
    );

    // The key in use cannot be removed.
    let out = env.run(&["key", "remove", &first_id[..8]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    // Another password may remove it.
    let out = with_password(
        &env,
        "a second password",
        &["key", "remove", &first_id[..8]],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.run(&["snapshots"]).status.code(),
        Some(12),
        "old password gone"
    );
    // The last key cannot be removed, even by id from nowhere else.
    let out = with_password(&env, "a second password", &["key", "remove", &other[..8]]);
    assert_eq!(out.status.code(), Some(1));

    // passwd swaps the password in use for a new one.
    let third = env.path("third-password");
    std::fs::write(&third, "third").unwrap();
    let out = with_password(
        &env,
        "a second password",
        &[
            "key",
            "passwd",
            "--new-password-file",
            third.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        with_password(&env, "a second password", &["snapshots"])
            .status
            .code(),
        Some(12)
    );
    let keys = key_ids(&env, "third");
    assert_eq!(keys.len(), 1);
    let target = env.path("restored");
    let out = with_password(
        &env,
        "third",
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    assert!(out.status.success());
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

on_both_backends!(several_passwords_open_one_repository);
