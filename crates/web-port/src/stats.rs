//! Invocation stats kept in the Dapr state store: one record under the key
//! `invokecount` holding the counters (successful and failed calls) and the
//! last [`MAX_EVENTS`] events.
//!
//! Uploads are recorded through one [`StatsRecorder`] per web-port: a task
//! that takes every upload waiting to be recorded, reads the record and its
//! etag once, adds them all, and writes it back with first-write
//! concurrency (a group commit). Each upload's answer waits until its
//! batch is written. If another writer (a second web-port) wrote in
//! between, the write fails with 409 and the update starts over from a
//! fresh read, so no count is ever lost. Keeping the counter and the
//! events in one record makes each update atomic without transactions;
//! batching makes it one read and one write per batch instead of per
//! upload, with no lost races between uploads of the same web-port.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::trace::TraceContext;
use tokio::sync::{mpsc, oneshot};

use crate::dapr::{DaprClient, DaprClientError};
use crate::metrics::WebPortMetrics;

/// The state key of the record.
pub const STATS_KEY: &str = "invokecount";
/// Events kept.
pub const MAX_EVENTS: usize = 10;
/// Attempts before an update gives up (each lost race is one attempt).
const MAX_ATTEMPTS: u32 = 200;
/// Uploads recorded by one read and write, at most.
const MAX_BATCH: usize = 256;

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
pub async fn read(
    dapr: &DaprClient,
    store: &str,
    trace: &TraceContext,
) -> Result<Stats, DaprClientError> {
    Ok(dapr
        .get_state::<Stats>(store, STATS_KEY, trace)
        .await?
        .map(|(stats, _)| stats)
        .unwrap_or_default())
}

/// Why an upload could not be recorded: the error of its batch's update.
pub type RecordError = Arc<DaprClientError>;

/// One upload waiting to be recorded, and who to tell when it is.
struct Pending {
    event: Event,
    /// Where its upload stands in its trace.
    trace: TraceContext,
    recorded: oneshot::Sender<Result<(), RecordError>>,
}

/// Records uploads in the stats in batches (see the module's comment).
/// Cloning it gives another handle to the same task, which ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct StatsRecorder {
    queue: mpsc::UnboundedSender<Pending>,
}

impl StatsRecorder {
    /// Starts the recording task for `store`, on the current runtime,
    /// counting its lost etag races in `metrics`.
    pub fn start(dapr: DaprClient, store: String, metrics: Arc<WebPortMetrics>) -> StatsRecorder {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                // The batch's state calls belong to its first upload's
                // trace (they serve all of them).
                let trace = batch[0].trace.clone();
                let (events, recorded): (Vec<Event>, Vec<_>) =
                    batch.into_iter().map(|p| (p.event, p.recorded)).unzip();
                let outcome = record_all(&dapr, &store, &events, &metrics, &trace)
                    .await
                    .map(drop)
                    .map_err(Arc::new);
                for waiter in recorded {
                    // The upload may have gone (its client hung up): fine.
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        StatsRecorder { queue }
    }

    /// Adds `event` to the stats; returns once it is written. The state
    /// calls carry `trace` when its upload is first in the batch.
    pub async fn record(&self, event: Event, trace: TraceContext) -> Result<(), RecordError> {
        let (recorded, done) = oneshot::channel();
        let gone = || {
            Arc::new(DaprClientError::Status {
                status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
                body: "the stats recorder has stopped".into(),
            })
        };
        self.queue
            .send(Pending {
                event,
                trace,
                recorded,
            })
            .map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }
}

/// Adds `events` (oldest first) to the stats, counting each as a success or
/// a failure, in one update; retries lost etag races.
async fn record_all(
    dapr: &DaprClient,
    store: &str,
    events: &[Event],
    metrics: &WebPortMetrics,
    trace: &TraceContext,
) -> Result<Stats, DaprClientError> {
    for attempt in 0..MAX_ATTEMPTS {
        let (mut stats, etag) = match dapr.get_state::<Stats>(store, STATS_KEY, trace).await? {
            Some((stats, etag)) => (stats, Some(etag)),
            None => (Stats::default(), None),
        };
        add_events(&mut stats, events);
        match dapr
            .save_state_first_write(store, STATS_KEY, &stats, etag.as_deref(), trace)
            .await
        {
            Ok(()) => return Ok(stats),
            Err(DaprClientError::EtagMismatch) => {
                metrics.record_stats_conflict();
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

/// Counts `events` (oldest first) as successes or failures and puts them
/// in front of the record's events, newest first, keeping [`MAX_EVENTS`].
fn add_events(stats: &mut Stats, events: &[Event]) {
    for event in events {
        if (200..300).contains(&event.status) {
            stats.count += 1;
        } else {
            stats.failed += 1;
        }
    }
    let newest_first = events.iter().rev().take(MAX_EVENTS).cloned();
    stats.events.splice(0..0, newest_first);
    stats.events.truncate(MAX_EVENTS);
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

    fn event(n: u16, status: u16) -> Event {
        Event {
            time: format!("t{n:02}"),
            api: "grayscale".into(),
            input_bytes: usize::from(n),
            output_bytes: 0,
            milliseconds: 1.0,
            status,
            client: None,
        }
    }

    #[test]
    fn a_batch_counts_every_upload_and_keeps_the_newest_events_first() {
        let mut stats = Stats::default();
        add_events(&mut stats, &[event(1, 200), event(2, 500)]);
        assert_eq!((stats.count, stats.failed), (1, 1));
        assert_eq!(stats.events, [event(2, 500), event(1, 200)]);
        // A batch bigger than the record keeps: all counted, the newest kept.
        let batch: Vec<Event> = (3..=15).map(|n| event(n, 200)).collect();
        add_events(&mut stats, &batch);
        assert_eq!((stats.count, stats.failed), (14, 1));
        let kept: Vec<&str> = stats.events.iter().map(|e| e.time.as_str()).collect();
        assert_eq!(
            kept,
            [
                "t15", "t14", "t13", "t12", "t11", "t10", "t09", "t08", "t07", "t06"
            ]
        );
    }
}
