//! Delivering a subscription's events to the app, at least once, one event
//! per request ([`super::bulk_delivery`] delivers them in batches, with
//! the retries and dead letters of this module).
//!
//! Each event is `POST`ed to the subscription's route as a CloudEvent
//! (`application/cloudevents+json`), or, for a gRPC app, sent with
//! `OnTopicEvent` ([`super::app_callback`], whose table says what its
//! answers decide). An HTTP app's answer decides:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx, empty body or `{"status":"SUCCESS"}` | delivered |
//! | 2xx with `{"status":"DROP"}` | dropped (warning log) |
//! | 404 | dropped (error log), as daprd |
//! | 2xx with `{"status":"RETRY"}`, any other status, no answer | retried |
//!
//! Events go to the app in the broker's order, one at a time, unless the
//! broker's component asks for parallel delivery
//! ([`super::Broker::delivery_concurrency`]: Redis's `concurrency`,
//! RabbitMQ's `concurrencyMode`, as daprd): then up to that many events of
//! a subscription are with the app at once, started in order. An event
//! that must be retried leaves the line: its retries
//! (`--pubsub-max-retries`, backing off from `--pubsub-retry-backoff`,
//! doubling) run beside the events behind it, so a poison event never
//! blocks a topic. After the last retry
//! it goes to the subscription's `deadLetterTopic`, or is dropped with an
//! error log. Only then is it acknowledged to the broker; an event whose
//! sidecar dies before that comes again. Expired events (`expiration`,
//! from `ttlInSeconds`) are dropped. `--app-max-concurrency` bounds the
//! deliveries in flight to the app.

use std::sync::Arc;

use serde_json::{Value, json};
use service_kit::trace::{KeyValue, SpanKind, TraceContext};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Message;
use super::app_callback::Verdict;
use super::ops::{event_data, new_event_id};
use super::subscriptions::Subscription;
use crate::Sidecar;

/// How many of a subscription's events may be retrying at once before its
/// line waits for one to finish.
const RETRYING_PER_SUBSCRIPTION: usize = 64;

/// What one delivery attempt decided.
enum Attempt {
    /// Delivered or dropped: acknowledge.
    Done,
    /// Try again later, for this reason.
    Retry(String),
}

/// Delivers `messages` to the app, `concurrency` at a time, until the
/// broker's channel ends or the task is aborted (events in flight are then
/// not acknowledged).
pub(crate) async fn consume(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    mut messages: mpsc::Receiver<Message>,
    concurrency: usize,
) {
    let line = Arc::new(Semaphore::new(concurrency.max(1)));
    let retry_slots = Arc::new(Semaphore::new(RETRYING_PER_SUBSCRIPTION));
    let mut in_flight = JoinSet::new();
    while let Some(message) = messages.recv().await {
        while in_flight.try_join_next().is_some() {}
        // Taken here, in the broker's order: with one place in the line,
        // the next event waits until this one has had its first attempt.
        let Ok(place) = line.clone().acquire_owned().await else {
            return;
        };
        in_flight.spawn(deliver(
            sidecar.clone(),
            subscription.clone(),
            message,
            place,
            retry_slots.clone(),
        ));
    }
    while in_flight.join_next().await.is_some() {}
}

/// One event: its first attempt holds a `place` in the line; a retried
/// event gives its place up and retries beside the line.
async fn deliver(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    mut message: Message,
    place: OwnedSemaphorePermit,
    retry_slots: Arc<Semaphore>,
) {
    let event = envelope(&subscription, &mut message);
    match attempt(&sidecar, &subscription, &event).await {
        Attempt::Done => message.ack(),
        Attempt::Retry(reason) => {
            let Ok(slot) = retry_slots.acquire_owned().await else {
                return;
            };
            drop(place);
            retry(sidecar, subscription, message, event, reason, slot).await;
        }
    }
}

/// An event as the app gets it: the CloudEvent's JSON text as the broker
/// held it (checked, but not parsed into a tree and written out again,
/// nor copied), and the fields the sidecar reads.
#[derive(Default)]
pub(crate) struct CloudEvent {
    /// The CloudEvent, as JSON text (UTF-8).
    pub json: bytes::Bytes,
    /// Its `id` ("" when it has none).
    pub id: String,
    expiration: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// The fields of a CloudEvent the sidecar reads; the rest is only checked
/// to be JSON.
#[derive(serde::Deserialize)]
struct Head {
    specversion: Option<serde::de::IgnoredAny>,
    id: Option<Value>,
    expiration: Option<Value>,
    traceparent: Option<Value>,
    tracestate: Option<Value>,
}

impl CloudEvent {
    /// `payload`, if it is a CloudEvent: a JSON object (UTF-8) with
    /// `specversion`; else `payload` back.
    fn parse(payload: Vec<u8>) -> Result<CloudEvent, Vec<u8>> {
        let Some(head) = serde_json::from_slice::<Head>(&payload)
            .ok()
            .filter(|head| head.specversion.is_some() && std::str::from_utf8(&payload).is_ok())
        else {
            return Err(payload);
        };
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        Ok(CloudEvent {
            id: text(head.id).unwrap_or_default(),
            expiration: text(head.expiration),
            traceparent: text(head.traceparent),
            tracestate: text(head.tracestate),
            json: payload.into(),
        })
    }

