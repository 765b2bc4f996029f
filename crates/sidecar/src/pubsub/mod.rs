//! Pub/sub: one [`Broker`] trait, one module per broker, and one [`open`]
//! that picks the broker by its Dapr type name.
//!
//! | Dapr type | module | metadata |
//! |---|---|---|
//! | `pubsub.in-memory` | [`memory`] | none (events live in this sidecar only) |
//! | `pubsub.jetstream` | [`jetstream`] | `natsURL`, `durableName`, `ackWait`, `maxDeliver`, `memoryStorage` |
//! | `pubsub.mqtt3` | [`mqtt`] | `url`, `qos` (1), `retain`, `cleanSession` |
//! | `pubsub.rabbitmq` | [`rabbitmq`] | `connectionString`, `durable`, `deletedWhenUnused`, `prefetchCount`, `concurrencyMode` |
//! | `pubsub.redis` | [`redis`] | `redisHost`, `redisPassword`, `redisUsername`, `redisDB`, `consumerID`, `processingTimeout`, `redeliverInterval`, `maxLenApprox`, `queueDepth`, `concurrency` |
//! | `pubsub.sqlite` (dapr-wasm's own) | [`sqlite`] | `connectionString` (a file), `pollInterval` |
//!
//! Every component also takes `consumerID` (default: the app id) and
//! `allowedTopics` (a comma list; publishing elsewhere is 403).
//!
//! A broker only moves bytes: [`Broker::publish`] stores one event, and
//! [`Broker::subscribe`] yields a topic's events in order as [`Message`]s,
//! each acknowledged ([`Message::ack`]) once the sidecar is done with it.
//! A message dropped without an ack is redelivered by brokers that can.
//! Everything Dapr adds (CloudEvents, routes, retries, dead letters, bulk
//! subscribe) is in [`ops`], [`delivery`] and [`bulk_delivery`], the same
//! for every broker; [`app_callback`] delivers to gRPC apps.
//! [`Broker::publish_many`] lets a broker publish a bulk publish's entries
//! in one round trip.
//!
//! Subscriptions (reading the brokers, delivering to the app, acks) run on
//! a thread of their own with its own single-threaded runtime, beside the
//! one that serves the APIs and publishes: a steady stream of events then
//! uses a second core instead of taking turns with the API on one.
//!
//! A new broker is one module plus one line in [`open`].
//!
//! With `--embedded-pubsub-fallback` (which `dapr-wasm up` sets), a
//! component whose broker cannot be reached at start is served by the
//! embedded [`sqlite`] broker instead, with a warning
//! ([`PubsubComponent::open_or_embedded`]).

pub mod api;
pub(crate) mod app_callback;
pub(crate) mod bulk_delivery;
pub(crate) mod delivery;
pub mod jetstream;
pub(crate) mod json_object;
pub mod memory;
pub mod mqtt;
pub(crate) mod ops;
pub mod rabbitmq;
pub mod redis;
pub mod sqlite;
pub(crate) mod streaming;
pub mod subscriptions;

use std::collections::HashMap;
use std::path::Path;

use tokio::sync::mpsc;

use crate::components::Component;

/// Why a broker failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker refused, failed or could not be reached.
    #[error("{0}")]
    Backend(String),
    /// The component's metadata is wrong.
    #[error("invalid metadata: {0}")]
    Metadata(String),
}

/// One event from a broker, in the order the broker gave it.
pub struct Message {
    /// The event's bytes as published.
    pub payload: Vec<u8>,
    /// The topic it was published to, where a subscription can match
    /// more than one (an MQTT filter); `None` otherwise.
    pub topic: Option<String>,
    ack: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("payload", &self.payload.len())
            .field("acknowledged", &self.ack.is_none())
            .finish()
    }
}

impl Message {
    /// A message without an ack (brokers that keep nothing).
    pub fn unacknowledged(payload: Vec<u8>) -> Message {
        Message {
            payload,
            topic: None,
            ack: None,
        }
    }

    /// A message whose ack runs `ack` (which must not block: it starts the
    /// broker's ack, or hands it to a task).
    pub fn new(payload: Vec<u8>, ack: impl FnOnce() + Send + 'static) -> Message {
        Message {
            payload,
            topic: None,
            ack: Some(Box::new(ack)),
        }
    }

    /// The message, saying which topic it was published to.
    pub fn with_topic(mut self, topic: String) -> Message {
        self.topic = Some(topic);
        self
    }

    /// Tells the broker this event is done with (delivered, dropped or
    /// dead-lettered); it will not come again. A message dropped without
    /// an ack is not acknowledged.
    pub fn ack(mut self) {
        if let Some(ack) = self.ack.take() {
            ack();
        }
    }
}

/// Hands `payload` to a subscription; once the sidecar acknowledges it,
/// runs `acknowledge` (the broker's own ack, e.g. a JetStream ack) in a
/// task of its own. `false` when the subscription has gone.
pub(crate) async fn hand_on<F, Fut, E>(
    subscription: &mpsc::Sender<Message>,
    payload: Vec<u8>,
    acknowledge: F,
) -> bool
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let ack = move || {
        tokio::spawn(async move {
            if let Err(err) = acknowledge().await {
                tracing::warn!(error = %err, "cannot acknowledge an event; it will come again");
            }
        });
    };
    subscription.send(Message::new(payload, ack)).await.is_ok()
}

/// How many events a subscription may hold between the broker and the
/// sidecar's delivery loop.
pub const SUBSCRIPTION_BUFFER: usize = 64;

