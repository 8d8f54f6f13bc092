//! A file's time as `ls` and `find` show it: local date and time, or RFC 3339 in JSON.

use cairn::format::tree::{FileTime, file_time_parts, file_time_utc};
use chrono::{DateTime, Local};

fn local(t: FileTime) -> Option<DateTime<Local>> {
    file_time_utc(t).map(|t| t.with_timezone(&Local))
}

/// Seconds since the epoch, `@N` as `date -d` takes it: for times chrono cannot show
/// (beyond about 262,000 years, which only a forged tree holds).
fn epoch_seconds(t: FileTime) -> String {
    format!("@{}", file_time_parts(t).0)
}

/// `YYYY-MM-DD HH:MM:SS` in local time.
pub fn text(t: FileTime) -> String {
    local(t).map_or_else(
        || epoch_seconds(t),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// RFC 3339 in local time, with nanoseconds when the time has them.
pub fn rfc3339(t: FileTime) -> String {
    local(t).map_or_else(|| epoch_seconds(t), |t| t.to_rfc3339())
}
