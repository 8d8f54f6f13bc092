//! One contract for every store: the same body runs on the memory store, a local
//! directory, s3s-fs and moto, so that the layers above can rely on one set of answers
//! whatever holds the repository.

use std::sync::{Arc, Barrier};

use cairn::error::Error;
use cairn::store::local::LocalBackend;
use cairn::store::memory::MemoryBackend;
use cairn::store::s3::{S3Backend, S3Location, S3Options};
use cairn::store::{Backend, Kind, ObjectName};

use crate::common::{S3Server, test_server_var};

fn name(kind: Kind, n: u8) -> ObjectName {
    ObjectName {
        kind,
        name: format!("{n:02x}{}", "ab".repeat(31)),
    }
}

fn names(store: &dyn Backend, kind: Kind) -> Vec<(String, u64)> {
    let mut listed: Vec<(String, u64)> = store
        .list(kind)
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.size))
        .collect();
    listed.sort();
    listed
}

/// How a store that honours `If-None-Match` behaves when two creates race.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Race {
    /// One create succeeds and the other is refused (the local store, the memory store,
    /// AWS and moto).
    Strict,
    /// Both may succeed, the later replacing the earlier (s3s-fs checks, then writes):
    /// only the read-back tells the winner, which is why the lock reads its object back.
    LastWriterWins,
}

