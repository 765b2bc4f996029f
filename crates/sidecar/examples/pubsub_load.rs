//! The load generator of the pub/sub benchmark (`scripts/bench-pubsub.sh`):
//! one broker, one path, and two measurements as one JSON line.
//!
//! ```text
//! pubsub_load sidecar      KIND DAPR_PORT APP_PORT RATE SECONDS COUNT
//! pubsub_load sidecar-bulk KIND DAPR_PORT APP_PORT RATE SECONDS COUNT
//! pubsub_load direct       KIND URL                RATE SECONDS COUNT
//! ```
//!
//! KIND is `memory`, `redis`, `jetstream`, `rabbitmq` or `mqtt`.
//!
//! - **sidecar**: events are published with `POST /v1.0/publish/bench/..`
//!   on a sidecar whose `bench` component is KIND, and delivered by that
//!   sidecar to this process, which is its app (on APP_PORT, subscribing
//!   programmatically). Start this first: the sidecar reads
//!   `/dapr/subscribe` when it starts.
//! - **sidecar-bulk**: the same, with Dapr's bulk APIs, as a Dapr user
//!   after throughput would: the throughput measurement publishes
//!   [`BULK_ENTRIES`] events per `POST /v1.0-alpha1/publish/bulk/..`
//!   ([`BULK_PUBLISHERS`] at once), and
//!   the app subscribes with `bulkSubscribe` (up to [`BULK_ENTRIES`] events
//!   per delivery, waiting at most [`BULK_AWAIT_MS`] ms to fill one). The
//!   latency measurement publishes one event at a time, as before.
//! - **direct**: the same broker driven by its Rust client alone (the
//!   baseline): published with the client's confirmed publish, consumed
//!   and acknowledged by the client.
//!
//! Measurements, every event 1 KiB (JSON `{"i": N, "pad": "..."}`):
//! - **latency**: RATE events/s for SECONDS (after a 1 s warm-up), open
//!   loop; publish -> delivery p50 and p99, from when each was sent.
//! - **throughput**: COUNT events published by [`PUBLISHERS`] concurrent
//!   publishers as fast as they go; events/s from the first publish to the
//!   last delivery.
//!
//! Each run uses topics of its own and removes what it made on the broker
//! afterwards (streams, exchanges, queues).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// How many publishers run at once in the throughput measurement.
const PUBLISHERS: usize = 32;
/// Events per bulk publish and per bulk delivery (sidecar-bulk).
const BULK_ENTRIES: usize = 100;
/// How many bulk publishers run at once (sidecar-bulk): 800 events in
/// flight, under Mosquitto's default queue of 1000 per client, past which
/// it drops QoS 1 events (`max_queued_messages`).
const BULK_PUBLISHERS: usize = 8;
/// `maxAwaitDurationMs` of the bulk subscription (sidecar-bulk).
const BULK_AWAIT_MS: u64 = 10;
/// The size of every event.
const EVENT_BYTES: usize = 1024;
/// How long the deliveries may trail the last publish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker kinds.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Memory,
    Redis,
    JetStream,
    RabbitMq,
    Mqtt,
}

impl Kind {
    fn parse(text: &str) -> anyhow::Result<Kind> {
        Ok(match text {
            "memory" => Kind::Memory,
            "redis" => Kind::Redis,
            "jetstream" => Kind::JetStream,
            "rabbitmq" => Kind::RabbitMq,
            "mqtt" => Kind::Mqtt,
            other => bail!("unknown broker {other}"),
        })
    }
}

/// When each event of one measurement was sent and first delivered, in
/// nanoseconds after `base` (0: not yet).
struct Timeline {
    base: Instant,
    sent: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    deliveries: AtomicUsize,
    distinct: AtomicUsize,
    all_in: Notify,
}

