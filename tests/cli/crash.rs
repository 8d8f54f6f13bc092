//! A backup killed half-way leaves a usable repository, and the next one carries on.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn killed_backup_leaves_a_consistent_repository() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(77);
    for i in 0..8 {
        std::fs::write(
            src.join(format!("f{i}")),
            random_bytes(&mut rng, 4 * 1024 * 1024),
        )
        .unwrap();
    }
    let mut child = env
        .cmd(&["backup", "-q", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Kill it as soon as its first pack is in the repository: mid-backup, with data
    // written but no index or snapshot yet (or, on a fast machine, a little later).
    let data = std::path::Path::new(&env.repo).join("data");
    let deadline = Instant::now() + Duration::from_secs(120);
    while all_files(&data).is_empty() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();

    // Whatever got written, every snapshot that exists restores, and the next backup
    // completes and restores identical.
    let summary = env.backup_json(&[&src], &[]);
    assert_eq!(summary["files_failed"], 0);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for snap in list.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        env.assert_restores(id, &src);
    }
}
