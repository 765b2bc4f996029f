//! Delivering a subscription's events to the app, at least once.
//!
//! Each event is `POST`ed to the subscription's route as a CloudEvent
//! (`application/cloudevents+json`). The app's answer decides:
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

use axum::body::Body;
use serde_json::{Value, json};
use service_kit::trace::{KeyValue, SpanKind, TraceContext};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Message;
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
    message: Message,
    place: OwnedSemaphorePermit,
    retry_slots: Arc<Semaphore>,
) {
    let event = envelope(&subscription, &message.payload);
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

/// The event the app gets: the CloudEvent the broker holds, or, for raw
/// payloads (`rawPayload`, or bytes a non-Dapr publisher wrote), a new
/// CloudEvent around them.
fn envelope(subscription: &Subscription, payload: &[u8]) -> Value {
    if !subscription.raw_payload()
        && let Ok(event @ Value::Object(_)) = serde_json::from_slice::<Value>(payload)
        && event.get("specversion").is_some()
    {
        return event;
    }
    let content_type = "application/octet-stream";
    let (key, data) = event_data(content_type, payload.to_vec());
    let mut event = json!({
        "id": new_event_id(),
        "source": subscription.pubsub_name,
        "type": "com.dapr.event.sent",
        "specversion": "1.0",
        "datacontenttype": content_type,
        "topic": subscription.topic,
        "pubsubname": subscription.pubsub_name,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    event[key] = data;
    event
}

/// Whether the event's `expiration` has passed.
fn expired(event: &Value) -> bool {
    event
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|at| at < chrono::Utc::now())
}

/// One delivery of `event` to the app, recorded
/// (`dapr_component_pubsub_ingress_*`, [`crate::metrics`]).
async fn attempt(sidecar: &Sidecar, subscription: &Subscription, event: &Value) -> Attempt {
    let started = std::time::Instant::now();
    let (outcome, process_status) = deliver_once(sidecar, subscription, event).await;
    sidecar.metrics.record_pubsub_ingress(
        &subscription.pubsub_name,
        &subscription.topic,
        process_status,
        started.elapsed(),
    );
    outcome
}

/// daprd's `process_status` of a delivery the app took.
const SUCCESS: &str = "success";
/// ... of one to try again.
const RETRY: &str = "retry";
/// ... of one dropped.
const DROP: &str = "drop";

/// [`attempt`], and its `process_status`, in a consumer span of its own
/// (`process TOPIC`): a child of the event's `traceparent` (the
/// publisher's), and the parent of the app's handling.
async fn deliver_once(
    sidecar: &Sidecar,
    subscription: &Subscription,
    event: &Value,
) -> (Attempt, &'static str) {
    let mut published = axum::http::HeaderMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = event
            .get(name)
            .and_then(Value::as_str)
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
            KeyValue::new(
                "messaging.message.id",
                event
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
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

/// One `POST` of `event` to the app, carrying `trace`.
async fn deliver_to_app(
    sidecar: &Sidecar,
    subscription: &Subscription,
    event: &Value,
    trace: &TraceContext,
) -> (Attempt, &'static str) {
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
    if expired(event) {
        tracing::warn!(topic = %subscription.topic, id, "event expired before delivery; dropped");
        return (Attempt::Done, DROP);
    }
    let Some(port) = sidecar.config.app_port else {
        return (Attempt::Retry("no app port".into()), RETRY);
    };
    let _slot = match &sidecar.app_slots {
        Some(slots) => slots.clone().acquire_owned().await.ok(),
        None => None,
    };
    let mut request =
        axum::http::Request::post(format!("http://127.0.0.1:{port}{}", subscription.route))
            .header("content-type", "application/cloudevents+json")
            .header("pubsubname", &subscription.pubsub_name)
            .header("topic", &subscription.topic);
    for (name, value) in &trace.headers() {
        request = request.header(name, value);
    }
    if let Some(token) = &sidecar.config.app_api_token {
        request = request.header("dapr-api-token", token);
    }
    let Ok(request) = request.body(Body::from(event.to_string())) else {
        tracing::error!(topic = %subscription.topic, id, "the event cannot be sent as a request; dropped");
        return (Attempt::Done, DROP);
    };
    let answer = tokio::time::timeout(sidecar.config.invoke_timeout, async {
        let response = sidecar.client.request(request).await?;
        let status = response.status();
        use http_body_util::BodyExt;
        let body = http_body_util::Limited::new(response.into_body(), 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, hyper_util::client::legacy::Error>((status, body))
    })
    .await;
    let (status, body) = match answer {
        Err(_) => {
            return (
                Attempt::Retry("the app did not answer in time".into()),
                RETRY,
            );
        }
        Ok(Err(err)) => {
            return (
                Attempt::Retry(format!("the app cannot be reached: {err}")),
                RETRY,
            );
        }
        Ok(Ok(answer)) => answer,
    };
    if status == axum::http::StatusCode::NOT_FOUND {
        tracing::error!(topic = %subscription.topic, route = %subscription.route, id, "the app answered 404 to an event: dropped, as daprd does");
        return (Attempt::Done, DROP);
    }
    if !status.is_success() {
        return (Attempt::Retry(format!("the app answered {status}")), RETRY);
    }
    let verdict = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("status")
            .and_then(Value::as_str)
            .map(str::to_uppercase)
    });
    match verdict.as_deref() {
        None | Some("SUCCESS") | Some("") => (Attempt::Done, SUCCESS),
        Some("DROP") => {
            tracing::warn!(topic = %subscription.topic, id, "the app dropped an event");
            (Attempt::Done, DROP)
        }
        Some("RETRY") => (Attempt::Retry("the app asked to retry".into()), RETRY),
        Some(other) => (
            Attempt::Retry(format!("the app answered unknown status {other}")),
            RETRY,
        ),
    }
}

/// Retries `event` with back-off; then dead-letters or drops it, and
/// acknowledges it. Stops without acknowledging when the sidecar stops.
async fn retry(
    sidecar: Arc<Sidecar>,
    subscription: Arc<Subscription>,
    message: Message,
    event: Value,
    mut reason: String,
    _slot: OwnedSemaphorePermit,
) {
    let policy = &sidecar.config.pubsub_retry;
    let mut backoff = policy.backoff;
    for _ in 0..policy.max_retries {
        tokio::select! {
            () = sidecar.shutdown_was_requested() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(policy.backoff * 16);
        match attempt(&sidecar, &subscription, &event).await {
            Attempt::Done => {
                message.ack();
                return;
            }
            Attempt::Retry(why) => reason = why,
        }
    }
    let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
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
        event.to_string().into_bytes()
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
