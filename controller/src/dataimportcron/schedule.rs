//! A DataImportCron's `schedule`: standard 5-field cron syntax as Kubernetes CronJobs accept it
//! (minute, hour, day of month, month, day of week; `*`, `?`, ranges, steps, lists, month and
//! day names, and the `@hourly`…`@yearly` shorthands), parsed once and asked for the first
//! matching minute after a time. Times are UTC. Pure.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};

/// Why a schedule was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "schedule {schedule:?} is not valid cron syntax: {why}; use 5 fields (minute hour \
     day-of-month month day-of-week), e.g. \"0 */6 * * *\", or @hourly, @daily, @weekly, \
     @monthly, @yearly"
)]
pub struct ScheduleError {
    pub schedule: String,
    pub why: String,
}

/// The sets of values each field allows, as bit masks (bit `n` set: value `n` allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Day of month or day of week was `*`: a day must then match both fields (one of which
    /// allows every day); otherwise either field matching is enough (Vixie cron's rule).
    day_star: bool,
}

/// One field's bounds and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// How far ahead a match is looked for: a schedule that matches nothing within it (the 30th
/// of February) never fires.
const HORIZON_YEARS: i16 = 8;

impl Schedule {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let bad = |why: String| ScheduleError {
            schedule: text.to_owned(),
            why,
        };
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(bad(format!(
                    "{other} is not a shorthand this controller knows"
                )));
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(bad(format!("it has {} fields, not 5", fields.len())));
        };
        let (days_of_month, dom_star) = parse_field(dom, &DAY_OF_MONTH).map_err(&bad)?;
        let (days_of_week, dow_star) = parse_field(dow, &DAY_OF_WEEK).map_err(&bad)?;
        Ok(Schedule {
            minutes: parse_field(minute, &MINUTE).map_err(&bad)?.0,
            hours: parse_field(hour, &HOUR).map_err(&bad)?.0,
            days_of_month,
            months: parse_field(month, &MONTH).map_err(&bad)?.0,
            days_of_week,
            day_star: dom_star || dow_star,
        })
    }

    /// The first whole minute strictly after `after` that the schedule matches, or `None` if
    /// it matches none in the next [`HORIZON_YEARS`] years.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let utc = after.to_zoned(TimeZone::UTC).datetime();
        let mut t = utc
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = utc.year().checked_add(HORIZON_YEARS)?;
        while t.year() <= limit {
            if !has(self.months, t.month()) {
                t = first_of_next_month(t.date())?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.to_datetime(Default::default());
                continue;
            }
            if !has(self.hours, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(self.minutes, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return t.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp());
        }
        None
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = has(self.days_of_month, date.day());
        let dow = has(
            self.days_of_week,
            i64::from(date.weekday().to_sunday_zero_offset()),
        );
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn has(mask: u64, value: impl Into<i64>) -> bool {
    let v = value.into();
    (0..64).contains(&v) && mask & (1 << v) != 0
}

fn first_of_next_month(date: Date) -> Option<DateTime> {
    let first = date.first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(Default::default()))
}

