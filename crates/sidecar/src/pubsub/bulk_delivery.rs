//! Bulk subscribe: delivering a subscription's events to the app many at a
//! time, for subscriptions with `bulkSubscribe.enabled`.
//!
//! The sidecar gathers up to `maxMessagesCount` events, waiting at most
//! `maxAwaitDurationMs` after the first while earlier batches are with the
//! app ([`next_batch`]), and `POST`s them to the route as one envelope, as
//! daprd does:
//!
//! ```json
//! {"entries": [{"entryId": "…", "event": {CloudEvent}, "metadata": {},
//!               "contentType": "application/cloudevents+json"}, …],
//!  "id": "…", "metadata": {"pubsubName": "…"}, "pubsubname": "…",
//!  "topic": "…", "type": "com.dapr.event.sent.bulk"}
//! ```
//!
//! (A gRPC app gets the batch through `OnBulkTopicEvent`, with the
//! entries' statuses in its answer: [`super::app_callback`].)
//!
//! The app answers `{"statuses": [{"entryId": "…", "status": "…"}]}`:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx, the entry's status `SUCCESS` | delivered |
//! | 2xx, the entry's status `DROP` | dropped (warning log) |
//! | 2xx, `RETRY`, an unknown status, or none for the entry | the entry is retried |
//! | 404 | every entry dropped (error log), as for single events |
//! | any other status, no answer, a body without `statuses` | every entry retried |
//!
//! The entries to retry go again together, as a smaller batch, with the
//! same back-off as single events ([`super::delivery::Backoff`]); after the
//! last retry each goes to the `deadLetterTopic` or is dropped
//! ([`super::delivery::give_up`]). Each event is acknowledged to the broker
//! only once its outcome is settled. Up to the broker's delivery
//! concurrency batches are with the app at once, started in the broker's
//! order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use service_kit::trace::{KeyValue, SpanKind};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Message;
use super::app_callback::{BulkCalls, Verdict};
use super::delivery::{
    Backoff, CloudEvent, DROP, RETRY, SUCCESS, envelope, give_up, post_event_to_app,
};
use super::json_object::JsonObject;
use super::ops::new_event_id;
use super::subscriptions::{BulkSubscribe, Subscription};
use crate::Sidecar;

/// How many of a subscription's batches may be retrying at once before
/// its line waits for one to finish.
const RETRYING_BATCHES_PER_SUBSCRIPTION: usize = 8;

/// One event of a batch.
struct Entry {
    entry_id: String,
    event: CloudEvent,
    message: Message,
}

/// Delivers `messages` to the app in batches, `concurrency` batches at a
/// time, until the broker's channel ends or the task is aborted (events
/// in flight are then not acknowledged).
pub(crate) async fn consume(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    mut messages: mpsc::Receiver<Message>,
    concurrency: usize,
    bulk: BulkSubscribe,
) {
    let line = Arc::new(Semaphore::new(concurrency.max(1)));
    let retry_slots = Arc::new(Semaphore::new(RETRYING_BATCHES_PER_SUBSCRIPTION));
    let mut in_flight = JoinSet::new();
    let grpc_app = BulkCalls::for_app(&sidecar).map(Arc::new);
    while let Some((batch, place)) = next_batch(&mut messages, bulk, &line).await {
        while in_flight.try_join_next().is_some() {}
        in_flight.spawn(deliver(
            sidecar.clone(),
            subscription.clone(),
            grpc_app.clone(),
            batch,
            place,
            retry_slots.clone(),
        ));
    }
    while in_flight.join_next().await.is_some() {}
}

