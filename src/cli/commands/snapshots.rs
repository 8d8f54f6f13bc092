use crate::cli::exit::EXIT_OK;
use cairn::Result;

use crate::cli::output::outln;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: super::SnapshotFilter,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let list = args.filter.select(&repo.snapshots()?)?;
    if g.json {
        let items: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(),
                    "short_id": id.short(),
                    "time": s.local_time().to_rfc3339(),
                    "tree": s.tree.to_hex(),
                    "paths": s.paths,
                    "hostname": s.hostname,
                    "username": s.username,
                    "tags": s.tags,
                    "parent": s.parent.map(|p| p.to_hex()),
                    "summary": s.summary,
                    "program": s.program,
                })
            })
            .collect();
        print_json(&items)?;
        return Ok(EXIT_OK);
    }
    outln!(
        "{:<8}  {:<19}  {:<15}  {:<15}  Paths",
        "ID",
        "Time",
        "Host",
        "Tags"
    )?;
    outln!("{}", "-".repeat(80))?;
    for (id, s) in &list {
        let mut first = true;
        for p in &s.paths {
            if first {
                outln!(
                    "{:<8}  {:<19}  {:<15}  {:<15}  {}",
                    id.short(),
                    s.local_time().format("%Y-%m-%d %H:%M:%S"),
                    s.hostname,
                    s.tags.join(","),
                    p
                )?;
                first = false;
            } else {
                outln!("{:<8}  {:<19}  {:<15}  {:<15}  {}", "", "", "", "", p)?;
            }
        }
    }
    outln!("{}", "-".repeat(80))?;
    outln!("{} snapshots", list.len())?;
    Ok(EXIT_OK)
}