impl Timeline {
    fn new(events: usize) -> Timeline {
        Timeline {
            base: Instant::now(),
            sent: (0..events).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..events).map(|_| AtomicU64::new(0)).collect(),
            deliveries: AtomicUsize::new(0),
            distinct: AtomicUsize::new(0),
            all_in: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        (self.base.elapsed().as_nanos() as u64).max(1)
    }

    fn mark_sent(&self, i: usize) {
        self.sent[i].store(self.now(), Ordering::Relaxed);
    }

    /// Records event `i`'s delivery (a repeat counts as a duplicate).
    fn mark_delivered(&self, i: usize) {
        let Some(slot) = self.delivered.get(i) else {
            return;
        };
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if slot
            .compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && self.distinct.fetch_add(1, Ordering::AcqRel) + 1 == self.delivered.len()
        {
            self.all_in.notify_one();
        }
    }

    async fn wait_all_delivered(&self) -> anyhow::Result<()> {
        let notified = self.all_in.notified();
        if self.distinct.load(Ordering::Acquire) == self.delivered.len() {
            return Ok(());
        }
        tokio::time::timeout(DRAIN_TIMEOUT, notified)
            .await
            .with_context(|| {
                format!(
                    "only {} of {} events were delivered within {DRAIN_TIMEOUT:?}",
                    self.distinct.load(Ordering::Acquire),
                    self.delivered.len()
                )
            })
    }

    /// Latency percentiles in ms over the events from `skip` on.
    fn percentiles(&self, skip: usize) -> (f64, f64) {
        let mut ms: Vec<f64> = (skip..self.sent.len())
            .map(|i| {
                let (s, d) = (
                    self.sent[i].load(Ordering::Relaxed),
                    self.delivered[i].load(Ordering::Relaxed),
                );
                d.saturating_sub(s) as f64 / 1e6
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        (at(0.50), at(0.99))
    }

    /// Events per second from the first send to the last delivery.
    fn throughput(&self) -> f64 {
        let first = self.sent.iter().map(|s| s.load(Ordering::Relaxed)).min();
        let last = self
            .delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .max();
        let span = last.unwrap_or(0).saturating_sub(first.unwrap_or(0)) as f64 / 1e9;
        self.sent.len() as f64 / span
    }
}

/// Event `i`'s bytes: 1 KiB of JSON.
fn event(i: usize) -> Vec<u8> {
    let head = format!("{{\"i\":{i},\"pad\":\"");
    let mut bytes = head.into_bytes();
    bytes.resize(EVENT_BYTES - 2, b'x');
    bytes.extend_from_slice(b"\"}");
    bytes
}

/// An event's number (the rest of it is skipped, not kept).
#[derive(serde::Deserialize)]
struct Numbered {
    i: usize,
}

/// The event number in a published payload.
fn index_of(payload: &[u8]) -> Option<usize> {
    serde_json::from_slice::<Numbered>(payload)
        .ok()
        .map(|event| event.i)
}

/// What the sidecar posts to the app: one CloudEvent, or a bulk
/// delivery's entries (only what the app reads).
#[derive(serde::Deserialize)]
struct Delivered {
    #[serde(default)]
    data: Option<Numbered>,
    #[serde(default)]
    entries: Option<Vec<DeliveredEntry>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveredEntry {
    entry_id: String,
    event: Delivered,
}

/// Publishes an event on a topic; the path under test.
#[async_trait::async_trait]
trait Publisher: Send + Sync {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()>;

    /// How many events a publisher sends at once in the throughput
    /// measurement ([`Publisher::publish_many`]).
    fn batch(&self) -> usize {
        1
    }

    /// Publishes `payloads` (at most [`Publisher::batch`]).
    async fn publish_many(&self, topic: &str, payloads: Vec<Vec<u8>>) -> anyhow::Result<()> {
        for payload in payloads {
            self.publish(topic, payload).await?;
        }
        Ok(())
    }
}

/// Runs both measurements over `publisher`, whose events reach `latency`
/// and `throughput` (the two topics' timelines) by whatever consumes them.
async fn measure(
    publisher: Arc<dyn Publisher>,
    topics: &Topics,
    rate: f64,
    latency: Arc<Timeline>,
    throughput: Arc<Timeline>,
) -> anyhow::Result<Value> {
    let warm_up = rate as usize;
    let start = Instant::now() + Duration::from_millis(20);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..latency.sent.len() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (publisher, latency, topic) =
            (publisher.clone(), latency.clone(), topics.latency.clone());
        calls.spawn(async move {
            latency.mark_sent(i);
            publisher.publish(&topic, event(i)).await
        });
    }
    while let Some(result) = calls.join_next().await {
        result??;
    }
    latency.wait_all_delivered().await?;
    let (p50, p99) = latency.percentiles(warm_up);

    let next = Arc::new(AtomicUsize::new(0));
    let publishers = if publisher.batch() > 1 {
        BULK_PUBLISHERS
    } else {
        PUBLISHERS
    };
    for _ in 0..publishers {
        let (publisher, throughput, topic, next) = (
            publisher.clone(),
            throughput.clone(),
            topics.throughput.clone(),
            next.clone(),
        );
        calls.spawn(async move {
            let batch = publisher.batch();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                let end = (first + batch).min(throughput.sent.len());
                if first >= end {
                    return Ok(());
                }
                let payloads = (first..end)
                    .map(|i| {
                        throughput.mark_sent(i);
                        event(i)
                    })
                    .collect();
                publisher.publish_many(&topic, payloads).await?;
            }
        });
    }
    while let Some(result) = calls.join_next().await {
        result??;
    }
    throughput.wait_all_delivered().await?;
    Ok(json!({
        "latency_events": latency.sent.len() - warm_up,
        "p50_ms": p50,
        "p99_ms": p99,
        "throughput_events": throughput.sent.len(),
        "throughput_per_s": throughput.throughput(),
        "duplicates": latency.deliveries.load(Ordering::Relaxed) + throughput.deliveries.load(Ordering::Relaxed)
            - latency.sent.len() - throughput.sent.len(),
    }))
}

/// This run's two topics.
struct Topics {
    latency: String,
    throughput: String,
}

impl Topics {
    fn new(path: &str) -> Topics {
        let run = format!("{}-{}", path, std::process::id());
        Topics {
            latency: format!("bench-latency-{run}"),
            throughput: format!("bench-throughput-{run}"),
        }
    }