    /// Whether its `expiration` has passed.
    pub(crate) fn expired(&self) -> bool {
        self.expiration
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|at| at < chrono::Utc::now())
    }
}

/// The event the app gets: the CloudEvent the broker holds (moved out of
/// `message`), or, for raw payloads (`rawPayload`, where `message` keeps
/// its payload for the dead-letter topic, or bytes a non-Dapr publisher
/// wrote), a new CloudEvent around them.
pub(crate) fn envelope(subscription: &Subscription, message: &mut Message) -> CloudEvent {
    let payload = if subscription.raw_payload() {
        message.payload.clone()
    } else {
        match CloudEvent::parse(std::mem::take(&mut message.payload)) {
            Ok(event) => return event,
            Err(payload) => payload,
        }
    };
    let content_type = "application/octet-stream";
    let (key, data) = event_data(content_type, payload);
    let id = new_event_id();
    let mut event = json!({
        "id": id,
        "source": subscription.pubsub_name,
        "type": "com.dapr.event.sent",
        "specversion": "1.0",
        "datacontenttype": content_type,
        "topic": subscription.topic,
        "pubsubname": subscription.pubsub_name,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    event[key] = data;
    CloudEvent {
        json: event.to_string().into(),
        id,
        expiration: None,
        traceparent: None,
        tracestate: None,
    }
}

/// One delivery of `event` to the app, recorded
/// (`dapr_component_pubsub_ingress_*`, [`crate::metrics`]).
async fn attempt(sidecar: &Sidecar, subscription: &Subscription, event: &CloudEvent) -> Attempt {
    let started = std::time::Instant::now();
    let (outcome, process_status) = deliver_once(sidecar, subscription, event).await;
    sidecar.metrics.record_pubsub_ingress(
        &subscription.pubsub_name,
        &subscription.topic,
        process_status,
        started.elapsed(),
        1,
    );
    outcome
}

/// daprd's `process_status` of a delivery the app took.
pub(crate) const SUCCESS: &str = "success";
/// ... of one to try again.
pub(crate) const RETRY: &str = "retry";
/// ... of one dropped.
pub(crate) const DROP: &str = "drop";

/// [`attempt`], and its `process_status`, in a consumer span of its own
/// (`process TOPIC`): a child of the event's `traceparent` (the
/// publisher's), and the parent of the app's handling.
async fn deliver_once(
    sidecar: &Sidecar,
    subscription: &Subscription,
    event: &CloudEvent,
) -> (Attempt, &'static str) {
    let mut published = axum::http::HeaderMap::new();
    for (name, value) in [
        ("traceparent", &event.traceparent),
        ("tracestate", &event.tracestate),
    ] {
        if let Some(value) = value
            .as_deref()
            .and_then(|v| axum::http::HeaderValue::from_str(v).ok())
        {
            published.insert(name, value);
        }
    }
    let trace = sidecar.tracer.start_span(
        format!("process {}", subscription.topic),
        SpanKind::Consumer,
        &published,
        vec![
            KeyValue::new("messaging.destination.name", subscription.topic.clone()),
            KeyValue::new("dapr.pubsub_name", subscription.pubsub_name.clone()),
            KeyValue::new("messaging.message.id", event.id.clone()),
        ],
    );
    let (attempt, process_status) = deliver_to_app(sidecar, subscription, event, &trace).await;
    if trace.is_recording() {
        trace.set_attributes([KeyValue::new("dapr.process_status", process_status)]);
        trace.end(match &attempt {
            Attempt::Retry(reason) => Some(reason.clone()),
            Attempt::Done => None,
        });
    }
    (attempt, process_status)
}

/// One delivery of `event` to the app, carrying `trace`: a `POST`, or
/// `OnTopicEvent` to a gRPC app ([`super::app_callback`]); or to a
/// streaming subscription's client ([`super::streaming`]).
async fn deliver_to_app(
    sidecar: &Sidecar,
    subscription: &Subscription,
    event: &CloudEvent,
    trace: &TraceContext,
) -> (Attempt, &'static str) {
    if event.expired() {
        tracing::warn!(topic = %subscription.topic, id = %event.id, "event expired before delivery; dropped");
        return (Attempt::Done, DROP);
    }
    let verdict = match (&subscription.subscriber, &sidecar.app_callback) {
        (Some(subscriber), _) => subscriber.deliver(subscription, event).await,
        (None, Some(app)) => {
            super::app_callback::on_topic_event(sidecar, app.clone(), subscription, event, trace)
                .await
        }
        (None, None) => post_event(sidecar, subscription, event, trace).await,
    };
    match verdict {
        Ok(process_status) => (Attempt::Done, process_status),
        Err(reason) => (Attempt::Retry(reason), RETRY),
    }
}

/// One `POST` of `event` to the app, and what the app's answer decides.
async fn post_event(
    sidecar: &Sidecar,
    subscription: &Subscription,
    event: &CloudEvent,
    trace: &TraceContext,
) -> Verdict {
    let id = event.id.as_str();
    let (status, body) = post_event_to_app(
        sidecar,
        subscription,
        "application/cloudevents+json",
        event.json.clone(),
        trace,
    )
    .await?;
    if status == axum::http::StatusCode::NOT_FOUND {
        tracing::error!(topic = %subscription.topic, route = %subscription.route, id, "the app answered 404 to an event: dropped, as daprd does");
        return Ok(DROP);
    }
    if !status.is_success() {
        return Err(format!("the app answered {status}"));
    }
    let verdict = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("status")
            .and_then(Value::as_str)
            .map(str::to_uppercase)
    });
    match verdict.as_deref() {
        None | Some("SUCCESS") | Some("") => Ok(SUCCESS),
        Some("DROP") => {
            tracing::warn!(topic = %subscription.topic, id, "the app dropped an event");
            Ok(DROP)
        }
        Some("RETRY") => Err("the app asked to retry".into()),
        Some(other) => Err(format!("the app answered unknown status {other}")),
    }
}

