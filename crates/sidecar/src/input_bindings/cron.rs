//! `bindings.cron`: an input binding that fires on a schedule, read as
//! components-contrib's cron binding reads it (robfig/cron v3 with
//! optional seconds and descriptors), in the sidecar's local time zone.
//!
//! A schedule is one of:
//! - five fields (`minute hour day-of-month month day-of-week`) or six
//!   (seconds first): each `*` or `?`, a number, a range `a-b`, a step
//!   `*/n`, `a/n` or `a-b/n`, or a comma list of those; months and days
//!   of the week may be names (`JAN`, `mon`, case aside). When neither
//!   day field is `*`, a day matches either, as cron has it;
//! - a descriptor: `@yearly` (`@annually`), `@monthly`, `@weekly`,
//!   `@daily` (`@midnight`), `@hourly`;
//! - `@every <duration>`, a Go duration (`15s`, `1m30s`, `1.5h`), in whole
//!   seconds of at least one, counted from the second it was read.
//!
//! Each firing sends the app an event with no data and the metadata
//! `timeZone` and `readTimeUTC`, as daprd's. Firings do not wait for the
//! app: a slow app can have several in flight, as under daprd.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use futures_util::StreamExt;

use super::{Events, InputBinding, InputBindingError, InputEvent};

/// The bit a field gets from `*` or `?` (it decides how the two day
/// fields combine).
const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `@every`: a fixed delay.
    Every(Duration),
    /// Fields (or a descriptor, which is fields).
    Fields(Fields),
}

/// The times a field-based schedule fires at: one bit set per value
/// allowed, plus [`STAR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    second: u64,
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
}

/// One field's bounds, and the names its values may have.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECONDS: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const MINUTES: Bounds = SECONDS;
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DAYS_OF_MONTH: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAYS_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Bounds {
    /// Every value, as `*` gives.
    fn all(&self) -> u64 {
        bits(self.min, self.max, 1) | STAR
    }
}

/// The bits of `min..=max` by `step`.
fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |bits, value| bits | (1 << value))
}

impl Schedule {
    /// Parses `spec`, or says what is wrong with it.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(format!(
                "a time zone in the schedule ({spec}) is not supported: schedules run in the sidecar's local time zone"
            ));
        }
        if let Some(descriptor) = spec.strip_prefix('@') {
            return Schedule::descriptor(descriptor);
        }
        let mut fields: Vec<&str> = spec.split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => return Err(format!("expected 5 to 6 fields, found {n}: {spec}")),
        }
        Ok(Schedule::Fields(Fields {
            second: field(fields[0], &SECONDS)?,
            minute: field(fields[1], &MINUTES)?,
            hour: field(fields[2], &HOURS)?,
            day_of_month: field(fields[3], &DAYS_OF_MONTH)?,
            month: field(fields[4], &MONTHS)?,
            day_of_week: field(fields[5], &DAYS_OF_WEEK)?,
        }))
    }

    fn descriptor(descriptor: &str) -> Result<Schedule, String> {
        if let Some(delay) = descriptor.strip_prefix("every ") {
            let delay = go_duration(delay.trim())
                .map_err(|e| format!("failed to parse duration @{descriptor}: {e}"))?;
            // Whole seconds, at least one, as robfig's `Every`.
            let delay = Duration::from_secs(delay.as_secs().max(1));
            return Ok(Schedule::Every(delay));
        }
        let midnight = |day_of_month, month, day_of_week| Fields {
            second: 1,
            minute: 1,
            hour: 1,
            day_of_month,
            month,
            day_of_week,
        };
        let fields = match descriptor {
            "yearly" | "annually" => midnight(1 << 1, 1 << 1, DAYS_OF_WEEK.all()),
            "monthly" => midnight(1 << 1, MONTHS.all(), DAYS_OF_WEEK.all()),
            "weekly" => midnight(DAYS_OF_MONTH.all(), MONTHS.all(), 1),
            "daily" | "midnight" => midnight(DAYS_OF_MONTH.all(), MONTHS.all(), DAYS_OF_WEEK.all()),
            "hourly" => Fields {
                hour: HOURS.all(),
                ..midnight(DAYS_OF_MONTH.all(), MONTHS.all(), DAYS_OF_WEEK.all())
            },
            _ => return Err(format!("unrecognized descriptor: @{descriptor}")),
        };
        Ok(Schedule::Fields(fields))
    }

    /// The first time after `after` the schedule fires; `None` if it never
    /// does within five years (`0 0 30 2 *`, the 30th of February).
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        match self {
            Schedule::Every(delay) => {
                let whole = after.with_nanosecond(0).unwrap_or(after);
                Some(whole + *delay)
            }
            Schedule::Fields(fields) => {
                let mut from = after.naive_local();
                // A wall-clock time a DST change skips fires at the next
                // one that exists.
                for _ in 0..1_000 {
                    let next = fields.next_after(from)?;
                    if let Some(time) = Local.from_local_datetime(&next).earliest() {
                        return Some(time);
                    }
                    from = next;
                }
                None
            }
        }
    }
}