    fn both(&self) -> [&str; 2] {
        [&self.latency, &self.throughput]
    }
}

// ---- sidecar path ----

/// The app id the bench sidecar runs as (its consumer group).
const APP_ID: &str = "pubsub-bench";

struct SidecarPublisher {
    client: reqwest::Client,
    dapr_port: u16,
    /// Whether [`Publisher::publish_many`] uses the bulk publish API.
    bulk: bool,
}

/// The answer of a publish, or why it failed.
async fn published(response: reqwest::Response) -> anyhow::Result<()> {
    if !response.status().is_success() {
        bail!(
            "publish answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

#[async_trait::async_trait]
impl Publisher for SidecarPublisher {
    fn batch(&self) -> usize {
        if self.bulk { BULK_ENTRIES } else { 1 }
    }

    async fn publish_many(&self, topic: &str, payloads: Vec<Vec<u8>>) -> anyhow::Result<()> {
        if !self.bulk {
            for payload in payloads {
                self.publish(topic, payload).await?;
            }
            return Ok(());
        }
        let url = format!(
            "http://127.0.0.1:{}/v1.0-alpha1/publish/bulk/bench/{topic}",
            self.dapr_port
        );
        let mut body = Vec::with_capacity(payloads.len() * (EVENT_BYTES + 64) + 2);
        body.push(b'[');
        for (n, payload) in payloads.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(
                format!("{{\"entryId\":\"{n}\",\"contentType\":\"application/json\",\"event\":")
                    .as_bytes(),
            );
            body.extend_from_slice(payload);
            body.push(b'}');
        }
        body.push(b']');
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        published(response).await
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        let url = format!(
            "http://127.0.0.1:{}/v1.0/publish/bench/{topic}",
            self.dapr_port
        );
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await?;
        published(response).await
    }
}

/// The subscriber app's state: the two topics and their timelines.
struct App {
    topics: Topics,
    latency: Arc<Timeline>,
    throughput: Arc<Timeline>,
}

#[allow(clippy::too_many_arguments)]
async fn run_sidecar(
    bulk: bool,
    kind: Kind,
    dapr_port: u16,
    app_port: u16,
    rate: f64,
    seconds: f64,
    count: usize,
) -> anyhow::Result<Value> {
    let app = Arc::new(App {
        topics: Topics::new(if bulk { "bulk" } else { "sidecar" }),
        latency: Arc::new(Timeline::new((rate * (seconds + 1.0)) as usize)),
        throughput: Arc::new(Timeline::new(count)),
    });
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(move |State(app): State<Arc<App>>| async move {
                let bulk_subscribe = json!({
                    "enabled": bulk, "maxMessagesCount": BULK_ENTRIES, "maxAwaitDurationMs": BULK_AWAIT_MS,
                });
                axum::Json(json!(app.topics.both().map(|topic| json!({
                    "pubsubname": "bench", "topic": topic, "route": format!("/events/{topic}"),
                    "bulkSubscribe": bulk_subscribe,
                }))))
            }),
        )
        .route(
            "/events/{topic}",
            post(
                |State(app): State<Arc<App>>, Path(topic): Path<String>, body: Bytes| async move {
                    let timeline = if topic == app.topics.latency {
                        &app.latency
                    } else {
                        &app.throughput
                    };
                    let mark = |event: &Delivered| {
                        if let Some(data) = &event.data {
                            timeline.mark_delivered(data.i);
                        }
                    };
                    let Ok(delivery) = serde_json::from_slice::<Delivered>(&body) else {
                        return axum::Json(json!({"status": "DROP"}));
                    };
                    let Some(entries) = &delivery.entries else {
                        mark(&delivery);
                        return axum::Json(json!({"status": "SUCCESS"}));
                    };
                    let statuses: Vec<Value> = entries
                        .iter()
                        .map(|entry| {
                            mark(&entry.event);
                            json!({"entryId": entry.entry_id, "status": "SUCCESS"})
                        })
                        .collect();
                    axum::Json(json!({"statuses": statuses}))
                },
            ),
        )
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port)).await?;
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    wait_for_subscriptions(&client, dapr_port, 2).await?;
    let publisher = Arc::new(SidecarPublisher {
        client,
        dapr_port,
        bulk,
    });
    let result = measure(
        publisher,
        &app.topics,
        rate,
        app.latency.clone(),
        app.throughput.clone(),
    )
    .await;
    remove_sidecar_leftovers(kind, &app.topics).await;
    result
}

