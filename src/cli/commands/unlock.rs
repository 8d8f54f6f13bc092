//! `cairn unlock`: remove a lock left by a prune that no longer runs.

use cairn::Result;
use cairn::error::EXIT_OK;

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
    let held = match cairn::lock::current(&repo) {
        Ok(h) => h,
        // An unreadable lock object can only be removed by force.
        Err(e) if args.force => {
            g.info(format!("the lock object is unreadable ({e}); removing it"));
            cairn::lock::remove(&repo)?;
            return report(g, true, None);
        }
        Err(e) => return Err(e),
    };
    let Some(info) = held else {
        g.info("the repository is not locked");
        return report(g, false, None);
    };
    if !args.force && !info.is_stale() {
        return Err(cairn::Error::Locked(format!(
            "{} may still be running; not removed. Use `cairn unlock --force` if you are sure it is not",
            info.describe()
        )));
    }
    cairn::lock::remove(&repo)?;
    g.info(format!("removed the lock of {}", info.describe()));
    report(g, true, Some(info.describe()))
}

fn report(g: &Global, removed: bool, holder: Option<String>) -> Result<i32> {
    if g.json {
        regardless(print_json(
            &serde_json::json!({"removed": removed, "holder": holder}),
        ))?;
    }
    Ok(EXIT_OK)
}
