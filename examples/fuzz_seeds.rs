//! Writes the fuzz targets' seeds (valid inputs made by cairn's encoders) below a folder,
//! one file per seed in `<folder>/<target>/`: `scripts/fuzz.sh` starts each corpus from
//! them.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or("usage: fuzz_seeds FOLDER")?,
    );
    let mut counts = std::collections::HashMap::new();
    for (target, bytes) in cairn::fuzzing::seeds()? {
        let n = counts.entry(target).or_insert(0);
        let sub = dir.join(target);
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("seed-{n}")), bytes)?;
        *n += 1;
    }
    Ok(())
}
