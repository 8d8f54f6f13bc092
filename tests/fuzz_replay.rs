//! Replays what the fuzzers found and kept: every input under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` (inputs that once crashed a target) goes through the same
//! entry point the fuzz target calls, on stable Rust and in seconds. A panic here is a
//! regression. The targets' seeds, made by cairn's own encoders, must also be accepted
//! all the way through, which shows that each harness reaches past its first check.

use std::path::Path;

use cairn::fuzzing::{TARGETS, seeds};

#[test]
fn every_seed_is_accepted() {
    let seeds = seeds().expect("seeds");
    for (name, run) in TARGETS {
        let mine: Vec<&Vec<u8>> = seeds
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s)
            .collect();
        assert!(!mine.is_empty(), "target {name} has no seed");
        for (i, seed) in mine.iter().enumerate() {
            assert!(run(seed), "seed {i} of target {name} was rejected");
        }
    }
}

#[test]
fn every_saved_fuzz_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, run) in TARGETS {
        let mut replayed = 0;
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("list a corpus").path();
                let data = std::fs::read(&path).expect("read a corpus input");
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz target {name} panicked on {}",
                    path.display()
                );
                replayed += 1;
            }
        }
        assert!(
            replayed > 0,
            "no saved inputs for fuzz target {name} under {}",
            root.display()
        );
    }
}
