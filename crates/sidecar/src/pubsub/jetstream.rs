//! `pubsub.jetstream`: NATS JetStream.
//!
//! - A topic is a subject. Its events are kept by the stream that covers
//!   the subject; when none does, this sidecar creates one (named
//!   `dapr-wasm-<topic>`, file storage). daprd expects the stream to have
//!   been created beforehand; creating it makes `dapr-wasm up` work on a
//!   bare server.
//! - Each app reads through a durable pull consumer named by its
//!   `durableName` (default: the `consumerID`; `<durableName>-<topic>` in
//!   a stream that keeps other subjects too, see [`consumer_name`]),
//!   delivering all the stream's events from the start, acknowledging
//!   explicitly. Events not acknowledged within `ackWait` (default 30 s)
//!   come again: after a sidecar dies, its consumer's events go to the
//!   next one.
//! - A publish returns once JetStream has stored the event.
//!
//! Metadata: `natsURL` (default `nats://localhost:4222`), `durableName`,
//! `ackWait`, `maxDeliver`, `memoryStorage`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, hand_on, metadata_duration};

/// A JetStream broker.
pub struct JetStreamBroker {
    context: jetstream::Context,
    /// The stream of each topic seen so far.
    streams: Mutex<HashMap<String, String>>,
    durable_name: Option<String>,
    ack_wait: Duration,
    max_deliver: i64,
    memory_storage: bool,
}

fn backend(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

impl JetStreamBroker {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, BrokerError> {
        let url = properties
            .get("natsURL")
            .filter(|u| !u.is_empty())
            .map(String::as_str)
            .unwrap_or("nats://localhost:4222");
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(5))
                .connect(url),
        )
        .await
        .map_err(|_| BrokerError::Backend(format!("no answer from NATS at {url} within 5s")))?
        .map_err(|e| BrokerError::Backend(format!("NATS at {url}: {e}")))?;
        let max_deliver = match properties.get("maxDeliver").filter(|v| !v.is_empty()) {
            Some(text) => text.trim().parse().map_err(|_| {
                BrokerError::Metadata(format!("maxDeliver `{text}` is not a number"))
            })?,
            None => -1,
        };
        Ok(JetStreamBroker {
            context: jetstream::new(client),
            streams: Mutex::new(HashMap::new()),
            durable_name: properties
                .get("durableName")
                .filter(|d| !d.is_empty())
                .cloned(),
            ack_wait: metadata_duration(properties, "ackWait", Duration::from_secs(30))?,
            max_deliver,
            memory_storage: properties
                .get("memoryStorage")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The name of the stream holding `topic`, created when none covers
    /// it. Remembered per topic, so publishing asks JetStream once.
    async fn stream_name(&self, topic: &str) -> Result<String, BrokerError> {
        if let Some(name) = self.lock_streams().get(topic) {
            return Ok(name.clone());
        }
        let name = match self.context.stream_by_subject(topic).await {
            Ok(name) => name,
            Err(_) => {
                let name = format!("dapr-wasm-{}", name_part(topic));
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![topic.to_string()],
                    storage: if self.memory_storage {
                        stream::StorageType::Memory
                    } else {
                        stream::StorageType::File
                    },
                    ..Default::default()
                };
                self.context
                    .get_or_create_stream(config)
                    .await
                    .map_err(backend)?;
                tracing::info!(topic, stream = %name, "created a JetStream stream for the topic");
                name
            }
        };
        self.lock_streams().insert(topic.to_string(), name.clone());
        Ok(name)
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The durable consumer through which `durable` (the `durableName`, or the
/// consumer ID) reads `topic`. A stream that keeps only this topic
/// (`topics_own`; the kind this sidecar creates) has one consumer per app,
/// named `durable`. In a stream that keeps more (one made beforehand for
/// many topics, as daprd expects, say `orders.>`), each topic gets its
/// own, `<durable>-<topic>`: a consumer reads one subject, and one shared
/// by two topics would hand each the other's events.
fn consumer_name(durable: &str, topic: &str, topics_own: bool) -> String {
    if topics_own {
        name_part(durable)
    } else {
        format!("{}-{}", name_part(durable), name_part(topic))
    }
}

/// What a consumer made as `made` reads when that is more or other than
/// `topic`; `None` when it reads `topic` alone. (A consumer with no filter
/// reads the whole stream, which is `topic` alone in a stream that keeps
/// only it: `topics_own`.)
fn reads_other_subjects(made: &consumer::Config, topic: &str, topics_own: bool) -> Option<String> {
    match made.filter_subject.as_str() {
        "" if topics_own => None,
        "" => Some("the whole stream".to_string()),
        filter if filter == topic => None,
        filter => Some(format!("`{filter}`")),
    }
}

/// `text` with what NATS names cannot hold (`.`, `*`, `>`, spaces,
/// slashes) replaced by `_`.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '/' | '\\' => '_',
            other => other,
        })
        .collect()
}

#[async_trait::async_trait]
impl Broker for JetStreamBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        self.stream_name(topic).await?;
        self.context
            .publish(topic.to_string(), payload.into())
            .await
            .map_err(backend)?
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let name = self.stream_name(topic).await?;
        let stream = self.context.get_stream(&name).await.map_err(backend)?;
        let topics_own = stream.cached_info().config.subjects == [topic];
        let durable = consumer_name(
            self.durable_name.as_deref().unwrap_or(consumer_id),
            topic,
            topics_own,
        );
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: topic.to_string(),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(backend)?;
        // An existing consumer comes back as it was made: one reading
        // another subject would hand this subscription that subject's events.
        if let Some(reads) = reads_other_subjects(&consumer.cached_info().config, topic, topics_own)
        {
            return Err(BrokerError::Backend(format!(
                "JetStream consumer `{durable}` of stream `{name}` reads {reads}, not `{topic}`: \
                 give this component another durableName, or delete that consumer"
            )));
        }
        let mut messages = consumer.messages().await.map_err(backend)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let topic = topic.to_string();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = sender.closed() => return,
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        tracing::warn!(%topic, error = %err, "JetStream read failed; going on");
                        continue;
                    }
                    None => return,
                };
                let payload = message.payload.to_vec();
                if !hand_on(&sender, payload, move || async move { message.ack().await }).await {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(filter: &str) -> consumer::Config {
        consumer::Config {
            filter_subject: filter.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_consumer_is_named_per_topic_only_in_a_stream_of_many_subjects() {
        assert_eq!(consumer_name("my app", "orders.new", true), "my_app");
        assert_eq!(
            consumer_name("my app", "orders.new", false),
            "my_app-orders_new"
        );
    }

    #[test]
    fn a_consumer_reading_anything_but_the_topic_is_refused() {
        assert_eq!(
            reads_other_subjects(&reading("orders"), "orders", true),
            None
        );
        assert_eq!(reads_other_subjects(&reading(""), "orders", true), None);
        assert_eq!(
            reads_other_subjects(&reading(""), "shop.orders", false).as_deref(),
            Some("the whole stream")
        );
        assert_eq!(
            reads_other_subjects(&reading("shop.refunds"), "shop.orders", false).as_deref(),
            Some("`shop.refunds`")
        );
    }
}