/// The next batch and its place in the line: the next event, and those
/// that follow it, up to `maxMessagesCount`. While every place is taken
/// (batches are with the app) the batch keeps filling, for at most
/// `maxAwaitDurationMs`; once a place is free it goes with what it has.
/// So a busy topic goes in full batches, and an event on a quiet one is
/// not held back (`maxAwaitDurationMs` is the most a batch waits, as in
/// daprd; it also keeps a broker that holds back events until earlier
/// ones are acknowledged, such as RabbitMQ's prefetch or MQTT's in-flight
/// window, from stalling on it). `None` once the channel has ended or the
/// line has closed.
async fn next_batch(
    messages: &mut mpsc::Receiver<Message>,
    bulk: BulkSubscribe,
    line: &Arc<Semaphore>,
) -> Option<(Vec<Message>, OwnedSemaphorePermit)> {
    let first = messages.recv().await?;
    let mut batch = Vec::with_capacity(bulk.max_messages.min(1024));
    batch.push(first);
    let deadline = tokio::time::Instant::now() + bulk.max_await;
    let mut place = line.clone().try_acquire_owned().ok();
    while batch.len() < bulk.max_messages {
        match messages.try_recv() {
            Ok(message) => {
                batch.push(message);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if place.is_some() => break,
            Err(TryRecvError::Empty) => {}
        }
        tokio::select! {
            message = messages.recv() => match message {
                Some(message) => batch.push(message),
                None => break,
            },
            freed = line.clone().acquire_owned() => place = Some(freed.ok()?),
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let place = match place {
        Some(place) => place,
        None => line.clone().acquire_owned().await.ok()?,
    };
    Some((batch, place))
}

/// One batch: its first attempt holds a `place` in the line; the entries
/// to retry give the place up and retry beside the line.
async fn deliver(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    grpc_app: Option<Arc<BulkCalls>>,
    batch: Vec<Message>,
    place: OwnedSemaphorePermit,
    retry_slots: Arc<Semaphore>,
) {
    let mut entries = Vec::with_capacity(batch.len());
    for mut message in batch {
        let event = envelope(&subscription, &mut message);
        if event.expired() {
            tracing::warn!(topic = %subscription.topic, id = %event.id, "event expired before delivery; dropped");
            message.ack();
            continue;
        }
        entries.push(Entry {
            entry_id: new_event_id(),
            event,
            message,
        });
    }
    let Some((mut pending, mut reason)) =
        attempt(&sidecar, &subscription, grpc_app.as_deref(), entries).await
    else {
        return;
    };
    let Ok(_slot) = retry_slots.acquire_owned().await else {
        return;
    };
    drop(place);
    let mut backoff = Backoff::new(&sidecar);
    while backoff.wait(&sidecar).await {
        match attempt(&sidecar, &subscription, grpc_app.as_deref(), pending).await {
            None => return,
            Some((rest, why)) => (pending, reason) = (rest, why),
        }
    }
    if *sidecar.shutdown_requested.borrow() {
        return;
    }
    for entry in pending {
        give_up(
            &sidecar,
            &subscription,
            entry.message,
            &entry.event,
            &reason,
        )
        .await;
    }
}

/// The envelope the app gets. The events are JSON already (as the broker
/// held them): they are copied in, not parsed and written again.
fn bulk_envelope(subscription: &Subscription, entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| e.event.json.len() + 128).sum();
    let mut envelope = JsonObject::with_capacity(size + 256);
    envelope
        .objects("entries", entries, |item, entry| {
            item.string("entryId", &entry.entry_id)
                .raw("event", &entry.event.json)
                .raw("metadata", b"{}")
                .string("contentType", "application/cloudevents+json");
        })
        .string("id", &new_event_id())
        .object("metadata", |metadata| {
            metadata.string("pubsubName", &subscription.pubsub_name);
        })
        .string("pubsubname", &subscription.pubsub_name)
        .string("topic", &subscription.topic)
        .string("type", "com.dapr.event.sent.bulk");
    envelope.finish()
}

/// The app's answer.
#[derive(Deserialize)]
struct BulkAnswer<'a> {
    #[serde(borrow)]
    statuses: Vec<EntryStatus<'a>>,
}

/// One entry's status, read in place (copied only where JSON escapes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryStatus<'a> {
    #[serde(borrow)]
    entry_id: Cow<'a, str>,
    #[serde(default, borrow)]
    status: Cow<'a, str>,
}

