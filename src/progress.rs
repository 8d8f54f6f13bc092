//! Progress bars on a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress should be drawn: stderr is a terminal and the user did not ask for
/// quiet or JSON output.
pub fn wanted(quiet: bool, json: bool) -> bool {
    !quiet && !json && std::io::stderr().is_terminal()
}

const COUNTING: &str =
    "{spinner} {prefix} [{elapsed_precise}] {msg} {bytes} {binary_bytes_per_sec} (counting…)";
const WITH_TOTAL: &str = "{spinner} {prefix} [{elapsed_precise}] {msg} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_bar}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A byte-counting bar, hidden when `show` is false. Until `total_known` is called it
/// shows bytes, rate and the message (files done), without a total or ETA.
pub fn bytes_bar(show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(style(COUNTING));
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Switches the bar to show the total and an ETA, once the total is final.
pub fn total_known(bar: &ProgressBar, total: u64) {
    if bar.is_hidden() {
        return;
    }
    bar.set_length(total);
    bar.set_style(style(WITH_TOTAL));
}

/// A bar counting items (snapshots, packs), hidden when `show` is false. The message says
/// which phase runs.
pub fn count_bar(show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(style(
        "{spinner} {prefix} [{elapsed_precise}] {msg} {pos}/{len} {wide_bar}",
    ));
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