/// One field: its mask, and whether it was a bare `*` or `?` (which matters for days).
fn parse_field(text: &str, field: &Field) -> Result<(u64, bool), String> {
    let mut mask = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} of the {} is not a number", field.name))?;
                if step == 0 || step > field.max {
                    return Err(format!(
                        "step {step} of the {} is out of range 1-{}",
                        field.name, field.max
                    ));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star |= step.is_none();
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field)?, value(b, field)?)
        } else {
            let v = value(range, field)?;
            // "N/step" means from N to the end.
            (v, if step.is_some() { field.max } else { v })
        };
        if start > end {
            return Err(format!(
                "range {start}-{end} of the {} runs backwards",
                field.name
            ));
        }
        let step = step.unwrap_or(1);
        let mut v = start;
        while v <= end {
            mask |= 1 << v;
            v += step;
        }
    }
    Ok((mask, star))
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        return Ok(field.min + i as u32);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a valid {}", field.name))?;
    if v < field.min || v > field.max {
        return Err(format!(
            "{v} is out of the {}'s range {}-{}",
            field.name, field.min, field.max
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(schedule: &str, after: &str) -> Option<String> {
        Schedule::parse(schedule)
            .expect("parses")
            .next_after(at(after))
            .map(|t| t.to_string())
    }

    #[test]
    fn every_minute_fires_on_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", "2026-12-07T14:41:53Z").as_deref(),
            Some("2026-12-07T14:42:00Z")
        );
        // Strictly after: a time on the minute moves on to the next.
        assert_eq!(
            next("* * * * *", "2026-12-07T14:42:00Z").as_deref(),
            Some("2026-12-07T14:43:00Z")
        );
    }

    #[test]
    fn steps_ranges_and_lists_combine() {
        let table = [
            (
                "*/15 * * * *",
                "2026-01-01T10:16:00Z",
                "2026-01-01T10:30:00Z",
            ),
            (
                "5/20 * * * *",
                "2026-01-01T10:26:00Z",
                "2026-01-01T10:45:00Z",
            ),
            (
                "0 9-17/4 * * *",
                "2026-01-01T13:00:00Z",
                "2026-01-01T17:00:00Z",
            ),
            (
                "0 9-17/4 * * *",
                "2026-01-01T17:00:00Z",
                "2026-01-02T09:00:00Z",
            ),
            (
                "10,40 2,3 * * *",
                "2026-01-01T02:40:00Z",
                "2026-01-01T03:10:00Z",
            ),
            (
                "0 0 1 */3 *",
                "2026-02-10T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ),
            // Year and month rollover.
            ("0 0 1 1 *", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            // Leap day.
            (
                "0 12 29 2 *",
                "2026-03-01T00:00:00Z",
                "2028-02-29T12:00:00Z",
            ),
        ];
        for (s, after, want) in table {
            assert_eq!(next(s, after).as_deref(), Some(want), "{s} after {after}");
        }
    }

    #[test]
    fn names_and_shorthands_mean_what_cronjobs_mean() {
        // 2026-12-07 is a Monday.
        assert_eq!(
            next("30 6 * * SAT,sun", "2026-12-07T00:00:00Z").as_deref(),
            Some("2026-12-12T06:30:00Z")
        );
        assert_eq!(
            next("0 0 1 jul-aug *", "2026-12-07T00:00:00Z").as_deref(),
            Some("2027-07-01T00:00:00Z")
        );
        assert_eq!(Schedule::parse("@daily"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@midnight"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@hourly"), Schedule::parse("0 * * * *"));
        assert_eq!(Schedule::parse("@weekly"), Schedule::parse("0 0 * * 0"));
        assert_eq!(Schedule::parse("@monthly"), Schedule::parse("0 0 1 * *"));
        assert_eq!(Schedule::parse("@annually"), Schedule::parse("0 0 1 1 *"));
        assert_eq!(Schedule::parse("0 0 ? * *"), Schedule::parse("0 0 * * *"));
    }

    #[test]
    fn restricted_day_fields_match_either_and_a_star_requires_both() {
        // Day 13 or any Friday: 2026-12-11 is the Friday before the 13th.
        assert_eq!(
            next("0 0 13 * 5", "2026-12-07T00:00:00Z").as_deref(),
            Some("2026-12-11T00:00:00Z")
        );
        // Any day of month, but only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-12-07T00:00:00Z").as_deref(),
            Some("2026-12-11T00:00:00Z")
        );
        // A stepped day of month is not a star: either field matches.
        assert_eq!(
            next("0 0 */2 * 1", "2026-12-07T01:00:00Z").as_deref(),
            Some("2026-12-09T00:00:00Z")
        );
    }

    #[test]
    fn a_schedule_that_never_matches_has_no_next_time() {
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let table = [
            ("* * * *", "4 fields"),
            ("* * * * * *", "6 fields"),
            ("60 * * * *", "out of the minute's range 0-59"),
            ("* 24 * * *", "hour's range"),
            ("* * 0 * *", "day of month's range 1-31"),
            ("* * * 13 *", "month's range"),
            ("* * * * 7", "day of week's range 0-6"),
            ("*/0 * * * *", "step 0"),
            ("10-5 * * * *", "runs backwards"),
            ("* * * foo *", "not a valid month"),
            ("@every 5m", "shorthand"),
            ("", "0 fields"),
        ];
        for (s, want) in table {
            let err = Schedule::parse(s).expect_err(s).to_string();
            assert!(err.contains(want), "{s:?}: {err}");
            assert!(err.contains("5 fields"), "{err}");
        }
    }
}