/// One delivery of `entries`, recorded per entry
/// (`dapr_component_pubsub_ingress_*`) in a consumer span of its own.
/// Acknowledges the entries settled; returns the ones to retry, with why,
/// or `None` when none is left.
async fn attempt(
    sidecar: &Sidecar,
    subscription: &Subscription,
    grpc_app: Option<&BulkCalls>,
    entries: Vec<Entry>,
) -> Option<(Vec<Entry>, String)> {
    if entries.is_empty() {
        return None;
    }
    let started = std::time::Instant::now();
    let trace = sidecar.tracer.start_span(
        format!("process {}", subscription.topic),
        SpanKind::Consumer,
        &axum::http::HeaderMap::new(),
        vec![
            KeyValue::new("messaging.destination.name", subscription.topic.clone()),
            KeyValue::new("dapr.pubsub_name", subscription.pubsub_name.clone()),
            KeyValue::new("messaging.batch.message_count", entries.len() as i64),
        ],
    );
    let verdicts = match grpc_app {
        Some(calls) => {
            let sent: Vec<(&str, &CloudEvent)> = entries
                .iter()
                .map(|entry| (entry.entry_id.as_str(), &entry.event))
                .collect();
            super::app_callback::on_bulk_topic_event(sidecar, calls, subscription, &sent, &trace)
                .await
        }
        None => {
            let body = bulk_envelope(subscription, &entries).into();
            let answer =
                post_event_to_app(sidecar, subscription, "application/json", body, &trace).await;
            verdicts(subscription, &entries, answer)
        }
    };
    let elapsed = started.elapsed();
    let mut retry = Vec::new();
    let mut reason = String::new();
    let (mut delivered, mut dropped) = (0, 0);
    for (entry, verdict) in entries.into_iter().zip(verdicts) {
        match verdict {
            Ok(status) => {
                entry.message.ack();
                if status == SUCCESS {
                    delivered += 1;
                } else {
                    dropped += 1;
                }
            }
            Err(why) => {
                reason = why;
                retry.push(entry);
            }
        }
    }
    for (process_status, events) in [
        (SUCCESS, delivered),
        (DROP, dropped),
        (RETRY, retry.len() as u64),
    ] {
        sidecar.metrics.record_pubsub_ingress(
            &subscription.pubsub_name,
            &subscription.topic,
            process_status,
            elapsed,
            events,
        );
    }
    if trace.is_recording() {
        let to_retry = (!retry.is_empty()).then(|| reason.clone());
        trace.end(to_retry);
    }
    if retry.is_empty() {
        None
    } else {
        Some((retry, reason))
    }
}

/// Each entry's outcome from the app's answer: `Ok(SUCCESS | DROP)`, or
/// why it is to be retried.
fn verdicts(
    subscription: &Subscription,
    entries: &[Entry],
    answer: Result<(axum::http::StatusCode, bytes::Bytes), String>,
) -> Vec<Verdict> {
    let all = |verdict: Verdict| vec![verdict; entries.len()];
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(reason) => return all(Err(reason)),
    };
    if status == axum::http::StatusCode::NOT_FOUND {
        tracing::error!(topic = %subscription.topic, route = %subscription.route, events = entries.len(), "the app answered 404 to a bulk delivery: its events are dropped, as daprd does");
        return all(Ok(DROP));
    }
    if !status.is_success() {
        return all(Err(format!("the app answered {status}")));
    }
    let Ok(answer) = serde_json::from_slice::<BulkAnswer>(&body) else {
        return all(Err(
            "the app's answer to a bulk delivery has no `statuses`".into()
        ));
    };
    let statuses: HashMap<&str, &str> = answer
        .statuses
        .iter()
        .map(|s| (s.entry_id.as_ref(), s.status.as_ref()))
        .collect();
    entries
        .iter()
        .map(|entry| match statuses.get(entry.entry_id.as_str()) {
            Some(status) if status.eq_ignore_ascii_case("SUCCESS") => Ok(SUCCESS),
            Some(status) if status.eq_ignore_ascii_case("DROP") => {
                tracing::warn!(topic = %subscription.topic, entry_id = %entry.entry_id, "the app dropped an event");
                Ok(DROP)
            }
            Some(status) if status.eq_ignore_ascii_case("RETRY") => {
                Err("the app asked to retry".into())
            }
            None => Err("the app gave no status for the event".into()),
            Some(other) => Err(format!("the app answered unknown status {other}")),
        })
        .collect()
}
