//! `cairn prune`: delete data no snapshot needs (see `cairn::ops::prune` for how it stays safe
//! beside running backups).

use crate::cli::exit::EXIT_OK;
use cairn::ops::prune::{PruneOptions, PruneStats, prune};
use cairn::repo::Repository;
use cairn::{Error, Result};
use indicatif::HumanBytes;

use crate::cli::output::{errln, outln, regardless};
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    options: Options,
    /// Show what would be deleted and repacked, and what it would cost; change nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct Options {
    /// Unused space to tolerate after the prune, as a share of the used space ("5%"), or
    /// "unlimited" to repack nothing
    #[arg(long, default_value = "5%", value_name = "LIMIT")]
    max_unused: String,
    /// Grace period before a pack marked as unneeded is deleted by a later prune
    /// (e.g. 23h, 2d, 30m; 0 deletes at once, safe only while no backup runs)
    #[arg(long, default_value = "23h", value_name = "DURATION")]
    keep_delete: String,
}

/// `5%`, `5`, `0.5%` or `unlimited`.
fn parse_max_unused(s: &str) -> Result<f64> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(1.0);
    }
    let n: f64 = s
        .trim_end_matches('%')
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && (0.0..100.0).contains(n))
        .ok_or_else(|| {
            Error::Usage(format!(
                "--max-unused {s:?}: give a percentage below 100 (like 5%) or `unlimited`"
            ))
        })?;
    Ok(n / 100.0)
}

/// `0`, or a number with one unit: s, m (minutes), h, d.
fn parse_grace(s: &str) -> Result<chrono::Duration> {
    let bad = || {
        Error::Usage(format!(
            "--keep-delete {s:?}: give a number with a unit s, m (minutes), h or d, like 23h, or 0"
        ))
    };
    if s == "0" {
        return Ok(chrono::Duration::zero());
    }
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    let d = match unit {
        's' => chrono::Duration::try_seconds(n),
        'm' => chrono::Duration::try_minutes(n),
        'h' => chrono::Duration::try_hours(n),
        'd' => chrono::Duration::try_days(n),
        _ => None,
    };
    d.ok_or_else(bad)
}

impl Options {
    /// Checks the values given, before any work.
    pub fn check(&self) -> Result<()> {
        self.prune_options(false).map(|_| ())
    }

    fn prune_options(&self, dry_run: bool) -> Result<PruneOptions> {
        Ok(PruneOptions {
            max_unused: parse_max_unused(&self.max_unused)?,
            keep_delete: parse_grace(&self.keep_delete)?,
            dry_run,
        })
    }
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let opts = args.options.prune_options(args.dry_run)?;
    let repo = g.open()?;
    run_prune(g, &repo, &opts)
}

/// Prunes an open repository after `forget --prune`.
pub fn run_on(g: &Global, repo: &Repository, options: &Options) -> Result<i32> {
    let opts = options.prune_options(false)?;
    run_prune(g, repo, &opts)
}

fn run_prune(g: &Global, repo: &Repository, opts: &PruneOptions) -> Result<i32> {
    let lock = if opts.dry_run {
        None
    } else {
        // Ctrl-C and SIGTERM stop the prune between steps, so that the lock is released.
        super::install_interrupt()?;
        Some(cairn::repo::lock::acquire(repo, "prune")?)
    };
    let meter = Meter::items(g.progress(), "prune");
    let mut stats = prune(repo, opts, &meter)?;
    meter.finish();
    if let Some(lock) = lock {
        lock.release()?;
        // The release is a request of this run too.
        stats.requests = repo.request_stats();
    }
    for r in &stats.retained {
        errln!("warning: {r}: left in place; a later prune deletes it");
    }
    regardless(print_report(g, &stats, opts))?;
    Ok(EXIT_OK)
}

fn print_report(g: &Global, s: &PruneStats, opts: &PruneOptions) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(s).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("message_type".into(), "summary".into());
        }
        return print_json(&v);
    }
    if g.quiet {
        return Ok(());
    }
    let would = |done: &str, planned: &str| {
        if s.dry_run {
            planned.to_string()
        } else {
            done.to_string()
        }
    };
    outln!(
        "{} snapshots need {} blobs; {} packs hold {}: {} used, {} unused, {} pack headers",
        s.snapshots,
        s.needed_blobs,
        s.packs,
        HumanBytes(s.pack_bytes),
        HumanBytes(s.used_bytes),
        HumanBytes(s.unused_bytes),
        HumanBytes(s.header_bytes)
    )?;
    let later = if opts.keep_delete <= chrono::Duration::zero() {
        "deleted now".to_string()
    } else {
        format!(
            "marked; deleted by a prune after {}",
            humanize(opts.keep_delete)
        )
    };
    if s.packs_marked > 0 {
        outln!(
            "unused packs {}: {} ({}), {later}",
            would("found", "to mark"),
            s.packs_marked,
            HumanBytes(s.bytes_marked)
        )?;
    }
    if s.packs_repacked > 0 {
        outln!(
            "{} {} partly used packs ({}) into new ones; the old ones are {later}",
            would("repacked", "would repack"),
            s.packs_repacked,
            HumanBytes(s.bytes_repacked)
        )?;
    }
    if s.packs_unindexed > 0 {
        outln!(
            "packs no index lists (left by interrupted runs): {} ({}), {later}",
            s.packs_unindexed,
            HumanBytes(s.bytes_unindexed)
        )?;
    }
    if s.packs_recovered > 0 {
        outln!(
            "marked packs needed again by a newer snapshot, kept: {}",
            s.packs_recovered
        )?;
    }
    if s.packs_waiting > 0 {
        outln!(
            "marked packs in their grace period: {} ({})",
            s.packs_waiting,
            HumanBytes(s.bytes_waiting)
        )?;
    }
    outln!(
        "{} {} packs, {}",
        would("deleted", "would delete"),
        s.packs_deleted,
        HumanBytes(s.bytes_deleted)
    )?;
    if s.temp_files_removed > 0 {
        outln!(
            "temporary files of interrupted writes removed: {}",
            s.temp_files_removed
        )?;
    }
    let r = &s.requests;
    outln!(
        "requests{}: {} GET, {} PUT, {} HEAD, {} LIST, {} DELETE",
        if s.dry_run { " (estimate)" } else { "" },
        r.get,
        r.put,
        r.head,
        r.list,
        r.delete
    )?;
    if s.dry_run {
        outln!("dry run: nothing was changed")?;
    }
    Ok(())
}

fn humanize(d: chrono::Duration) -> String {
    if d.num_seconds() % 3600 == 0 {
        format!("{} h", d.num_hours())
    } else if d.num_seconds() % 60 == 0 {
        format!("{} min", d.num_minutes())
    } else {
        format!("{} s", d.num_seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_max_unused("5%").expect("ok"), 0.05);
        assert_eq!(parse_max_unused("unlimited").expect("ok"), 1.0);
        assert!(parse_max_unused("100%").is_err());
        assert!(parse_max_unused("-1").is_err());
        assert_eq!(parse_grace("0").expect("ok"), chrono::Duration::zero());
        assert_eq!(parse_grace("23h").expect("ok"), chrono::Duration::hours(23));
        assert_eq!(
            parse_grace("30m").expect("ok"),
            chrono::Duration::minutes(30)
        );
        for bad in ["", "h", "5", "-1h", "1w"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }
}