/// Waits until the sidecar's metadata lists `expected` subscriptions.
async fn wait_for_subscriptions(
    client: &reqwest::Client,
    dapr_port: u16,
    expected: usize,
) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{dapr_port}/v1.0/metadata");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(metadata) = response.json::<Value>().await
            && metadata["subscriptions"]
                .as_array()
                .is_some_and(|s| s.len() >= expected)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the sidecar on port {dapr_port} did not subscribe within 60s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes what the sidecar made on the broker for `topics` (its naming:
/// see the sidecar's pubsub modules).
async fn remove_sidecar_leftovers(kind: Kind, topics: &Topics) {
    let result = match kind {
        Kind::Redis => redis_direct::remove(&topics.both()).await,
        Kind::JetStream => {
            let streams = topics.both().map(|t| format!("dapr-wasm-{t}"));
            jetstream_direct::remove(&streams).await
        }
        Kind::RabbitMq => {
            let queues = topics.both().map(|t| format!("{APP_ID}-{t}"));
            rabbitmq_direct::remove(&topics.both(), &queues).await
        }
        Kind::Mqtt | Kind::Memory => Ok(()),
    };
    if let Err(err) = result {
        eprintln!("warning: cannot remove the bench's topics: {err:#}");
    }
}

// ---- direct path, one module per broker ----

/// Starts consuming `topics` with the broker's client, each event marked
/// on its topic's timeline; returns the publisher.
async fn run_direct(
    kind: Kind,
    url: &str,
    rate: f64,
    seconds: f64,
    count: usize,
) -> anyhow::Result<Value> {
    let topics = Topics::new("direct");
    let latency = Arc::new(Timeline::new((rate * (seconds + 1.0)) as usize));
    let throughput = Arc::new(Timeline::new(count));
    let timelines = [latency.clone(), throughput.clone()];
    let publisher: Arc<dyn Publisher> = match kind {
        Kind::Redis => Arc::new(redis_direct::start(url, &topics, timelines).await?),
        Kind::JetStream => Arc::new(jetstream_direct::start(url, &topics, timelines).await?),
        Kind::RabbitMq => Arc::new(rabbitmq_direct::start(url, &topics, timelines).await?),
        Kind::Mqtt => Arc::new(mqtt_direct::start(url, &topics, timelines).await?),
        Kind::Memory => bail!("the in-memory broker has no client of its own"),
    };
    let result = measure(publisher, &topics, rate, latency, throughput).await;
    let removed = match kind {
        Kind::Redis => redis_direct::remove(&topics.both()).await,
        Kind::JetStream => jetstream_direct::remove(&topics.both().map(str::to_string)).await,
        Kind::RabbitMq => rabbitmq_direct::remove(&topics.both(), &topics.both()).await,
        Kind::Mqtt | Kind::Memory => Ok(()),
    };
    if let Err(err) = removed {
        eprintln!("warning: cannot remove the bench's topics: {err:#}");
    }
    result
}

/// Redis Streams: `XADD`; a consumer group read with `XREADGROUP` (100 at
/// a time) and acknowledged with one `XACK` per batch.
mod redis_direct {
    use super::*;
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};

    pub struct RedisPublisher(redis::aio::MultiplexedConnection);

    #[async_trait::async_trait]
    impl Publisher for RedisPublisher {
        async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
            let mut connection = self.0.clone();
            let _: String = connection.xadd(topic, "*", &[("data", payload)]).await?;
            Ok(())
        }
    }

    pub async fn start(
        url: &str,
        topics: &Topics,
        timelines: [Arc<Timeline>; 2],
    ) -> anyhow::Result<RedisPublisher> {
        let client = redis::Client::open(url)?;
        let publisher = client.get_multiplexed_async_connection().await?;
        for (topic, timeline) in topics.both().into_iter().zip(timelines) {
            // Blocking reads outlast the default response timeout.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(10)));
            let mut reader = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let _: () = reader.xgroup_create_mkstream(topic, "bench", "0").await?;
            let topic = topic.to_string();
            tokio::spawn(async move {
                let options = StreamReadOptions::default()
                    .group("bench", "bench")
                    .count(100)
                    .block(1000);
                loop {
                    let reply: StreamReadReply =
                        match reader.xread_options(&[&topic], &[">"], &options).await {
                            Ok(reply) => reply,
                            Err(err) => {
                                eprintln!("redis read: {err}");
                                return;
                            }
                        };
                    let mut ids = Vec::new();
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        if let Some(redis::Value::BulkString(data)) = entry.map.get("data")
                            && let Some(i) = index_of(data)
                        {
                            timeline.mark_delivered(i);
                        }
                        ids.push(entry.id);
                    }
                    if !ids.is_empty() {
                        let acked: redis::RedisResult<()> =
                            reader.xack(&topic, "bench", &ids).await;
                        if let Err(err) = acked {
                            eprintln!("redis ack: {err}");
                        }
                    }
                }
            });
        }
        Ok(RedisPublisher(publisher))
    }

    pub async fn remove(topics: &[&str]) -> anyhow::Result<()> {
        let client = redis::Client::open("redis://127.0.0.1:6379")?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let _: () = connection.del(topics).await?;
        Ok(())
    }
}

