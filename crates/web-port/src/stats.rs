//! Invocation stats kept in the Dapr state store: one record under the key
//! `invokecount` holding the counters (successful and failed calls) and the
//! last [`MAX_EVENTS`] events.
//!
//! Every upload reads the record and its etag, adds itself, and writes it
//! back with first-write concurrency. If another upload wrote in between,
//! the write fails with 409 and the update starts over from a fresh read,
//! so concurrent uploads never lose a count. Keeping the counter and the
//! events in one record makes each update atomic without transactions.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dapr::{DaprClient, DaprClientError};

/// The state key of the record.
pub const STATS_KEY: &str = "invokecount";
/// Events kept.
pub const MAX_EVENTS: usize = 10;
/// Attempts before an update gives up (each lost race is one attempt).
const MAX_ATTEMPTS: u32 = 200;

/// One call, as recorded here and published to the events service.
pub use events::ImageEvent as Event;

/// The stored record, and what `GET /api/invokecount` returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Calls answered with a 2xx so far.
    pub count: u64,
    /// Calls answered with an error so far.
    #[serde(default)]
    pub failed: u64,
    /// The last events, newest first.
    pub events: Vec<Event>,
}

/// Reads the stats (zero when nothing was recorded yet).
pub async fn read(dapr: &DaprClient, store: &str) -> Result<Stats, DaprClientError> {
    Ok(dapr
        .get_state::<Stats>(store, STATS_KEY)
        .await?
        .map(|(stats, _)| stats)
        .unwrap_or_default())
}

/// Adds one event and counts it as a success or a failure, retrying lost
/// etag races.
pub async fn record(
    dapr: &DaprClient,
    store: &str,
    event: Event,
) -> Result<Stats, DaprClientError> {
    for attempt in 0..MAX_ATTEMPTS {
        let (mut stats, etag) = match dapr.get_state::<Stats>(store, STATS_KEY).await? {
            Some((stats, etag)) => (stats, Some(etag)),
            None => (Stats::default(), None),
        };
        if (200..300).contains(&event.status) {
            stats.count += 1;
        } else {
            stats.failed += 1;
        }
        stats.events.insert(0, event.clone());
        stats.events.truncate(MAX_EVENTS);
        match dapr
            .save_state_first_write(store, STATS_KEY, &stats, etag.as_deref())
            .await
        {
            Ok(()) => return Ok(stats),
            Err(DaprClientError::EtagMismatch) => {
                // Someone else won; back off a little, more on each loss.
                let wait = Duration::from_micros(200 * u64::from(attempt.min(20)) + jitter());
                tokio::time::sleep(wait).await;
            }
            Err(other) => return Err(other),
        }
    }
    Err(DaprClientError::Status {
        status: reqwest::StatusCode::CONFLICT,
        body: format!("gave up after {MAX_ATTEMPTS} lost etag races"),
    })
}

/// A few hundred microseconds of jitter, from the clock's low bits.
fn jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos() % 500))
        .unwrap_or(0)
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_like_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
