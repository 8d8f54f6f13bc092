//! `cairn repair config | index | snapshots`: bring a damaged repository back (see
//! `cairn::ops::repair`, and README's "When something is damaged" for the order).

use crate::cli::exit::EXIT_OK;
use cairn::ops::repair::config::{ConfigRepair, ConfigSource, repair_config};
use cairn::ops::repair::index::{IndexRepairOptions, IndexRepairReport, repair_index};
use cairn::ops::repair::snapshots::{
    SnapshotRepairOptions, SnapshotRepairReport, repair_snapshots,
};
use cairn::{Error, Result};
use indicatif::HumanBytes;

use crate::cli::commands::init::NewRepoArgs;
use crate::cli::output::{errln, outln, regardless};
use crate::cli::progress::Meter;
use crate::cli::{Global, print_json};
use cairn::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Write a lost or damaged `config` again, with the password (from a local cache's
    /// copy when one exists, else anew with the settings given)
    Config(ConfigArgs),
    /// Rebuild the index from the packs: drop what is lost, salvage what still opens from
    /// damaged packs, index packs no index lists
    Index(IndexArgs),
    /// Write repaired copies of snapshots that need lost data (tagged `repaired`)
    Snapshots(SnapshotsArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Settings of a config made anew (used only when no cached copy is found)
    #[command(flatten)]
    settings: NewRepoArgs,
    /// Show what would be written; write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct IndexArgs {
    /// Read every pack whole and check every blob, not only the packs known damaged
    #[arg(long)]
    read_all_packs: bool,
    /// Show what would change; write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct SnapshotsArgs {
    /// Remove the damaged originals once their repaired copies are written, and snapshot
    /// objects that cannot be read at all
    #[arg(long)]
    forget: bool,
    /// Show what would be repaired; write nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    match &args.what {
        What::Config(a) => run_config(g, a),
        What::Index(a) => run_index(g, a),
        What::Snapshots(a) => run_snapshots(g, a),
    }
}

fn run_config(g: &Global, args: &ConfigArgs) -> Result<i32> {
    let settings = args.settings.options(g)?;
    let backend = g.backend()?;
    let password = g.password().get()?;
    let cache_base = g.cache_base();
    let report = repair_config(
        backend.clone(),
        &password.bytes,
        cache_base.as_deref(),
        &settings,
        args.dry_run,
        &g.retry(),
    )?;
    regardless(print_config(g, &report, &backend.location()))?;
    Ok(EXIT_OK)
}

fn print_config(g: &Global, r: &ConfigRepair, location: &str) -> Result<()> {
    if g.json {
        return print_summary_json(r);
    }
    if g.quiet {
        return Ok(());
    }
    let would = if r.dry_run { "would be " } else { "" };
    match r.source {
        ConfigSource::Intact => {
            outln!("the config of {location} is sound; nothing to do")?;
        }
        ConfigSource::CachedCopy => {
            let from = r
                .cached_copy
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            outln!(
                "config {would}written back from the copy kept in {from}: repository {} as it was",
                r.repository_id.short()
            )?;
        }
        ConfigSource::New => {
            let c = &r.config.chunker;
            outln!(
                "config {would}written anew: repository id {} (new), chunk sizes {}/{}/{}, compression level {}",
                r.repository_id.short(),
                c.min,
                c.avg,
                c.max,
                r.config.zstd_level
            )?;
            outln!(
                "no local cache kept a copy of the original config, so its settings are the defaults or those given{}: chunk sizes other than the original's only make the next backups store their data once more; nothing is lost either way",
                if r.dry_run {
                    " (give --chunk-min, --chunk-avg, --chunk-max and --compression-level if the repository was made with others)"
                } else {
                    ""
                }
            )?;
        }
    }
    if r.replaced_damaged {
        let done = if r.dry_run { "would be" } else { "was" };
        outln!("the damaged config {done} replaced")?;
    }
    if let Some(lock) = &r.config.object_lock {
        outln!("object lock recorded: {lock}")?;
    }
    Ok(())
}

fn run_index(g: &Global, args: &IndexArgs) -> Result<i32> {
    let repo = g.open()?;
    let opts = IndexRepairOptions {
        read_all_packs: args.read_all_packs,
        dry_run: args.dry_run,
    };
    let lock = if args.dry_run {
        None
    } else {
        super::install_interrupt()?;
        Some(cairn::repo::lock::acquire(&repo, "repair index")?)
    };
    let meter = Meter::items(g.progress(), "repair index");
    let result = repair_index(&repo, opts, &meter);
    meter.finish();
    if let Some(lock) = lock {
        lock.release()?;
    }
    let mut report = result?;
    report.requests = repo.request_stats();
    regardless(print_index(g, &report))?;
    Ok(EXIT_OK)
}