impl Fields {
    fn day_matches(&self, t: NaiveDateTime) -> bool {
        let day_of_month = 1 << t.day() & self.day_of_month != 0;
        let day_of_week = 1 << t.weekday().num_days_from_sunday() & self.day_of_week != 0;
        if self.day_of_month & STAR != 0 || self.day_of_week & STAR != 0 {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        }
    }

    /// The next wall-clock time after `after` that matches, by robfig's
    /// search: the first field that does not match moves on (zeroing those
    /// below it), and a field that wraps starts the search again.
    fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = after.with_nanosecond(0)? + chrono::Duration::seconds(1);
        let year_limit = t.year() + 5;
        let mut zeroed = false;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while 1 << t.month() & self.month == 0 {
                // From here on t is the first of a month at midnight.
                zeroed = true;
                let (year, month) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
                if month == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(t) {
                if !zeroed {
                    zeroed = true;
                    t = t.date().and_hms_opt(0, 0, 0)?;
                }
                t += chrono::Duration::days(1);
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while 1 << t.hour() & self.hour == 0 {
                if !zeroed {
                    zeroed = true;
                    t = t.date().and_hms_opt(t.hour(), 0, 0)?;
                }
                t += chrono::Duration::hours(1);
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while 1 << t.minute() & self.minute == 0 {
                if !zeroed {
                    zeroed = true;
                    t = t.with_second(0)?;
                }
                t += chrono::Duration::minutes(1);
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while 1 << t.second() & self.second == 0 {
                zeroed = true;
                t += chrono::Duration::seconds(1);
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }
}

/// One field: a comma list of ranges, each `*`/`?`/`a`/`a-b`, with an
/// optional `/step`.
fn field(text: &str, bounds: &Bounds) -> Result<u64, String> {
    text.split(',')
        .try_fold(0, |all, range| Ok(all | self::range(range, bounds)?))
}

fn range(text: &str, bounds: &Bounds) -> Result<u64, String> {
    let (span, step) = match text.split_once('/') {
        Some((span, step)) if !step.contains('/') => (span, Some(step)),
        Some(_) => return Err(format!("too many slashes: {text}")),
        None => (text, None),
    };
    let (start, mut end, mut extra) = if span == "*" || span == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let mut ends = span.split('-');
        let start = number_or_name(ends.next().unwrap_or_default(), bounds)?;
        let end = match (ends.next(), ends.next()) {
            (None, _) => start,
            (Some(end), None) => number_or_name(end, bounds)?,
            (Some(_), Some(_)) => return Err(format!("too many hyphens: {text}")),
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(step) => {
            let step = number(step)?;
            // `a/n` runs to the field's end.
            if !span.contains('-') {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < bounds.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {text}",
            bounds.min
        ));
    }
    if end > bounds.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {text}",
            bounds.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {text}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {text}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn number_or_name(text: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    match bounds.names.iter().position(|&name| name == lower) {
        // Months count from 1, days of the week from 0 (Sunday).
        Some(index) => Ok(bounds.min + index as u32),
        None => number(text),
    }
}

fn number(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {text}")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("number too large: {text}")),
        Err(e) => Err(format!("failed to parse int from {text}: {e}")),
    }
}

/// A Go duration (`time.ParseDuration`: `15s`, `1m30s`, `1.5h`), which
/// must have a unit and not be negative.
fn go_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!("a negative duration is not a delay: \"{text}\""));
    }
    if text != "0" && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("time: missing unit in duration \"{text}\""));
    }
    service_kit::units::parse_duration(text)
}

