//! Progress as the command line shows it: a bar on stderr when it is a terminal, and the
//! counts that `--json` status lines report. Implements the library's `Progress`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, WeakProgressBar};

/// The bar on screen, if any. A line written to stderr while a bar is drawn would be cut
/// by its next redraw; written through [`write_stderr`], the bar steps aside for it.
static DRAWN: Mutex<Option<WeakProgressBar>> = Mutex::new(None);

/// Writes `bytes` to stderr, above the bar when one is drawn.
pub fn write_stderr(bytes: &[u8]) -> std::io::Result<()> {
    let bar = DRAWN
        .lock()
        .ok()
        .and_then(|drawn| drawn.as_ref().and_then(WeakProgressBar::upgrade));
    let write = || std::io::stderr().lock().write_all(bytes);
    match bar {
        Some(bar) if !bar.is_finished() => bar.suspend(write),
        _ => write(),
    }
}

/// Stderr for the log lines of `tracing` (warnings of the library), through
/// [`write_stderr`]: each event is formatted whole and written in one call.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Whether a bar should be drawn: stderr is a terminal and the user did not ask for quiet
/// or JSON output.
pub fn bar_wanted(quiet: bool, json: bool) -> bool {
    !quiet && !json && std::io::stderr().is_terminal()
}

const BYTES_COUNTING: &str =
    "{spinner} {prefix} [{elapsed_precise}] {msg} {bytes} {binary_bytes_per_sec} (counting…)";
const BYTES_WITH_TOTAL: &str = "{spinner} {prefix} [{elapsed_precise}] {msg} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_bar}";
const ITEMS: &str = "{spinner} {prefix} [{elapsed_precise}] {msg} {pos}/{len} {wide_bar}";

/// The total's value while it is unknown.
const UNKNOWN: u64 = u64::MAX;

#[derive(Clone, Copy)]
enum Units {
    Bytes,
    Items,
}

/// One operation's progress: counts, and a bar when one is drawn.
pub struct Meter {
    bar: Option<ProgressBar>,
    units: Units,
    /// Someone reads the counts (a bar, or `--json` status lines).
    watched: bool,
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Meter {
    fn new(show: bool, watched: bool, units: Units, what: &str) -> Meter {
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(match units {
                Units::Bytes => BYTES_COUNTING,
                Units::Items => ITEMS,
            }));
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut drawn) = DRAWN.lock() {
                *drawn = Some(bar.downgrade());
            }
            bar
        });
        Meter {
            bar,
            units,
            watched: watched || show,
            done: AtomicU64::new(0),
            total: AtomicU64::new(UNKNOWN),
            started: Instant::now(),
        }
    }

    /// Counts bytes; the bar shows bytes, rate and the message until the total is known,
    /// then the total and an ETA. `watched` is also true when status lines read the counts.
    pub fn bytes(show: bool, watched: bool, what: &str) -> Meter {
        Meter::new(show, watched, Units::Bytes, what)
    }

    /// Counts items (snapshots, packs); the message says which phase runs.
    pub fn items(show: bool, what: &str) -> Meter {
        Meter::new(show, false, Units::Items, what)
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total_so_far(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Relaxed)).filter(|t| *t != UNKNOWN)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Progress for Meter {
    fn watched(&self) -> bool {
        self.watched
    }

    fn start(&self, phase: &str, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_message(phase.to_string());
            bar.set_position(0);
            bar.set_length(total);
        }
    }

    fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    fn total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            if let Units::Bytes = self.units {
                bar.set_style(style(BYTES_WITH_TOTAL));
            }
        }
    }

    fn advance(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(units);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // A command that fails half-way leaves no bar standing above its error.
        self.finish();
    }
}
