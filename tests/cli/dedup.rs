use crate::common::*;

fn second_backup_of_same_data_adds_under_one_percent(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 11);
    env.backup_json(&[&src], &[]);
    let first = env.repo_size();
    // --force reads every file again: dedup, not the parent shortcut, must keep it small.
    let again = env.backup_json(&[&src], &["--force"]);
    // No content is stored again. (A few tree blobs may be: /tmp, an ancestor stored in
    // the snapshot, changes when other tests run beside this one.)
    assert_eq!(again["data_blobs"], 0, "{again}");
    let second = env.repo_size();
    assert!(
        (second - first) * 100 < first,
        "second backup added {} bytes to {first}",
        second - first
    );
}

fn one_byte_change_in_a_large_file_adds_few_chunks(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(5);
    let mut data = random_bytes(&mut rng, 64 * 1024 * 1024);
    let file = src.join("big");
    std::fs::write(&file, &data).unwrap();
    env.backup_json(&[&src], &[]);
    data[32 * 1024 * 1024] ^= 0x5a;
    std::fs::write(&file, &data).unwrap();
    let changed = env.backup_json(&[&src], &[]);
    assert_eq!(changed["files_changed"], 1, "{changed}");
    let blobs = changed["data_blobs"].as_u64().unwrap();
    let added = changed["data_added"].as_u64().unwrap();
    assert!(
        (1..=3).contains(&blobs),
        "{blobs} data blobs added: {changed}"
    );
    assert!(
        added <= 16 * 1024 * 1024,
        "{added} bytes added for a one-byte change"
    );
}

on_both_backends!(
    second_backup_of_same_data_adds_under_one_percent,
    one_byte_change_in_a_large_file_adds_few_chunks
);