/// A pub/sub broker.
#[async_trait::async_trait]
pub trait Broker: Send + Sync {
    /// Stores `payload` on `topic`; returns once the broker has it.
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError>;

    /// Stores every payload on `topic`, without an order between them;
    /// each one's result, in their order. All at once by default (the
    /// clients pipeline them); a broker with a batch command of its own
    /// uses it.
    async fn publish_many(
        &self,
        topic: &str,
        payloads: Vec<Vec<u8>>,
    ) -> Vec<Result<(), BrokerError>> {
        futures_util::future::join_all(
            payloads
                .into_iter()
                .map(|payload| self.publish(topic, payload)),
        )
        .await
    }

    /// Starts consuming `topic` as `consumer_id` (one consumer group per
    /// app); events arrive on the returned channel. Consuming stops when
    /// the receiver is dropped.
    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError>;

    /// How many of a subscription's events may be with the app at once: 1
    /// (in order) unless the component's metadata asks for more.
    fn delivery_concurrency(&self) -> usize {
        1
    }
}

/// A whole number from the component's metadata, or `default`.
pub(crate) fn metadata_number(
    properties: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, BrokerError> {
    match properties
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| BrokerError::Metadata(format!("{name} `{text}` is not a number"))),
    }
}

/// Opens the broker of type `component_type`; `data_dir` holds what the
/// embedded broker stores.
pub async fn open(
    component_type: &str,
    properties: &HashMap<String, String>,
    consumer_id: &str,
    data_dir: &Path,
) -> Result<Box<dyn Broker>, BrokerError> {
    match component_type {
        "pubsub.in-memory" => Ok(Box::new(memory::MemoryBroker::default())),
        "pubsub.sqlite" => Ok(Box::new(
            sqlite::SqliteBroker::open(properties, data_dir).await?,
        )),
        "pubsub.redis" => Ok(Box::new(redis::RedisBroker::open(properties).await?)),
        "pubsub.mqtt3" => Ok(Box::new(
            mqtt::MqttBroker::open(properties, consumer_id).await?,
        )),
        "pubsub.rabbitmq" => Ok(Box::new(rabbitmq::RabbitBroker::open(properties).await?)),
        "pubsub.jetstream" => Ok(Box::new(
            jetstream::JetStreamBroker::open(properties).await?,
        )),
        other => Err(BrokerError::Metadata(format!(
            "pub/sub type {other} is not supported (use pubsub.redis, pubsub.jetstream, pubsub.rabbitmq, pubsub.mqtt3, pubsub.in-memory or pubsub.sqlite)"
        ))),
    }
}

/// A loaded pub/sub component.
pub struct PubsubComponent {
    /// The broker.
    pub broker: Box<dyn Broker>,
    /// Its Dapr type: the component's, or `pubsub.sqlite` after a fallback.
    pub component_type: String,
    /// Its consumer group (`consumerID`, default the app id).
    pub consumer_id: String,
    /// `allowedTopics`, if set: the only topics this app may publish to.
    pub allowed_topics: Option<Vec<String>>,
}

impl PubsubComponent {
    /// Opens `component` for `app_id`.
    pub async fn open(
        component: &Component,
        app_id: &str,
        data_dir: &Path,
    ) -> Result<Self, BrokerError> {
        Self::open_as(component, &component.spec.component_type, app_id, data_dir).await
    }

    /// Opens `component` for `app_id`; when its broker cannot be reached
    /// and `fallback` is set, the embedded broker serves it instead.
    pub async fn open_or_embedded(
        component: &Component,
        app_id: &str,
        data_dir: &Path,
        fallback: bool,
    ) -> Result<Self, BrokerError> {
        match Self::open(component, app_id, data_dir).await {
            Err(BrokerError::Backend(reason)) if fallback => {
                tracing::warn!(
                    component = %component.metadata.name,
                    component_type = %component.spec.component_type,
                    %reason,
                    "the broker cannot be reached: using the embedded broker (pubsub.sqlite in {}) instead",
                    data_dir.display()
                );
                Self::open_as(component, "pubsub.sqlite", app_id, data_dir).await
            }
            other => other,
        }
    }

    async fn open_as(
        component: &Component,
        component_type: &str,
        app_id: &str,
        data_dir: &Path,
    ) -> Result<Self, BrokerError> {
        let mut properties = component.properties();
        if component_type != component.spec.component_type {
            // The other broker's connection settings mean nothing here.
            properties.retain(|name, _| name == "consumerID" || name == "allowedTopics");
        }
        let consumer_id = properties
            .get("consumerID")
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| app_id.to_string());
        let broker = open(component_type, &properties, &consumer_id, data_dir).await?;
        let allowed_topics = properties
            .get("allowedTopics")
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.split(',').map(|s| s.trim().to_string()).collect());
        Ok(PubsubComponent {
            broker,
            component_type: component_type.to_string(),
            consumer_id,
            allowed_topics,
        })
    }
}

/// A duration in Dapr's component format: Go's (`60s`, `500ms`, `1m`) or a
/// bare number of milliseconds.
pub(crate) fn metadata_duration(
    properties: &HashMap<String, String>,
    name: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, BrokerError> {
    match properties
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(ms) => Ok(std::time::Duration::from_millis(ms)),
            Err(_) => service_kit::units::parse_duration(text)
                .map_err(|e| BrokerError::Metadata(format!("{name}: {e}"))),
        },
    }
}
