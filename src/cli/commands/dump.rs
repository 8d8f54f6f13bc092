use std::io::Write;
use std::path::PathBuf;

use cairn::archiver::absolute_path;
use cairn::error::EXIT_OK;
use cairn::restorer::{find_node, write_content};
use cairn::tree::NodeKind;
use cairn::{Error, Result};

use super::pick_snapshot;
use crate::cli::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` or an id prefix
    snapshot: String,
    /// Path of a file inside the snapshot (a relative one is taken from the working
    /// directory, as backup takes it)
    path: PathBuf,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (_, snap) = pick_snapshot(&repo, &args.snapshot)?;
    let path = absolute_path(&args.path)?;
    let node = find_node(&repo, snap.tree, &path)?;
    if node.kind != NodeKind::File {
        return Err(Error::Invalid(format!(
            "{} is a {}, not a file; use `cairn restore --include` for directories",
            path.display(),
            node.kind.as_str()
        )));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    write_content(&repo, &node, &mut out)?;
    out.flush()
        .map_err(|e| Error::Other(format!("writing output: {e}")))?;
    Ok(EXIT_OK)
}
