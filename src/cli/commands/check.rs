//! `cairn check`: is the repository complete, and (with `--read-data`) sound?

use crate::cli::exit::{EXIT_FATAL, EXIT_OK};
use cairn::ops::check::{CheckReport, DataSubset, check};
use cairn::{Error, Result};
use indicatif::HumanBytes;

use crate::cli::output::{errln, outln, regardless};
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Also download every pack, decrypt every blob and check it against its id
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read only part of the packs: a random share ("10%") or part n of m ("3/30", by pack
    /// id, so running 1/30 … 30/30 on successive nights covers everything)
    #[arg(long, value_name = "SUBSET")]
    read_data_subset: Option<String>,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let subset = match (&args.read_data_subset, args.read_data) {
        (Some(s), _) => DataSubset::parse(s)?,
        (None, true) => DataSubset::All,
        (None, false) => DataSubset::None,
    };
    let repo = g.open()?;
    let meter = Meter::items(g.progress(), "check");
    let report = check(&repo, subset, &meter)?;
    meter.finish();
    // The verdict is in the exit code and on stderr, whoever still reads stdout.
    regardless(print_summary(g, &report, subset))?;
    if !g.json {
        print_problems(g, &report);
    }
    Ok(if report.is_clean() {
        EXIT_OK
    } else {
        EXIT_FATAL
    })
}

fn print_summary(g: &Global, report: &CheckReport, subset: DataSubset) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(report).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.insert("message_type".into(), "summary".into());
            o.insert("clean".into(), report.is_clean().into());
        }
        return print_json(&v);
    }
    if !g.quiet {
        outln!(
            "checked {} snapshots, {} index files, {} packs",
            report.snapshots,
            report.index_files,
            report.packs
        )?;
        if subset != DataSubset::None {
            outln!(
                "read {} packs ({}), {} blobs",
                report.packs_read,
                HumanBytes(report.bytes_read),
                report.blobs_checked
            )?;
        }
        if !report.unindexed_packs.is_empty() {
            let advice = if report.is_clean() {
                "left by interrupted runs: the next backup reuses the sound ones, `cairn prune` removes the rest"
            } else {
                "they may hold data the damaged index lacks: `cairn repair index` indexes the sound ones, see below"
            };
            outln!(
                "{} packs are in no index ({advice})",
                report.unindexed_packs.len()
            )?;
        }
        for n in &report.notes {
            outln!("note: {n}")?;
        }
    }
    Ok(())
}

/// Damage and the verdict, on stderr.
fn print_problems(g: &Global, report: &CheckReport) {
    for p in &report.problems {
        errln!("error: {}: {}", p.object, p.error);
    }
    if !report.affected.is_empty() {
        errln!("affected files and folders:");
        for a in &report.affected {
            errln!("  snapshot {}: {}", a.snapshot, a.path);
        }
    }
    if report.is_clean() {
        g.info("no errors were found");
    } else {
        errln!(
            "{} problems found, {} files and folders affected; files not listed as affected restore normally",
            report.problems.len(),
            report.affected.len()
        );
        errln!("what to do (README, \"When something is damaged\"):");
        for (n, step) in report.next_steps.iter().enumerate() {
            errln!("  {}. {step}", n + 1);
        }
    }
}
