use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::exit::EXIT_OK;
use cairn::format::tree::{Node, NodeKind};
use cairn::ops::restorer::write_content;
use cairn::{Error, Result};

use super::{find_path, pick_snapshot};
use crate::cli::Global;
use crate::cli::escape::{escape, escape_path};
use crate::cli::output::{self, Raw};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` (the newest that passes --host, --tag, --path) or an id prefix;
    /// `SNAPSHOT:PATH` takes a folder inside it as the root
    snapshot: String,
    /// Path of a file inside the snapshot (as typed, or escaped as `ls` prints it; a
    /// relative one is taken from the working directory, as backup takes it)
    path: PathBuf,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = pick_snapshot(&repo, &args.snapshot, &args.filter)?;
    let found = find_path(&repo, snap.tree, &args.path);
    let (path, node) = super::explain_missing(found, &args.snapshot, &args.filter, &id, &snap)?;
    only_files(&path, &node)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, Raw(stdout.lock()));
    let written = write_content(&repo, &node, &mut out).and_then(|_| {
        out.flush()
            .map_err(|e| Error::Output(format!("writing output: {e}")))
    });
    match written {
        // `dump … | head -c 100`: the reader has what it wanted.
        Err(_) if output::closed() => Err(Error::OutputClosed),
        other => other.map(|_| EXIT_OK),
    }
}

/// Refuses anything but a file, saying what to do with the entry instead.
fn only_files(path: &Path, node: &Node) -> Result<()> {
    let p = escape_path(path);
    let instead = match node.kind {
        NodeKind::File => return Ok(()),
        NodeKind::Dir => format!(
            "list it with `cairn ls SNAPSHOT {p}`, or restore it with `cairn restore SNAPSHOT --target DIR --include {p}`"
        ),
        NodeKind::Symlink => format!(
            "it points to {}; dump the file it points to instead",
            escape(&node.target)
        ),
        NodeKind::Fifo | NodeKind::Chardev | NodeKind::Blockdev => format!(
            "it has no content of its own; `cairn restore SNAPSHOT --target DIR --include {p}` recreates it"
        ),
        NodeKind::Socket => {
            "it has no content, and sockets are not restored either (a running program creates them)".to_string()
        }
    };
    Err(Error::Invalid(format!(
        "{p} is a {}, not a file, so it has nothing to dump: {instead}",
        node.kind.as_str()
    )))
}
