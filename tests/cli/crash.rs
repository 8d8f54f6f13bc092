//! Backups killed with SIGKILL at successive moments leave a repository that checks clean,
//! keeps every earlier snapshot whole, and lets the next backup and prune finish; what
//! the killed runs left behind is cleaned up, never counted as data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn::format::pack::BlobType;
use cairn::store::{Kind, ObjectName};

use crate::common::*;

fn is_temp(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
}

/// What the store held when a run started, and what it holds now.
struct Seen {
    data0: BTreeSet<PathBuf>,
    data: BTreeSet<PathBuf>,
    index0: BTreeSet<PathBuf>,
    index: BTreeSet<PathBuf>,
    snapshots0: BTreeSet<PathBuf>,
    snapshots: BTreeSet<PathBuf>,
}

impl Seen {
    fn new_packs(&self) -> usize {
        self.data
            .difference(&self.data0)
            .filter(|p| !is_temp(p))
            .count()
    }
}

type Moment = fn(&Seen) -> bool;

/// Source for the killed runs: `old` (in the first snapshot) and `new`, several packs of
/// incompressible data that only the killed runs and the last one back up.
fn make_source(env: &Env) -> (PathBuf, PathBuf) {
    let src = env.path("src");
    let old = src.join("old");
    random_tree(&old, 91);
    let new = src.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let mut rng = fastrand::Rng::with_seed(91);
    for i in 0..10 {
        std::fs::write(
            new.join(format!("part-{i}")),
            random_bytes(&mut rng, 5 << 20),
        )
        .unwrap();
    }
    (src, old)
}

/// The real binary killed at successive moments of a backup, each spotted in the store: a
/// pack uploaded, a second one, a temporary file being written (local stores), an index
/// file written, the snapshot written. After each kill `check` passes and the snapshot
/// taken before restores identical; then a backup finishes and restores identical, and a
/// prune removes the killed runs' packs and temporary files.
fn backup_killed_at_several_moments_then_the_next_finishes(env: Env) {
    // Small chunks: thousands of blobs, so that the runs have many moments to stop at.
    env.ok(&[
        "init",
        "--chunk-min",
        "2048",
        "--chunk-avg",
        "8192",
        "--chunk-max",
        "32768",
    ]);
    let (src, old) = make_source(&env);
    let before = env.backup_json(&[&old], &[]);
    let before = before["snapshot_id"].as_str().unwrap().to_string();

    let store = env.repo_dir();
    let (data, index, snapshots) = (
        store.join("data"),
        store.join("index"),
        store.join("snapshots"),
    );
    let moments: [(&str, Moment); 6] = [
        ("started", |_| true),
        ("pack uploaded", |s| s.new_packs() >= 1),
        ("second pack uploaded", |s| s.new_packs() >= 2),
        ("temporary file", |s| s.data.iter().any(|p| is_temp(p))),
        ("index written", |s| {
            s.index.difference(&s.index0).next().is_some()
        }),
        ("snapshot written", |s| {
            s.snapshots.difference(&s.snapshots0).next().is_some()
        }),
    ];
    let mut killed = Vec::new();
    for (what, reached) in moments {
        let (data0, index0, snapshots0) = (
            names_below(&data),
            names_below(&index),
            names_below(&snapshots),
        );
        let seen = || Seen {
            data0: data0.clone(),
            data: names_below(&data),
            index0: index0.clone(),
            index: names_below(&index),
            snapshots0: snapshots0.clone(),
            snapshots: names_below(&snapshots),
        };
        if kill_when(env.cmd(&["backup", "-q", src.to_str().unwrap()]), || {
            reached(&seen())
        }) {
            killed.push(what);
        }
        let check = env.run(&["check"]);
        assert!(
            check.status.success(),
            "check after a backup killed at \"{what}\": {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        env.assert_restores(&before, &old);
    }
    eprintln!("backup killed at: {killed:?}");
    assert!(
        killed.contains(&"started") && killed.contains(&"pack uploaded"),
        "killed at {killed:?}"
    );

    // The next backup completes, and so does every snapshot the killed runs finished.
    let after = env.backup_json(&[&src], &[]);
    assert_eq!(after["files_failed"], 0);
    let out = env.ok(&["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for snap in list.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        if id != before {
            env.assert_restores(id, &src);
        }
    }
    env.assert_restores(&before, &old);
    env.ok(&["check", "--read-data"]);

    // Leftovers: packs no index lists, and (on a local store) temporary files. A prune
    // with no grace period removes them; nothing a snapshot needs goes with them.
    let first = prune_now(&env);
    let again = summary_line(&env.ok(&["prune", "--json", "--keep-delete", "0"]));
    assert_eq!(again["packs_unindexed"], 0, "after {first}: {again}");
    let temps: Vec<PathBuf> = names_below(&store)
        .into_iter()
        .filter(|p| is_temp(p))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores(&before, &old);
    env.assert_restores("latest", &src);
}

/// Files of incompressible data, several packs' worth.
fn incompressible_source(env: &Env, seed: u64) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..8 {
        let data = random_bytes(&mut rng, 8 << 20);
        std::fs::write(src.join(format!("part-{i}")), data).unwrap();
    }
    src
}