/// A `bindings.cron` component.
pub struct CronBinding {
    schedule: Schedule,
}

impl CronBinding {
    /// Reads the component's `schedule` (required).
    pub fn open(properties: &HashMap<String, String>) -> Result<CronBinding, String> {
        let spec = properties
            .get("schedule")
            .filter(|s| !s.trim().is_empty())
            .ok_or("schedule not set")?;
        let schedule =
            Schedule::parse(spec).map_err(|e| format!("invalid schedule format '{spec}': {e}"))?;
        Ok(CronBinding { schedule })
    }
}

/// The `timeZone` daprd reports: the name Go gives the local time zone,
/// whatever it is.
const TIME_ZONE: &str = "Local";

/// `time` as Go's `Time.String()` writes it in UTC
/// (`2026-12-07 18:52:48.123456789 +0000 UTC`).
fn go_time_string(time: DateTime<Utc>) -> String {
    let nanos = time.nanosecond() % 1_000_000_000;
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{}{fraction} +0000 UTC", time.format("%Y-%m-%d %H:%M:%S"))
}

#[async_trait::async_trait]
impl InputBinding for CronBinding {
    async fn read(&self) -> Result<Events, InputBindingError> {
        let schedule = self.schedule.clone();
        let firings = futures_util::stream::unfold(Local::now(), move |after| {
            let schedule = schedule.clone();
            async move {
                let next = schedule.next_after(after)?;
                let wait = (next - Local::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait).await;
                // Firings missed while the process was stopped are not
                // made up in a burst: the next one is after now, as
                // robfig/cron schedules it.
                Some((next, Local::now().max(next)))
            }
        });
        Ok(firings
            .map(|_| InputEvent {
                data: bytes::Bytes::new(),
                metadata: HashMap::from([
                    ("timeZone".to_string(), TIME_ZONE.to_string()),
                    ("readTimeUTC".to_string(), go_time_string(Utc::now())),
                ]),
                done: None,
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        let Schedule::Fields(fields) = Schedule::parse(spec).unwrap() else {
            panic!("{spec} is not field-based");
        };
        fields
            .next_after(at(after))
            .map(|t| t.format("%Y-%m-%d %H:%M:%S %a").to_string())
    }

    #[test]
    fn fields_fire_when_robfig_cron_fires() {
        let cases = [
            // Five fields: at second 0.
            (
                "*/15 * * * *",
                "2026-12-07 18:52:48",
                "2026-12-07 19:00:00 Mon",
            ),
            (
                "0 9 * * MON-FRI",
                "2026-12-05 10:00:00",
                "2026-12-07 09:00:00 Mon",
            ),
            // Six fields: seconds first.
            (
                "15 * * * * *",
                "2026-12-07 18:52:48",
                "2026-12-07 18:53:15 Mon",
            ),
            (
                "*/20 * * * * *",
                "2026-12-07 18:52:40",
                "2026-12-07 18:53:00 Mon",
            ),
            (
                "5/20 * * * * *",
                "2026-12-07 18:52:46",
                "2026-12-07 18:53:05 Mon",
            ),
            (
                "0 0 0 1 jan,Jul ?",
                "2026-12-07 18:52:48",
                "2027-01-01 00:00:00 Fri",
            ),
            (
                "0 30 8-10/2 * * *",
                "2026-12-07 09:00:00",
                "2026-12-07 10:30:00 Mon",
            ),
            // Both day fields named: either matches (the 13th or a Friday).
            (
                "0 0 13 * 5",
                "2026-12-07 00:00:00",
                "2026-12-11 00:00:00 Fri",
            ),
            // One of them `*`: the other decides alone.
            (
                "0 0 13 * *",
                "2026-12-07 00:00:00",
                "2026-12-13 00:00:00 Sun",
            ),
            (
                "0 0 * * 5",
                "2026-12-07 00:00:00",
                "2026-12-11 00:00:00 Fri",
            ),
            (
                "0 0 29 2 *",
                "2026-12-07 00:00:00",
                "2028-02-29 00:00:00 Tue",
            ),
            (
                "59 59 23 31 12 *",
                "2026-12-31 23:59:59",
                "2027-12-31 23:59:59 Fri",
            ),
        ];
        for (spec, after, expected) in cases {
            assert_eq!(
                next(spec, after).as_deref(),
                Some(expected),
                "{spec} after {after}"
            );
        }
        assert_eq!(next("0 0 30 2 *", "2026-12-07 00:00:00"), None);
    }

    #[test]
    fn descriptors_are_robfigs() {
        let cases = [
            ("@yearly", "2027-01-01 00:00:00 Fri"),
            ("@annually", "2027-01-01 00:00:00 Fri"),
            ("@monthly", "2027-01-01 00:00:00 Fri"),
            ("@weekly", "2026-12-13 00:00:00 Sun"),
            ("@daily", "2026-12-08 00:00:00 Tue"),
            ("@midnight", "2026-12-08 00:00:00 Tue"),
            ("@hourly", "2026-12-07 19:00:00 Mon"),
        ];
        for (spec, expected) in cases {
            assert_eq!(
                next(spec, "2026-12-07 18:52:48").as_deref(),
                Some(expected),
                "{spec}"
            );
        }
        let every = |spec| match Schedule::parse(spec) {
            Ok(Schedule::Every(delay)) => delay,
            other => panic!("{spec}: {other:?}"),
        };
        assert_eq!(every("@every 15s"), Duration::from_secs(15));
        assert_eq!(every("@every 1h30m"), Duration::from_secs(5_400));
        assert_eq!(every("@every 1.5m"), Duration::from_secs(90));
        assert_eq!(every("@every 2500ms"), Duration::from_secs(2));
        assert_eq!(
            every("@every 10ms"),
            Duration::from_secs(1),
            "at least a second"
        );
        let after = Local.with_ymd_and_hms(2026, 12, 7, 18, 52, 48).unwrap()
            + chrono::Duration::milliseconds(700);
        assert_eq!(
            Schedule::parse("@every 15s").unwrap().next_after(after),
            Some(Local.with_ymd_and_hms(2026, 12, 7, 18, 53, 3).unwrap()),
            "counted from the whole second"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected 5 to 6 fields, found 4: * * * *"),
            ("* * * * * * *", "expected 5 to 6 fields, found 7"),
            ("60 * * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "* 5-2 * * *",
                "beginning of range (5) beyond end of range (2): 5-2",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("x * * * *", "failed to parse int from x"),
            ("* * * foo *", "failed to parse int from foo"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("@every 15", "missing unit"),
            ("@every 3d", "unknown unit `d`"),
            ("@every -5s", "negative duration"),
            ("TZ=Europe/Paris * * * * *", "a time zone in the schedule"),
        ];
        for (spec, expected) in cases {
            let error = Schedule::parse(spec).unwrap_err();
            assert!(error.contains(expected), "{spec:?}: {error}");
        }
        let error = CronBinding::open(&HashMap::new()).err().unwrap();
        assert_eq!(error, "schedule not set");
        let error = CronBinding::open(&HashMap::from([("schedule".into(), "* *".into())]))
            .err()
            .unwrap();
        assert_eq!(
            error,
            "invalid schedule format '* *': expected 5 to 6 fields, found 2: * *"
        );
    }

    #[test]
    fn read_time_is_written_as_go_writes_it() {
        let time = Utc.with_ymd_and_hms(2026, 12, 7, 18, 52, 48).unwrap();
        assert_eq!(go_time_string(time), "2026-12-07 18:52:48 +0000 UTC");
        let time = time + chrono::Duration::microseconds(123_450);
        assert_eq!(go_time_string(time), "2026-12-07 18:52:48.12345 +0000 UTC");
    }
}
