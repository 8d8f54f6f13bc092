//! `cairn unlock`: remove a lock left by a prune that no longer runs.

use crate::cli::exit::EXIT_OK;
use cairn::Result;

use crate::cli::output::regardless;
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Remove the lock even if its holder may still be running
    #[arg(long)]
    force: bool,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    let held = cairn::repo::lock::current(&repo)?;
    if held.is_empty() {
        g.info("the repository is not locked");
        return report(g, &[]);
    }
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for h in held {
        let who = match &h.info {
            Ok(info) => info.describe(),
            Err(e) => format!("an unreadable lock object {} ({e})", h.object),
        };
        // An unreadable lock object can only be removed by force.
        let stale = h.info.as_ref().is_ok_and(|info| info.is_stale());
        if args.force || stale {
            cairn::repo::lock::remove(&repo, &h.object)?;
            g.info(format!("removed the lock of {who}"));
            removed.push(who);
        } else {
            kept.push(who);
        }
    }
    if !kept.is_empty() {
        return Err(cairn::Error::Locked(format!(
            "{} may still be running; not removed. Use `cairn unlock --force` if you are sure it is not",
            kept.join("; ")
        )));
    }
    report(g, &removed)
}

fn report(g: &Global, removed: &[String]) -> Result<i32> {
    if g.json {
        regardless(print_json(&serde_json::json!({
            "removed": !removed.is_empty(),
            "holder": removed.first(),
            "holders": removed,
        })))?;
    }
    Ok(EXIT_OK)
}
