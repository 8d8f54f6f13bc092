//! Which snapshots a retention policy keeps, with restic's semantics.
//!
//! Snapshots are grouped (by host and paths by default) and each group is judged on its own,
//! newest first. Every rule looks at every snapshot: `last N` keeps the N newest; the
//! calendar rules (hourly … yearly) keep the newest snapshot of each of the N most recent
//! hours, days, ISO weeks, months or years that have one, in local time; `within D` keeps
//! everything younger than D measured back from the group's newest snapshot; `tag T` keeps
//! every snapshot carrying T. A snapshot kept by any rule is kept, and the reasons are all
//! the rules that kept it.

use chrono::{DateTime, Datelike, Months, TimeZone, Timelike};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;

/// How many of a calendar rule's buckets to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Count {
    #[default]
    None,
    Some(u32),
    /// `-1` on the command line: every bucket.
    All,
}

impl Count {
    /// `-1` means unlimited, `0` means the rule is off.
    /// The count given to `option` (named in the error).
    pub fn from_arg(option: &str, n: i64) -> Result<Count> {
        match n {
            -1 => Ok(Count::All),
            0 => Ok(Count::None),
            n if n > 0 && n <= i64::from(u32::MAX) => Ok(Count::Some(n as u32)),
            n => Err(Error::Usage(format!(
                "{option} {n}: not a keep count; give a number of snapshots, or -1 for all"
            ))),
        }
    }

    fn is_set(self) -> bool {
        self != Count::None
    }
}

/// A span of time for `--keep-within`: years, months, days and hours, as restic writes it
/// (`1y6m`, `14d`, `2d12h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    pub fn parse(s: &str) -> Result<Span> {
        let bad = || {
            Error::Usage(format!(
                "--keep-within {s:?} is not a duration: write numbers with units y, m, d, h, like 1y6m or 14d or 36h"
            ))
        };
        let mut span = Span::default();
        let mut digits = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let slot = match c {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
            any = true;
        }
        if !digits.is_empty() || !any {
            return Err(bad());
        }
        Ok(span)
    }

    fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// `t` moved back by this span, in calendar terms (a month back from 31 March is the
    /// last day of February).
    fn before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let months = self.years.checked_mul(12)?.checked_add(self.months)?;
        t.clone()
            .checked_sub_months(Months::new(months))?
            .checked_sub_signed(chrono::Duration::days(i64::from(self.days)))?
            .checked_sub_signed(chrono::Duration::hours(i64::from(self.hours)))
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: Count,
    pub hourly: Count,
    pub daily: Count,
    pub weekly: Count,
    pub monthly: Count,
    pub yearly: Count,
    pub within: Span,
    pub tags: Vec<String>,
}

impl Policy {
    /// A policy with no rule would forget everything; callers refuse it.
    pub fn is_empty(&self) -> bool {
        ![
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .any(|c| c.is_set())
            && self.within.is_zero()
            && self.tags.is_empty()
    }
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub id: Id,
    pub keep: bool,
    /// The rules that kept it ("last", "daily", "within 30d", "tag important", …).
    pub reasons: Vec<String>,
}

/// One calendar (or count) rule while it walks a group.
struct Bucketer {
    name: &'static str,
    left: Count,
    last: Option<i64>,
    bucket: fn(&DateTime<chrono::FixedOffset>, usize) -> i64,
}

fn hour(t: &DateTime<chrono::FixedOffset>, _: usize) -> i64 {
    day(t, 0) * 100 + i64::from(t.hour())
}
fn day(t: &DateTime<chrono::FixedOffset>, _: usize) -> i64 {
    month(t, 0) * 100 + i64::from(t.day())
}
fn week(t: &DateTime<chrono::FixedOffset>, _: usize) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn month(t: &DateTime<chrono::FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}
fn year(t: &DateTime<chrono::FixedOffset>, _: usize) -> i64 {
    i64::from(t.year())
}
fn position(_: &DateTime<chrono::FixedOffset>, i: usize) -> i64 {
    i as i64
}

/// Applies `policy` to one group of snapshots. `tz` is the calendar's time zone (local
/// time for users, a fixed one for tests). Returns verdicts newest first.
pub fn apply<Tz: TimeZone>(policy: &Policy, group: &[(Id, &Snapshot)], tz: &Tz) -> Vec<Verdict> {
    let mut list: Vec<(Id, DateTime<chrono::FixedOffset>, &Snapshot)> = group
        .iter()
        .map(|(id, s)| {
            let t = tz.timestamp_nanos(s.time).fixed_offset();
            (*id, t, *s)
        })
        .collect();
    // Newest first; ties broken by id so the outcome never depends on listing order.
    list.sort_by(|a, b| b.2.time.cmp(&a.2.time).then(b.0.cmp(&a.0)));
    let mut rules = [
        ("last", policy.last, position as fn(&_, _) -> _),
        ("hourly", policy.hourly, hour),
        ("daily", policy.daily, day),
        ("weekly", policy.weekly, week),
        ("monthly", policy.monthly, month),
        ("yearly", policy.yearly, year),
    ]
    .map(|(name, left, bucket)| Bucketer {
        name,
        left,
        last: None,
        bucket,
    });
    let within_since = list
        .first()
        .filter(|_| !policy.within.is_zero())
        .and_then(|(_, newest, _)| policy.within.before(newest));
    let mut out = Vec::with_capacity(list.len());
    for (i, (id, t, snap)) in list.iter().enumerate() {
        let mut reasons = Vec::new();
        for tag in &policy.tags {
            if snap.tags.contains(tag) {
                reasons.push(format!("tag {tag}"));
            }
        }
        if let Some(since) = &within_since
            && t > since
        {
            reasons.push(format!("within {}", policy.within));
        }
        for rule in &mut rules {
            let open = match rule.left {
                Count::None => false,
                Count::Some(n) => n > 0,
                Count::All => true,
            };
            if !open {
                continue;
            }
            let b = (rule.bucket)(t, i);
            if rule.last != Some(b) {
                rule.last = Some(b);
                if let Count::Some(n) = &mut rule.left {
                    *n -= 1;
                }
                reasons.push(rule.name.to_string());
            }
        }
        out.push(Verdict {
            id: *id,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// What snapshots are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// `host,paths`, `tags`, `host`, or empty for one group.
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(Error::Usage(format!(
                        "--group-by: unknown field {other:?}; use host, paths and tags, comma-separated, or '' for one group"
                    )));
                }
            }
        }
        Ok(g)
    }
}

