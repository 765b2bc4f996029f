//! When a reminder or a timer fires, read from its `dueTime`, `period` and
//! `ttl` as daprd reads them:
//!
//! - `dueTime`: RFC 3339, a Go duration (`10s`, `0h0m1s0ms0μs` as the SDKs
//!   write it) or an ISO 8601 duration (`PT10S`) from now; none is now.
//! - `period`: a Go duration or an ISO 8601 duration, optionally with
//!   repetitions (`R5/PT10S`: five firings in all); none fires once.
//! - `ttl`: RFC 3339, or a duration from the first firing; none never ends.
//!
//! ISO 8601 years and months (`P1Y`, `P2M`) are refused with a clear
//! error: they have no fixed length, and daprd's calendar arithmetic for
//! them is not reproduced here. The jobs API reads its durations here too
//! ([`crate::jobs`]).

use std::time::Duration;

use chrono::DateTime;

/// A reminder's or timer's firings, in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Times {
    /// The first firing.
    pub first: i64,
    /// The time between firings; `None` fires once.
    pub every: Option<Duration>,
    /// How many firings in all, when the period limits them.
    pub repeats: Option<u32>,
    /// No firing after this.
    pub expires: Option<i64>,
}

impl Times {
    /// Reads the three fields (empty when unset) of a `what` ("reminder",
    /// "timer") created at `now`.
    pub(crate) fn parse(
        what: &str,
        due_time: &str,
        period: &str,
        ttl: &str,
        now: i64,
    ) -> Result<Times, String> {
        let (due_time, period, ttl) = (due_time.trim(), period.trim(), ttl.trim());
        let first = if due_time.is_empty() {
            now
        } else {
            point_in_time(due_time, now)
                .map_err(|e| format!("error parsing {what} due time: {e}"))?
        };
        let (every, repeats) = if period.is_empty() {
            (None, None)
        } else {
            parse_period(period).map_err(|e| format!("invalid {what} period: {e}"))?
        };
        let expires = if ttl.is_empty() {
            None
        } else {
            let expires =
                point_in_time(ttl, first).map_err(|e| format!("error parsing {what} TTL: {e}"))?;
            if now > expires || first > expires {
                return Err(format!("{what} has already expired: TTL {ttl}"));
            }
            Some(expires)
        };
        Ok(Times {
            first,
            every: every.filter(|every| !every.is_zero()),
            repeats,
            expires,
        })
    }

    /// The firing after the `fired`th, at `last`; `None` after the last.
    pub(crate) fn after(&self, last: i64, fired: u32) -> Option<i64> {
        let every = self.every?;
        if self.repeats.is_some_and(|repeats| fired >= repeats) {
            return None;
        }
        let next = last.saturating_add(i64::try_from(every.as_millis()).unwrap_or(i64::MAX));
        match self.expires {
            Some(expires) if next > expires => None,
            _ => Some(next),
        }
    }
}

/// RFC 3339, or a duration (Go or ISO 8601) after `from`.
fn point_in_time(text: &str, from: i64) -> Result<i64, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    let after = duration(text)?;
    Ok(from.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)))
}

/// A Go duration or an ISO 8601 one (what jobs and reminders take).
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('P') {
        iso8601_duration(text)
    } else {
        service_kit::units::parse_duration(text)
    }
}

/// A period: a duration, or `R<n>/<ISO 8601 duration>` (`n` firings).
fn parse_period(text: &str) -> Result<(Option<Duration>, Option<u32>), String> {
    let Some(rest) = text.strip_prefix('R') else {
        return Ok((Some(duration(text)?), None));
    };
    let (count, every) = rest
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: repetitions need a duration after `/`"))?;
    let repeats: u32 = count
        .parse()
        .map_err(|_| format!("`{text}`: `{count}` is not a number of repetitions"))?;
    if repeats == 0 {
        return Err("has zero repetitions".into());
    }
    Ok((Some(iso8601_duration(every)?), Some(repeats)))
}

/// An ISO 8601 duration: `P[nW][nD][T[nH][nM][nS]]` (seconds may have a
/// fraction).
fn iso8601_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("`{text}` is not an ISO 8601 duration: {why}");
    let body = text
        .strip_prefix('P')
        .ok_or_else(|| bad("it must start with P"))?;
    if body.is_empty() || body == "T" {
        return Err(bad("it has no fields"));
    }
    let mut seconds = 0f64;
    let mut in_time = false;
    let mut number = String::new();
    for c in body.chars() {
        match c {
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            'T' if !in_time && number.is_empty() => in_time = true,
            unit => {
                let value: f64 = number
                    .parse()
                    .map_err(|_| bad(&format!("`{number}{unit}` has no number")))?;
                number.clear();
                seconds += value
                    * match (in_time, unit) {
                        (false, 'W') => 7.0 * 86_400.0,
                        (false, 'D') => 86_400.0,
                        (true, 'H') => 3_600.0,
                        (true, 'M') => 60.0,
                        (true, 'S') => 1.0,
                        (false, 'Y' | 'M') => {
                            return Err(bad(
                                "years and months have no fixed length; give days (P30D) instead",
                            ));
                        }
                        _ => return Err(bad(&format!("unknown field `{unit}`"))),
                    };
            }
        }
    }
    if !number.is_empty() {
        return Err(bad(&format!("`{number}` has no unit")));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn durations_are_go_or_iso_8601() {
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0h0m5s0ms0μs"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("PT1M30S"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("P1DT1H"), Ok(Duration::from_secs(90_000)));
        assert_eq!(duration("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("P2W"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["P", "PT", "P1Y", "P1M", "PT5", "P5H", "PTS"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_period_may_limit_its_repetitions() {
        let times = Times::parse("reminder", "1s", "R2/PT3S", "", NOW).unwrap();
        assert_eq!(times.first, NOW + 1_000);
        assert_eq!(times.after(times.first, 1), Some(NOW + 4_000));
        assert_eq!(times.after(NOW + 4_000, 2), None, "two firings in all");
        let error = Times::parse("reminder", "", "R0/PT3S", "", NOW).unwrap_err();
        assert!(error.contains("zero repetitions"), "{error}");
        let once = Times::parse("timer", "", "", "", NOW).unwrap();
        assert_eq!((once.first, once.after(NOW, 1)), (NOW, None));
    }

    #[test]
    fn a_ttl_counts_from_the_first_firing_and_ends_the_period() {
        let times = Times::parse("reminder", "10s", "5s", "12s", NOW).unwrap();
        assert_eq!(times.expires, Some(NOW + 22_000));
        assert_eq!(times.after(NOW + 20_000, 3), None);
        let at = "2027-01-15T08:00:00Z";
        let times = Times::parse("reminder", at, "", "", NOW).unwrap();
        let expected = DateTime::parse_from_rfc3339(at).unwrap().timestamp_millis();
        assert_eq!(times.first, expected);
        let past = "2020-01-01T00:00:00Z";
        let error = Times::parse("timer", "", "1s", past, NOW).unwrap_err();
        assert!(error.contains("already expired"), "{error}");
    }
}