/// `POST`s `body` (of `content_type`) to the subscription's route on the
/// app, with its `pubsubname` and `topic` headers
/// ([`crate::app_channel::send_to_app`]).
pub(crate) async fn post_event_to_app(
    sidecar: &Sidecar,
    subscription: &Subscription,
    content_type: &'static str,
    body: bytes::Bytes,
    trace: &TraceContext,
) -> Result<(axum::http::StatusCode, bytes::Bytes), String> {
    let headers = [
        ("pubsubname", subscription.pubsub_name.as_str()),
        ("topic", subscription.topic.as_str()),
    ];
    crate::app_channel::send_to_app(
        sidecar,
        axum::http::Method::POST,
        &subscription.route,
        &headers,
        content_type,
        body,
        trace,
    )
    .await
}

/// The waits between a delivery's retries: `--pubsub-max-retries` of
/// them, from `--pubsub-retry-backoff`, doubling up to 16 times it.
pub(crate) struct Backoff {
    left: u32,
    next: std::time::Duration,
    cap: std::time::Duration,
}

impl Backoff {
    /// The sidecar's retry policy.
    pub(crate) fn new(sidecar: &Sidecar) -> Backoff {
        let policy = &sidecar.config.pubsub_retry;
        Backoff {
            left: policy.max_retries,
            next: policy.backoff,
            cap: policy.backoff * 16,
        }
    }

    /// Waits before the next retry: `false` when no retry is left or the
    /// sidecar stops meanwhile.
    pub(crate) async fn wait(&mut self, sidecar: &Sidecar) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        tokio::select! {
            () = sidecar.shutdown_was_requested() => return false,
            () = tokio::time::sleep(self.next) => {}
        }
        self.next = (self.next * 2).min(self.cap);
        true
    }
}

/// Retries `event` with back-off; then dead-letters or drops it, and
/// acknowledges it. Stops without acknowledging when the sidecar stops.
async fn retry(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    message: Message,
    event: CloudEvent,
    mut reason: String,
    _slot: OwnedSemaphorePermit,
) {
    let mut backoff = Backoff::new(&sidecar);
    while backoff.wait(&sidecar).await {
        match attempt(&sidecar, &subscription, &event).await {
            Attempt::Done => {
                message.ack();
                return;
            }
            Attempt::Retry(why) => reason = why,
        }
    }
    if *sidecar.shutdown_requested.borrow() {
        return;
    }
    give_up(&sidecar, &subscription, message, &event, &reason).await;
}

/// After the last retry: publishes the event to the subscription's
/// `deadLetterTopic` and acknowledges it, or drops it with an error log
/// when there is none. An event that cannot be dead-lettered is left
/// unacknowledged, for the broker to deliver again.
pub(crate) async fn give_up(
    sidecar: &Sidecar,
    subscription: &Subscription,
    message: Message,
    event: &CloudEvent,
    reason: &str,
) {
    let policy = &sidecar.config.pubsub_retry;
    let id = event.id.as_str();
    let Some(dead_letter) = &subscription.dead_letter_topic else {
        tracing::error!(topic = %subscription.topic, id, %reason, "event not delivered after {} retries; dropped (no deadLetterTopic)", policy.max_retries);
        message.ack();
        return;
    };
    let Some(pubsub) = sidecar.pubsubs.get(&subscription.pubsub_name) else {
        return;
    };
    let payload = if subscription.raw_payload() {
        message.payload.clone()
    } else {
        event.json.to_vec()
    };
    match pubsub.broker.publish(dead_letter, payload).await {
        Ok(()) => {
            tracing::warn!(topic = %subscription.topic, id, %reason, dead_letter = %dead_letter, "event not delivered; sent to the dead-letter topic");
            message.ack();
        }
        Err(err) => {
            // Not acknowledged: the broker delivers it again later.
            tracing::error!(topic = %subscription.topic, id, error = %err, "cannot dead-letter an event; left to the broker");
        }
    }
}