/// The key a snapshot is grouped under.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// Splits snapshots into groups, in a stable order (by key).
pub fn group(snapshots: &[(Id, Snapshot)], by: GroupBy) -> Vec<(GroupKey, Vec<(Id, &Snapshot)>)> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<(Id, &Snapshot)>> = Default::default();
    for (id, s) in snapshots {
        let key = GroupKey {
            host: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| s.paths.clone()),
            tags: by.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t
            }),
        };
        groups.entry(key).or_default().push((*id, s));
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    fn snap(time: DateTime<Utc>, tags: &[&str]) -> Snapshot {
        Snapshot {
            v: 1,
            time: time.timestamp_nanos_opt().expect("in range"),
            tree: Id::default(),
            paths: vec!["/data".into()],
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            summary: None,
            program: "test".into(),
        }
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, 0))
            .expect("valid date")
            .and_utc()
    }

    /// Snapshots named by their time; returns the kept names.
    fn kept(policy: &Policy, times: &[(DateTime<Utc>, &[&str])]) -> Vec<String> {
        let snaps: Vec<(Id, Snapshot)> = times
            .iter()
            .enumerate()
            .map(|(i, (t, tags))| {
                let mut id = Id::default();
                id.0[0] = i as u8;
                id.0[1] = (i >> 8) as u8;
                (id, snap(*t, tags))
            })
            .collect();
        let refs: Vec<(Id, &Snapshot)> = snaps.iter().map(|(i, s)| (*i, s)).collect();
        apply(policy, &refs, &Utc)
            .into_iter()
            .filter(|v| v.keep)
            .map(|v| {
                let s = &snaps.iter().find(|(i, _)| *i == v.id).expect("known").1;
                chrono::DateTime::from_timestamp_nanos(s.time)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .collect()
    }

    /// Two years of history: daily at 03:00 through 2024 and 2025 plus extra
    /// snapshots on a few days, so every bucket boundary is crossed.
    fn history() -> Vec<(DateTime<Utc>, &'static [&'static str])> {
        let mut out: Vec<(DateTime<Utc>, &[&str])> = Vec::new();
        let mut d = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
        let end = NaiveDate::from_ymd_opt(2025, 12, 31).expect("date");
        while d <= end {
            out.push((
                d.and_hms_opt(3, 0, 0).expect("time").and_utc(),
                if d == NaiveDate::from_ymd_opt(2024, 7, 4).expect("date") {
                    &["release"]
                } else {
                    &[]
                },
            ));
            d = d.succ_opt().expect("date");
        }
        // Several in the last day, two in one hour.
        out.push((at(2025, 12, 31, 9, 0), &[]));
        out.push((at(2025, 12, 31, 15, 10), &[]));
        out.push((at(2025, 12, 31, 15, 40), &[]));
        out
    }

    fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
        let mut p = Policy::default();
        f(&mut p);
        p
    }

    #[test]
    fn keep_last_takes_the_newest() {
        let k = kept(&policy(|p| p.last = Count::Some(3)), &history());
        assert_eq!(
            k,
            ["2025-12-31 15:40", "2025-12-31 15:10", "2025-12-31 09:00"]
        );
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_hour() {
        let k = kept(&policy(|p| p.hourly = Count::Some(4)), &history());
        assert_eq!(
            k,
            [
                "2025-12-31 15:40",
                "2025-12-31 09:00",
                "2025-12-31 03:00",
                "2025-12-30 03:00"
            ]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let k = kept(&policy(|p| p.daily = Count::Some(3)), &history());
        assert_eq!(
            k,
            ["2025-12-31 15:40", "2025-12-30 03:00", "2025-12-29 03:00"]
        );
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_end() {
        // 2025-12-29 (Mon) to 2026-01-04 is ISO week 2026-W01, so the last three days of
        // 2025 are one week; 2025-12-28 (Sun) closes week 2025-W52.
        let k = kept(&policy(|p| p.weekly = Count::Some(3)), &history());
        assert_eq!(
            k,
            ["2025-12-31 15:40", "2025-12-28 03:00", "2025-12-21 03:00"]
        );
        // Week 2024-W01 began on Monday 2024-01-01; 2023 has no snapshots.
        let all = kept(&policy(|p| p.weekly = Count::All), &history());
        assert_eq!(all.len(), 105, "{all:?}");
        assert_eq!(all.last().map(String::as_str), Some("2024-01-07 03:00"));
    }

    #[test]
    fn monthly_and_yearly_take_the_last_of_each_period() {
        let k = kept(&policy(|p| p.monthly = Count::Some(3)), &history());
        assert_eq!(
            k,
            ["2025-12-31 15:40", "2025-11-30 03:00", "2025-10-31 03:00"]
        );
        // February of a leap year ends on the 29th.
        let k = kept(&policy(|p| p.monthly = Count::Some(23)), &history());
        assert_eq!(k.len(), 23);
        assert_eq!(k[21], "2024-03-31 03:00");
        assert_eq!(k[22], "2024-02-29 03:00");
        let k = kept(&policy(|p| p.yearly = Count::Some(5)), &history());
        assert_eq!(k, ["2025-12-31 15:40", "2024-12-31 03:00"]);
    }

    #[test]
    fn rules_combine_and_a_snapshot_kept_twice_counts_once() {
        let p = policy(|p| {
            p.daily = Count::Some(7);
            p.weekly = Count::Some(4);
            p.monthly = Count::Some(12);
            p.yearly = Count::Some(2);
            p.tags = vec!["release".into()];
        });
        let k = kept(&p, &history());
        let expected = [
            // daily 7 (the first three of them are also weekly/monthly/yearly picks)
            "2025-12-31 15:40",
            "2025-12-30 03:00",
            "2025-12-29 03:00",
            "2025-12-28 03:00",
            "2025-12-27 03:00",
            "2025-12-26 03:00",
            "2025-12-25 03:00",
            // weekly: W51 and W50 (W52 ended on the 28th, kept above)
            "2025-12-21 03:00",
            "2025-12-14 03:00",
            // monthly 12 back to January 2025 (plus December)
            "2025-11-30 03:00",
            "2025-10-31 03:00",
            "2025-09-30 03:00",
            "2025-08-31 03:00",
            "2025-07-31 03:00",
            "2025-06-30 03:00",
            "2025-05-31 03:00",
            "2025-04-30 03:00",
            "2025-03-31 03:00",
            "2025-02-28 03:00",
            "2025-01-31 03:00",
            // yearly 2: 2024's last
            "2024-12-31 03:00",
            // tag
            "2024-07-04 03:00",
        ];
        assert_eq!(k, expected);
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot() {
        let k = kept(
            &policy(|p| p.within = Span::parse("2d").expect("span")),
            &history(),
        );
        // Newest is 2025-12-31 15:40; two days back is 2025-12-29 15:40.
        assert_eq!(
            k,
            [
                "2025-12-31 15:40",
                "2025-12-31 15:10",
                "2025-12-31 09:00",
                "2025-12-31 03:00",
                "2025-12-30 03:00"
            ]
        );
        let k = kept(
            &policy(|p| p.within = Span::parse("1y").expect("span")),
            &history(),
        );
        assert_eq!(k.last().map(String::as_str), Some("2025-01-01 03:00"));
    }

    #[test]
    fn reasons_name_every_rule() {
        let snaps = [(Id::default(), snap(at(2025, 1, 1, 0, 0), &["x"]))];
        let refs: Vec<(Id, &Snapshot)> = snaps.iter().map(|(i, s)| (*i, s)).collect();
        let p = policy(|p| {
            p.last = Count::Some(1);
            p.yearly = Count::Some(1);
            p.tags = vec!["x".into()];
        });
        let v = apply(&p, &refs, &Utc);
        assert_eq!(v[0].reasons, ["tag x", "last", "yearly"]);
    }

    #[test]
    fn spans_and_counts_parse_strictly() {
        assert_eq!(
            Span::parse("1y2m3d4h").expect("span"),
            Span {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        for bad in ["", "3", "d", "3w", "1d2", "-1d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Count::from_arg("--keep-last", -1).expect("count"),
            Count::All
        );
        assert!(Count::from_arg("--keep-last", -2).is_err());
        assert!(Policy::default().is_empty());
        assert!(GroupBy::parse("host,oops").is_err());
        assert_eq!(
            GroupBy::parse("").expect("group"),
            GroupBy {
                host: false,
                paths: false,
                tags: false
            }
        );
    }
}