/// NATS JetStream: a confirmed publish; a durable pull consumer, each
/// event acknowledged.
mod jetstream_direct {
    use super::*;
    use async_nats::jetstream::{self, consumer, stream};
    use tokio_stream::StreamExt;

    pub struct JetStreamPublisher(jetstream::Context);

    #[async_trait::async_trait]
    impl Publisher for JetStreamPublisher {
        async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
            self.0
                .publish(topic.to_string(), payload.into())
                .await?
                .await?;
            Ok(())
        }
    }

    pub async fn start(
        url: &str,
        topics: &Topics,
        timelines: [Arc<Timeline>; 2],
    ) -> anyhow::Result<JetStreamPublisher> {
        let context = jetstream::new(async_nats::connect(url).await?);
        for (topic, timeline) in topics.both().into_iter().zip(timelines) {
            let stream = context
                .get_or_create_stream(stream::Config {
                    name: topic.to_string(),
                    subjects: vec![topic.to_string()],
                    ..Default::default()
                })
                .await?;
            let consumer = stream
                .get_or_create_consumer(
                    "bench",
                    consumer::pull::Config {
                        durable_name: Some("bench".into()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await?;
            let mut messages = consumer.messages().await?;
            tokio::spawn(async move {
                while let Some(Ok(message)) = messages.next().await {
                    if let Some(i) = index_of(&message.payload) {
                        timeline.mark_delivered(i);
                    }
                    if let Err(err) = message.ack().await {
                        eprintln!("jetstream ack: {err}");
                    }
                }
            });
        }
        Ok(JetStreamPublisher(context))
    }

    pub async fn remove(streams: &[String]) -> anyhow::Result<()> {
        let context = jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
        for stream in streams {
            context.delete_stream(stream).await?;
        }
        Ok(())
    }
}

/// RabbitMQ: a fanout exchange per topic and a durable queue bound to it;
/// persistent events with publisher confirms; each delivery acknowledged.
mod rabbitmq_direct {
    use super::*;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
    use tokio_stream::StreamExt;

    pub struct RabbitPublisher {
        channel: Channel,
        _connection: Connection,
    }

    #[async_trait::async_trait]
    impl Publisher for RabbitPublisher {
        async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
            let confirmation = self
                .channel
                .basic_publish(
                    topic.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &payload,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?
                .await?;
            if confirmation.is_nack() {
                bail!("RabbitMQ refused an event");
            }
            Ok(())
        }
    }

    pub async fn start(
        url: &str,
        topics: &Topics,
        timelines: [Arc<Timeline>; 2],
    ) -> anyhow::Result<RabbitPublisher> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        for (topic, timeline) in topics.both().into_iter().zip(timelines) {
            let consumer = connection.create_channel().await?;
            consumer
                .exchange_declare(
                    topic.into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let options = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            consumer
                .queue_declare(topic.into(), options, FieldTable::default())
                .await?;
            consumer
                .queue_bind(
                    topic.into(),
                    topic.into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            // The sidecar's default prefetchCount.
            consumer.basic_qos(64, BasicQosOptions::default()).await?;
            let mut deliveries = consumer
                .basic_consume(
                    topic.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            tokio::spawn(async move {
                let _consumer = consumer;
                while let Some(Ok(delivery)) = deliveries.next().await {
                    if let Some(i) = index_of(&delivery.data) {
                        timeline.mark_delivered(i);
                    }
                    if let Err(err) = delivery.ack(BasicAckOptions::default()).await {
                        eprintln!("rabbitmq ack: {err}");
                    }
                }
            });
        }
        Ok(RabbitPublisher {
            channel,
            _connection: connection,
        })
    }

    pub async fn remove(exchanges: &[&str], queues: &[impl AsRef<str>]) -> anyhow::Result<()> {
        let connection = Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672",
            ConnectionProperties::default(),
        )
        .await?;
        let channel = connection.create_channel().await?;
        for queue in queues {
            channel
                .queue_delete(queue.as_ref().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in exchanges {
            channel
                .exchange_delete((*exchange).into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// MQTT 3.1.1: QoS 1 publishes (the client's queue, acknowledged by the
/// broker), a QoS 1 subscription acknowledged by the client.
mod mqtt_direct {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS};

    pub struct MqttPublisher(AsyncClient);

    #[async_trait::async_trait]
    impl Publisher for MqttPublisher {
        async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
            self.0
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await?;
            Ok(())
        }
    }

    /// TCP_NODELAY, as the sidecar's client sets it.
    fn no_delay(events: &mut EventLoop) {
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
    }

    fn options(url: &str, id: &str) -> anyhow::Result<MqttOptions> {
        let address = url.strip_prefix("tcp://").unwrap_or(url);
        let (host, port) = address.rsplit_once(':').context("url is tcp://host:port")?;
        let mut options =
            MqttOptions::new(format!("{id}-{}", std::process::id()), host, port.parse()?);
        options
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(100);
        Ok(options)
    }

    pub async fn start(
        url: &str,
        topics: &Topics,
        timelines: [Arc<Timeline>; 2],
    ) -> anyhow::Result<MqttPublisher> {
        let (subscriber, mut events) = AsyncClient::new(options(url, "bench-sub")?, 256);
        no_delay(&mut events);
        for topic in topics.both() {
            subscriber.subscribe(topic, QoS::AtLeastOnce).await?;
        }
        let (latency_topic, _keep) = (topics.latency.clone(), subscriber);
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut subscribed_tx, mut acks) = (Some(subscribed_tx), 0);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == 2
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let timeline = if publish.topic == latency_topic {
                            &timelines[0]
                        } else {
                            &timelines[1]
                        };
                        if let Some(i) = index_of(&publish.payload) {
                            timeline.mark_delivered(i);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        eprintln!("mqtt subscriber: {err}");
                        return;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .context("no SUBACK from the MQTT broker")??;
        let (publisher, mut publisher_events) = AsyncClient::new(options(url, "bench-pub")?, 256);
        no_delay(&mut publisher_events);
        tokio::spawn(async move {
            while publisher_events.poll().await.is_ok() {}
            eprintln!("mqtt publisher: connection closed");
        });
        Ok(MqttPublisher(publisher))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pubsub_load sidecar|sidecar-bulk KIND DAPR_PORT APP_PORT RATE SECONDS COUNT\n       pubsub_load direct KIND URL RATE SECONDS COUNT";
    let number = |text: &str| -> anyhow::Result<f64> {
        text.parse()
            .with_context(|| format!("{text} is not a number"))
    };
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [
            path @ ("sidecar" | "sidecar-bulk"),
            kind,
            dapr_port,
            app_port,
            rate,
            seconds,
            count,
        ] => {
            run_sidecar(
                *path == "sidecar-bulk",
                Kind::parse(kind)?,
                dapr_port.parse()?,
                app_port.parse()?,
                number(rate)?,
                number(seconds)?,
                count.parse()?,
            )
            .await?
        }
        ["direct", kind, url, rate, seconds, count] => {
            run_direct(
                Kind::parse(kind)?,
                url,
                number(rate)?,
                number(seconds)?,
                count.parse()?,
            )
            .await?
        }
        _ => bail!("{usage}"),
    };
    println!("{result}");
    Ok(())
}