/// The contract. `label` names the store in failures.
fn holds(label: &str, store: Arc<dyn Backend>, race: Race) {
    store.create().unwrap();
    let pack = name(Kind::Pack, 1);
    let index = name(Kind::Index, 1);
    let snapshot = name(Kind::Snapshot, 1);

    // Nothing yet: a missing object is reported as missing, and removing it is no error.
    assert!(
        matches!(store.read(&pack), Err(Error::ObjectNotFound(_))),
        "{label}: read of a missing object"
    );
    assert_eq!(store.stat(&pack).unwrap(), None, "{label}");
    store.remove(&pack).unwrap();
    for kind in [
        Kind::Pack,
        Kind::Index,
        Kind::Snapshot,
        Kind::Lock,
        Kind::Key,
    ] {
        assert!(names(store.as_ref(), kind).is_empty(), "{label}: {kind:?}");
    }

    // Whole objects in, whole objects out; each kind lists only its own.
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    store.write(&pack, &bytes).unwrap();
    store.write(&index, b"index").unwrap();
    store.write(&snapshot, b"snapshot").unwrap();
    assert_eq!(store.read(&pack).unwrap(), bytes, "{label}");
    assert_eq!(
        store.stat(&pack).unwrap(),
        Some(bytes.len() as u64),
        "{label}"
    );
    assert_eq!(
        store.read_range(&pack, 99_990, 10).unwrap(),
        bytes[99_990..],
        "{label}: the last bytes"
    );
    assert_eq!(
        store.read_range(&pack, 5, 3).unwrap(),
        bytes[5..8],
        "{label}"
    );
    assert!(
        store.read_range(&pack, 99_995, 10).is_err(),
        "{label}: a range past the end is an error, not a short read"
    );
    assert_eq!(
        names(store.as_ref(), Kind::Pack),
        vec![(pack.name.clone(), bytes.len() as u64)],
        "{label}"
    );
    assert_eq!(
        names(store.as_ref(), Kind::Index),
        vec![(index.name.clone(), 5)],
        "{label}"
    );
    assert_eq!(
        names(store.as_ref(), Kind::Snapshot),
        vec![(snapshot.name.clone(), 8)],
        "{label}"
    );

    // Packs spread over their folders are all listed.
    let more: Vec<ObjectName> = [0x00, 0x7f, 0xff].map(|n| name(Kind::Pack, n)).to_vec();
    for p in &more {
        store.write(p, p.name.as_bytes()).unwrap();
    }
    assert_eq!(names(store.as_ref(), Kind::Pack).len(), 4, "{label}");

    // A content-named object written again is the same object: done, unchanged.
    store.write(&pack, &bytes).unwrap();
    assert_eq!(store.read(&pack).unwrap(), bytes, "{label}");

    // A fixed name is never replaced: the same bytes again are done, others refused.
    let config = ObjectName::config();
    store.write(&config, b"first").unwrap();
    store.write(&config, b"first").unwrap();
    assert!(
        matches!(
            store.write(&config, b"second"),
            Err(Error::AlreadyExists(_))
        ),
        "{label}: the config replaced"
    );
    assert_eq!(store.read(&config).unwrap(), b"first", "{label}");
    assert_eq!(
        names(store.as_ref(), Kind::Pack).len(),
        4,
        "{label}: the config among packs"
    );

    // Where creates are atomic, of two writers racing for one lock exactly one reads its
    // own bytes back (what the lock relies on); where they are strictly atomic, the other
    // is also refused outright.
    if store.atomic_create().unwrap() {
        let lock = name(Kind::Lock, 9);
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [b"one", b"two"]
            .into_iter()
            .map(|body| {
                let (store, barrier, lock) = (store.clone(), barrier.clone(), lock.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (body, store.write(&lock, body))
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let stored = store.read(&lock).unwrap();
        let winners: Vec<_> = results
            .iter()
            .filter(|(body, r)| r.is_ok() && stored == body.as_slice())
            .collect();
        assert_eq!(winners.len(), 1, "{label}: {results:?}");
        for (_, r) in &results {
            assert!(
                matches!(r, Ok(()) | Err(Error::AlreadyExists(_))),
                "{label}: {results:?}"
            );
        }
        if race == Race::Strict {
            assert_eq!(
                results.iter().filter(|(_, r)| r.is_ok()).count(),
                1,
                "{label}: two lock holders: {results:?}"
            );
        }
        store.remove(&lock).unwrap();
    }

    // Removing takes the object out of reads, stats and listings, and nothing else.
    store.remove(&pack).unwrap();
    assert!(
        matches!(store.read(&pack), Err(Error::ObjectNotFound(_))),
        "{label}"
    );
    assert_eq!(store.stat(&pack).unwrap(), None, "{label}");
    assert_eq!(names(store.as_ref(), Kind::Pack).len(), 3, "{label}");
    assert_eq!(store.read(&index).unwrap(), b"index", "{label}");

    // Clearing leftovers of interrupted writes never touches an object.
    store.remove_leftovers(std::time::Duration::ZERO).unwrap();
    assert_eq!(names(store.as_ref(), Kind::Pack).len(), 3, "{label}");
    assert_eq!(store.read(&config).unwrap(), b"first", "{label}");
}

fn s3_store(server: &S3Server, prefix: &str) -> Arc<dyn Backend> {
    let location = S3Location::parse(&format!("s3://{}/{prefix}", server.bucket)).unwrap();
    let options = S3Options {
        endpoint: Some(server.endpoint.clone()),
        ..S3Options::default()
    };
    Arc::new(S3Backend::new(location, options).unwrap())
}

fn fresh_prefix(dir: &tempfile::TempDir) -> String {
    let leaf = dir.path().file_name().unwrap().to_string_lossy();
    format!("contract-{}", leaf.trim_start_matches('.'))
}

#[test]
fn memory() {
    holds("memory", Arc::new(MemoryBackend::new()), Race::Strict);
    holds(
        "memory without atomic creates",
        Arc::new(MemoryBackend::new().without_atomic_create()),
        Race::Strict,
    );
}

#[test]
fn local() {
    let dir = tempfile::tempdir().unwrap();
    holds(
        "local",
        Arc::new(LocalBackend::new(dir.path().join("repo"))),
        Race::Strict,
    );
}

#[test]
fn s3s_fs() {
    let Some(server) = S3Server::configured() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    holds(
        "s3s-fs",
        s3_store(&server, &fresh_prefix(&dir)),
        Race::LastWriterWins,
    );
}

#[test]
fn moto() {
    let (Some(shared), Some(endpoint)) = (
        S3Server::configured(),
        test_server_var("CAIRN_TEST_MOTO_ENDPOINT"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let moto = S3Server {
        endpoint,
        bucket: std::env::var("CAIRN_TEST_MOTO_BUCKET").expect("CAIRN_TEST_MOTO_BUCKET"),
        ..shared
    };
    holds("moto", s3_store(&moto, &fresh_prefix(&dir)), Race::Strict);
}
