use std::path::{Path, PathBuf};

use crate::cli::exit::EXIT_OK;
use cairn::Result;
use cairn::format::tree::{Node, NodeKind};
use cairn::repo::tree_walk::walk_nodes;

use super::{display_bytes, find_path, pick_snapshot};
use crate::cli::escape::{escape, escape_path};
use crate::cli::file_time;
use crate::cli::output::outln;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: `latest` (the newest that passes --host, --tag, --path) or an id prefix;
    /// `SNAPSHOT:PATH` takes a folder inside it as the root
    snapshot: String,
    /// Path inside the snapshot to list (default: everything; a relative one is taken
    /// from the working directory, as backup takes it)
    path: Option<PathBuf>,
    /// Show mode (followed by `@` when the entry has extended attributes or ACLs), owner,
    /// size and mtime
    #[arg(short, long)]
    long: bool,
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

fn mode_string(node: &Node) -> String {
    let t = match node.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    // Each class's execute column also shows its special bit, as `ls -l` does: setuid
    // and setgid as s (S without x), sticky as t (T without x).
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (node.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, node.mode & special != 0) {
            (true, false) => 'x',
            (false, false) => '-',
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
        });
    }
    s
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = pick_snapshot(&repo, &args.snapshot, &args.filter)?;
    let start = args.path.clone().unwrap_or_else(|| PathBuf::from("/"));
    let found = find_path(&repo, snap.tree, &start);
    let (start, node) = super::explain_missing(found, &args.snapshot, &args.filter, &id, &snap)?;
    let with_self = start != Path::new("/");
    walk_nodes(&repo, &start, &node, with_self, &mut |path, node| {
        if g.json {
            print_json(&serde_json::json!({
                "path": path.to_string_lossy(),
                "path_escaped": escape_path(path),
                "name": display_bytes(&node.name),
                "type": node.kind.as_str(),
                "mode": node.mode,
                "uid": node.uid,
                "gid": node.gid,
                "user": node.user,
                "group": node.group,
                "size": node.size,
                "mtime": file_time::rfc3339(node.mtime),
                "inode": node.inode,
                "links": node.links,
                "xattrs": node.xattrs.iter().map(|x| display_bytes(&x.name)).collect::<Vec<_>>(),
                "sparse": !node.holes.is_empty(),
                "link_target": (node.kind == NodeKind::Symlink).then(|| display_bytes(&node.target)),
            }))?;
        } else if args.long {
            let owner = node.user.clone().unwrap_or_else(|| node.uid.to_string());
            let group = node.group.clone().unwrap_or_else(|| node.gid.to_string());
            let link = if node.kind == NodeKind::Symlink {
                format!(" -> {}", escape(&node.target))
            } else {
                String::new()
            };
            // `@` after the mode marks extended attributes (ACLs among them), as macOS's
            // `ls -l` does.
            let marked = if node.xattrs.is_empty() { " " } else { "@" };
            outln!(
                "{}{} {:>8} {:>8} {:>12} {} {}{}",
                mode_string(node),
                marked,
                owner,
                group,
                node.size,
                file_time::text(node.mtime),
                escape_path(path),
                link
            )?;
        } else {
            outln!("{}", escape_path(path))?;
        }
        Ok(())
    })?;
    Ok(EXIT_OK)
}