/// An empty repository on the same kind of store as `env`.
fn another_repository(env: &Env) -> Env {
    let other = match env.store {
        Store::Local => Env::new(),
        Store::S3(_) => Env::on_server(S3Server::shared()),
    };
    other.init();
    other
}

/// The objects below `dir` of `env`'s store, with their sizes: files whose names start
/// with a dot (temporary files of writes in flight or killed) are not objects.
fn objects_below(env: &Env, dir: &str) -> Vec<(PathBuf, u64)> {
    names_below(&env.repo_dir().join(dir))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .map(|p| {
            let size = std::fs::metadata(&p).unwrap().len();
            (p, size)
        })
        .collect()
}

fn stored_packs(env: &Env) -> Vec<(PathBuf, u64)> {
    objects_below(env, "data")
}

/// Bytes of all objects in `env`'s repository.
fn objects_size(env: &Env) -> u64 {
    objects_below(env, "").iter().map(|(_, size)| size).sum()
}

/// A backup killed after several packs are stored, then rerun: the rerun indexes the
/// packs the killed run left and uploads only what they lack, so the repository ends up
/// about as big as after one uninterrupted backup, checks clean and restores identical.
fn killed_backup_uploads_are_reused_by_the_next(env: Env) {
    env.init();
    let src = incompressible_source(&env, 17);
    // What one uninterrupted backup stores.
    let whole = another_repository(&env);
    let whole_src = incompressible_source(&whole, 17);
    let whole_run = whole.backup_json(&[&whole_src], &[]);
    let whole_packed = whole_run["data_added_packed"].as_u64().unwrap();
    let whole_size = objects_size(&whole);

    let killed = kill_when(env.cmd(&["backup", "-q", src.to_str().unwrap()]), || {
        stored_packs(&env).len() >= 2
    });
    assert!(killed, "the backup finished before it could be killed");
    assert!(
        names_below(&env.repo_dir().join("index")).is_empty(),
        "the killed run wrote an index file: nothing is left to adopt"
    );
    let left = stored_packs(&env);
    let left_bytes: u64 = left.iter().map(|(_, size)| size).sum();
    assert!(left.len() >= 2, "{left:?}");

    let rerun = env.backup_json(&[&src], &[]);
    let packed = rerun["data_added_packed"].as_u64().unwrap();
    let up = rerun["requests"]["bytes_up"].as_u64().unwrap();
    let missing = whole_packed.saturating_sub(left_bytes);
    // Blob bytes versus pack bytes (headers) and the trees: a few KiB apart.
    let slack = 256 << 10;
    assert!(
        packed <= missing + slack && up <= missing + 2 * slack,
        "the rerun stored {packed} bytes (uploaded {up}); {left_bytes} of {whole_packed} \
         were already stored: {rerun}"
    );
    // One ranged read per pack left, besides the config, the key and the listings' reads.
    let gets = rerun["requests"]["get"].as_u64().unwrap();
    assert!(gets <= left.len() as u64 + 4, "{gets} GETs: {rerun}");
    let size = objects_size(&env);
    assert!(
        size <= whole_size + whole_size / 50,
        "repository of {size} bytes, one uninterrupted backup makes {whole_size}"
    );

    let check = summary_line(&env.ok(&["check", "--json"]));
    assert_eq!(check["unindexed_packs"], serde_json::json!([]), "{check}");
    env.assert_restores("latest", &src);
    // The adopted packs are live: a prune keeps them.
    let pruned = prune_now(&env);
    assert_eq!(pruned["packs_deleted"], 0, "{pruned}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);
}

/// Files in data/ that are not this repository's packs (garbage under a pack's name, a
/// truncated copy, one too short to be a pack, another repository's pack, a stray name)
/// are left alone and named at `-v`: the backup goes on and stores its data itself.
fn foreign_and_damaged_files_in_data_do_not_stop_a_backup(env: Env) {
    env.init();
    let src = env.path("src");
    random_tree(&src, 23);
    let other = another_repository(&env);
    let other_src = other.path("src");
    random_tree(&other_src, 23);
    other.backup_json(&[&other_src], &[]);
    let (foreign, _) = stored_packs(&other).into_iter().next().unwrap();
    let foreign_name = foreign.file_name().unwrap().to_string_lossy().into_owned();

    let data = env.repo_dir().join("data");
    let mut rng = fastrand::Rng::with_seed(5);
    let plant = |bytes: &[u8]| -> String {
        let name = cairn::format::id::Id::of_stored(bytes).to_hex();
        let dir = data.join(&name[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&name), bytes).unwrap();
        name
    };
    let foreign_bytes = std::fs::read(&foreign).unwrap();
    let planted = [
        plant(&random_bytes(&mut rng, 100_000)),
        plant(&foreign_bytes[foreign_bytes.len() / 2..]),
        plant(b"abc"),
    ];
    let foreign_dir = data.join(&foreign_name[..2]);
    std::fs::create_dir_all(&foreign_dir).unwrap();
    std::fs::write(foreign_dir.join(&foreign_name), &foreign_bytes).unwrap();
    std::fs::create_dir_all(data.join("zz")).unwrap();
    std::fs::write(data.join("zz").join("not-a-pack"), b"hello").unwrap();

    let out = env.ok(&["backup", "-v", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    for name in planted.iter().chain([&foreign_name]) {
        assert!(
            err.contains(name) && err.contains("left alone"),
            "{name} not named: {err}"
        );
    }
    let check = summary_line(&env.ok(&["check", "--json"]));
    let unindexed = check["unindexed_packs"].to_string();
    for name in planted.iter().chain([&foreign_name]) {
        assert!(unindexed.contains(name), "{name}: {check}");
    }
    env.assert_restores("latest", &src);
    let pruned = prune_now(&env);
    assert_eq!(pruned["packs_unindexed"], 4, "{pruned}");
    env.ok(&["check", "--read-data"]);
    env.assert_restores("latest", &src);
}

on_both_backends!(
    backup_killed_at_several_moments_then_the_next_finishes,
    killed_backup_uploads_are_reused_by_the_next,
    foreign_and_damaged_files_in_data_do_not_stop_a_backup
);

/// A tree pack that an interrupted run stored but did not index goes into the local pack
/// cache when it is adopted, as the tree packs a backup uploads do, so that later backups
/// read its trees without a request.
#[test]
fn adopted_tree_packs_are_kept_in_the_local_pack_cache() {
    let Some(env) = Env::s3() else { return };
    env.init();
    let src = env.path("src");
    for dir in ["a", "b/c", "d"] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
        std::fs::write(src.join(dir).join("file"), dir.as_bytes()).unwrap();
    }
    // A run whose index files never reach the store, as if it died just before them.
    let no_index = Intercept {
        inner: env.backend(),
        before: |change: Change, obj: &ObjectName| match (change, obj.kind) {
            (Change::Write, Kind::Index) => Err(cairn::Error::Store("no index".into())),
            _ => Ok(()),
        },
    };
    let repo = env.open_with(Arc::new(no_index), "cache-interrupted");
    assert!(back_up(&repo, &src).is_err());
    let mut tree_packs = Vec::new();
    for (id, size) in repo.stored_packs().unwrap() {
        let (entries, _) = repo.read_pack_header(&id, size).unwrap();
        if entries.iter().all(|e| e.kind == BlobType::Tree) {
            tree_packs.push(id);
        }
    }
    assert!(
        !tree_packs.is_empty(),
        "the interrupted run stored no tree pack"
    );
    let repo_id = repo.config().id.to_hex();
    drop(repo);

    env.ok(&["backup", src.to_str().unwrap()]);
    for id in &tree_packs {
        let hex = id.to_hex();
        let copy = env.path("cache").join(&repo_id).join("packs");
        let copy = copy.join(&hex[..2]).join(&hex);
        let stored = env.repo_dir().join(ObjectName::new(Kind::Pack, id).path());
        assert!(
            std::fs::read(&copy).ok() == Some(std::fs::read(&stored).unwrap()),
            "tree pack {hex} is not in the local cache"
        );
    }
    env.assert_restores("latest", &src);
}