fn print_index(g: &Global, r: &IndexRepairReport) -> Result<()> {
    if g.json {
        return print_summary_json(r);
    }
    for f in &r.findings {
        errln!("{}: {}: {}", f.object, f.error, f.action);
    }
    if g.quiet {
        return Ok(());
    }
    outln!(
        "{} packs in the store: {} taken from the index, {} headers read, {} read whole",
        r.packs,
        r.packs - r.packs_header_read - r.packs_read_whole,
        r.packs_header_read,
        r.packs_read_whole
    )?;
    if !r.changed {
        return outln!(
            "the index lists every pack the store holds, and nothing else: nothing to do"
        );
    }
    let would = if r.dry_run { "would be " } else { "" };
    outln!(
        "index files: {} read ({} damaged), {} {would}written, {} {would}removed",
        r.index_files_read,
        r.index_files_damaged,
        r.index_files_written,
        r.index_files_removed
    )?;
    let salvaged = if r.dry_run {
        format!(
            "{} blobs would be salvaged into new packs",
            r.blobs_salvaged
        )
    } else {
        format!(
            "{} blobs salvaged into {} new packs, {}",
            r.blobs_salvaged,
            r.new_packs,
            HumanBytes(r.new_pack_bytes)
        )
    };
    outln!(
        "packs: {} {would}indexed ({} newly), {} missing from the store, {} damaged ({salvaged}; {} blobs lost)",
        r.packs_indexed,
        r.packs_added,
        r.packs_missing,
        r.packs_damaged,
        r.blobs_lost
    )?;
    if r.dry_run {
        outln!("dry run: nothing was changed")?;
    } else if r.blobs_lost > 0 {
        outln!(
            "next: back up the same paths again (their sources may still hold what was lost), then `cairn repair snapshots` for what they do not"
        )?;
    }
    Ok(())
}

fn run_snapshots(g: &Global, args: &SnapshotsArgs) -> Result<i32> {
    let repo = g.open()?;
    let opts = SnapshotRepairOptions {
        forget: args.forget,
        dry_run: args.dry_run,
    };
    let meter = Meter::items(g.progress(), "repair snapshots");
    let report = repair_snapshots(&repo, opts, &meter)?;
    meter.finish();
    regardless(print_snapshots(g, &report))?;
    Ok(EXIT_OK)
}

fn print_snapshots(g: &Global, r: &SnapshotRepairReport) -> Result<()> {
    if g.json {
        return print_summary_json(r);
    }
    let would = if r.dry_run { "would be " } else { "" };
    // What becomes of an object that only --forget removes.
    let fate = |removed: bool| match (removed, r.forget, r.dry_run) {
        (true, _, _) => "; removed",
        (false, true, true) => "; would be removed",
        _ => "; `cairn repair snapshots --forget` removes it",
    };
    for s in &r.repaired {
        let short = &s.original[..8.min(s.original.len())];
        if s.lost {
            errln!(
                "snapshot {short}: its root tree is lost, nothing of it can be restored{}",
                fate(s.forgotten)
            );
            continue;
        }
        for m in &s.mended {
            match (&m.renamed_to, m.kind) {
                (Some(to), _) => outln!(
                    "snapshot {short}: {}: lost chunks left out, {would}renamed {to}",
                    m.path
                )?,
                (None, _) => outln!(
                    "snapshot {short}: {}/: its content is lost, {would}kept empty",
                    m.path
                )?,
            }
        }
        match &s.repaired {
            Some(new) => outln!(
                "snapshot {short} repaired as {} (tagged `repaired`){}",
                &new[..8.min(new.len())],
                if s.forgotten {
                    "; the original removed"
                } else {
                    ""
                }
            )?,
            None => outln!("snapshot {short} {would}repaired")?,
        }
    }
    for u in &r.unreadable {
        errln!(
            "snapshots/{u} cannot be read{}",
            fate(r.unreadable_removed > 0)
        );
    }
    if !g.quiet {
        outln!(
            "{} snapshots, {} need lost data{}",
            r.snapshots,
            r.damaged,
            if r.dry_run {
                "; dry run: nothing was changed"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

fn print_summary_json<T: serde::Serialize>(r: &T) -> Result<()> {
    let mut v = serde_json::to_value(r).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("message_type".into(), "summary".into());
    }
    print_json(&v)
}
