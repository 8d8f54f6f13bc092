//! `cairn forget`: remove snapshots by retention policy or by id (their data stays until
//! `prune`).

use crate::cli::exit::{EXIT_FATAL, EXIT_OK};
use cairn::Error;
use cairn::Result;
use cairn::format::id::Id;
use cairn::format::snapshot::Snapshot;
use cairn::ops::forget::{self, Named, Removal};
use cairn::ops::retention::{self, Count, GroupBy, GroupKey, Policy, Span, Verdict};

use super::SnapshotFilter;
use crate::cli::output::{errln, outln, regardless};
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Keep the N newest snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent hours that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_hourly: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent days that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_daily: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_weekly: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent months that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_monthly: Option<i64>,
    /// Keep the newest snapshot of each of the N most recent years that have one
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_yearly: Option<i64>,
    /// Keep every snapshot younger than this, counted back from the group's newest
    /// (e.g. 1y6m, 30d, 12h)
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    keep_tags: Vec<String>,
    /// Judge groups of snapshots apart: any of host, paths, tags, comma-separated
    /// ('' for a single group)
    #[arg(long, default_value = "host,paths")]
    group_by: String,
    #[command(flatten)]
    filter: SnapshotFilter,
    /// Show what would be removed, remove nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Run `prune` afterwards
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    prune_args: super::prune::Options,
    /// Snapshots to forget (ids or `latest`), instead of a policy
    snapshots: Vec<String>,
}

impl Args {
    fn policy(&self) -> Result<Policy> {
        let count = |option: &str, n: Option<i64>| {
            n.map_or(Ok(Count::None), |n| Count::from_arg(option, n))
        };
        Ok(Policy {
            last: count("--keep-last", self.keep_last)?,
            hourly: count("--keep-hourly", self.keep_hourly)?,
            daily: count("--keep-daily", self.keep_daily)?,
            weekly: count("--keep-weekly", self.keep_weekly)?,
            monthly: count("--keep-monthly", self.keep_monthly)?,
            yearly: count("--keep-yearly", self.keep_yearly)?,
            within: self
                .keep_within
                .as_deref()
                .map_or(Ok(Span::default()), Span::parse)?,
            tags: self.keep_tags.clone(),
        })
    }
}

fn snapshot_json(id: &Id, s: &Snapshot, reasons: &[String]) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": s.local_time().to_rfc3339(),
        "hostname": s.hostname,
        "paths": s.paths,
        "tags": s.tags,
        "reasons": reasons,
    })
}

/// One group's verdicts as text: its key, then what is kept and what removed.
fn print_group(
    key: &GroupKey,
    keep: &[(&Verdict, &Snapshot)],
    remove: &[(&Verdict, &Snapshot)],
) -> Result<()> {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = &key.paths {
        parts.push(format!("paths [{}]", p.join(", ")));
    }
    if let Some(t) = &key.tags {
        parts.push(format!("tags [{}]", t.join(", ")));
    }
    if parts.is_empty() {
        outln!("all snapshots:")?;
    } else {
        outln!("snapshots of {}:", parts.join(", "))?;
    }
    print_table("keep", keep)?;
    print_table("remove", remove)
}

fn print_table(title: &str, rows: &[(&Verdict, &Snapshot)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    outln!("{title} {} snapshots:", rows.len())?;
    outln!(
        "{:<8}  {:<19}  {:<15}  {:<15}  Reasons",
        "ID",
        "Time",
        "Host",
        "Tags"
    )?;
    for (v, s) in rows {
        outln!(
            "{:<8}  {:<19}  {:<15}  {:<15}  {}",
            v.id.short(),
            s.local_time().format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(","),
            v.reasons.join(", ")
        )?;
    }
    outln!()
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let policy = args.policy()?;
    // Every value is checked before any work: prune's too, which runs last.
    if args.prune {
        args.prune_args.check()?;
    }
    if policy.is_empty() && args.snapshots.is_empty() {
        return Err(Error::Usage(
            "no policy and no snapshots given: say what to keep (--keep-last, --keep-daily, …) or which snapshots to forget; forget never removes everything by default".into(),
        ));
    }
    if !policy.is_empty() && !args.snapshots.is_empty() {
        return Err(Error::Usage(
            "give either a policy (--keep-…) or snapshot ids, not both".into(),
        ));
    }
    let group_by = GroupBy::parse(&args.group_by)?;
    let repo = g.open()?;
    let all = repo.snapshots()?;
    let mut doomed: Vec<Id> = Vec::new();
    let mut report = Vec::new();
    if !args.snapshots.is_empty() {
        for named in forget::named(&repo, &all, &args.snapshots)? {
            doomed.push(named.id());
            match named {
                Named::Readable(id, s) => {
                    report.push(serde_json::json!({"remove": [snapshot_json(id, s, &[])]}));
                    g.info(format!("remove snapshot {}", id.short()));
                }
                Named::Unreadable(id) => {
                    report.push(
                        serde_json::json!({"remove": [{"id": id.to_hex(), "unreadable": true}]}),
                    );
                    g.info(format!("remove unreadable snapshot {}", id.short()));
                }
            }
        }
    } else {
        let chosen = args.filter.select(&all)?;
        for (key, members) in retention::group(&chosen, group_by) {
            let verdicts = retention::apply(&policy, &members, &chrono::Local);
            let find = |id: &Id| {
                members
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| Error::Internal("a snapshot vanished from its group".into()))
            };
            let mut keep = Vec::new();
            let mut remove = Vec::new();
            for v in &verdicts {
                let s = find(&v.id)?;
                if v.keep {
                    keep.push((v, s));
                } else {
                    remove.push((v, s));
                    doomed.push(v.id);
                }
            }
            if g.json {
                report.push(serde_json::json!({
                    "group": key,
                    "keep": keep.iter().map(|(v, s)| snapshot_json(&v.id, s, &v.reasons)).collect::<Vec<_>>(),
                    "remove": remove.iter().map(|(v, s)| snapshot_json(&v.id, s, &v.reasons)).collect::<Vec<_>>(),
                }));
            } else if !g.quiet {
                // The removals below happen whoever still reads stdout.
                regardless(print_group(&key, &keep, &remove))?;
            }
        }
    }
    let Removal { removed, retained } = if args.dry_run {
        Removal::default()
    } else {
        forget::remove(&repo, &doomed)?
    };
    for (id, until) in &retained {
        errln!(
            "warning: snapshot {} is under object-lock retention until {until}; it stays until then",
            id.short()
        );
    }
    if g.json {
        regardless(print_json(&serde_json::json!({
            "message_type": "summary",
            "dry_run": args.dry_run,
            "groups": report,
            "removed": removed.iter().map(Id::to_hex).collect::<Vec<_>>(),
            "retained": retained.iter().map(|(id, until)| serde_json::json!({"id": id.to_hex(), "until": until})).collect::<Vec<_>>(),
        })))?;
    } else if args.dry_run {
        g.info(format!("dry run: would remove {} snapshots", doomed.len()));
    } else {
        g.info(format!("removed {} snapshots", removed.len()));
    }
    let pruned = if args.prune && !args.dry_run {
        super::prune::run_on(g, &repo, &args.prune_args)?
    } else {
        EXIT_OK
    };
    if !retained.is_empty() {
        // Asked-for removals that did not happen are a failure, whatever else went well.
        errln!(
            "error: {} of {} snapshots to forget were not removed: they are under object-lock retention (listed above); run forget again once it has passed",
            retained.len(),
            doomed.len()
        );
        return Ok(EXIT_FATAL);
    }
    Ok(pruned)
}
