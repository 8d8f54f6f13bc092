//! A file's time as `ls` and `find` show it: local date and time, or RFC 3339 in JSON.

use cairn::format::tree::{FileTime, file_time_parts, file_time_utc};
use chrono::{DateTime, Local};

fn local(t: FileTime) -> Option<DateTime<Local>> {
    file_time_utc(t).map(|t| t.with_timezone(&Local))
}

/// Seconds since the epoch, `@N.NNNNNNNNN` as `date -d` takes it: for times chrono
/// cannot show (beyond about 262,000 years, which a file system holds but no calendar
/// needs).
fn epoch_seconds(t: FileTime) -> String {
    match file_time_parts(t) {
        (secs, 0) => format!("@{secs}"),
        // Before the epoch the fraction counts towards it: -1.25 s is (-2 s, +0.75 s).
        (secs, nsec) if secs < 0 => format!("@-{}.{:09}", -(secs + 1), 1_000_000_000 - nsec),
        (secs, nsec) => format!("@{secs}.{nsec:09}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn::format::tree::file_time;

    #[test]
    fn times_past_the_calendar_keep_their_nanoseconds() {
        let far = 1i64 << 62;
        assert_eq!(
            text(file_time(far, 999_999_999)),
            format!("@{far}.999999999")
        );
        assert_eq!(rfc3339(file_time(far, 0)), format!("@{far}"));
        assert_eq!(text(file_time(-far, 0)), format!("@-{far}"));
        assert_eq!(
            text(file_time(-far - 1, 750_000_000)),
            format!("@-{far}.250000000")
        );
    }
}
