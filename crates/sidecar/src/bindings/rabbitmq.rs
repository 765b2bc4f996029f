//! `bindings.rabbitmq`: a RabbitMQ queue as an input and output binding,
//! as Dapr's RabbitMQ binding runs it.
//!
//! Metadata: `host` (an AMQP URL, default
//! `amqp://guest:guest@localhost:5672`), `queueName` (required; the queue
//! is declared at start-up with `durable`, `deleteWhenUnused`, `exclusive`
//! (each default false), `maxPriority` and `ttlInSeconds` as its message
//! TTL), `prefetchCount` (default 0: no limit) and `reconnectWaitInSeconds`
//! (default 5).
//!
//! - Output: `create` publishes the data to the queue (the default
//!   exchange), persistent, with the request's metadata as headers,
//!   `ttlInSeconds` as its expiration and `priority` as its priority. It
//!   answers nothing (204), once RabbitMQ confirmed it has the message
//!   (daprd's binding does not wait for that confirm, so a message sent as
//!   the connection drops can be lost there).
//! - Input: each message in the queue goes to the app, one at a time, with
//!   its string headers as metadata; it is acknowledged once the app took
//!   it, and returned to the queue (`nack`, requeued) when the app did not,
//!   as daprd does. Messages of a sidecar that stops are returned too.
//!
//! A lost connection comes back (`crate::rabbitmq_conn`), and the queue is
//! declared again on the new one: a publish connects again at once, and
//! the reading consumes again every `reconnectWaitInSeconds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lapin::options::{BasicAckOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use tokio::sync::{mpsc, oneshot};

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;
use crate::input_bindings::{Events, InputBinding, InputBindingError, InputEvent};
use crate::rabbitmq_conn::{
    RabbitConnection, Subscription, consume_queue, next_delivery, publish_confirmed, reconnect_wait,
};

/// Dapr's default `reconnectWaitInSeconds` for `bindings.rabbitmq`.
const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// A `bindings.rabbitmq` component.
pub struct RabbitBinding {
    name: String,
    connection: Arc<RabbitConnection>,
    queue: Arc<QueueSpec>,
    /// The generation of the connection the queue was last declared on
    /// for publishing ([`RabbitConnection::publisher`]).
    declared_on: AtomicU64,
    reconnect_wait: Duration,
}

/// The binding's queue, as its metadata declares it.
struct QueueSpec {
    name: String,
    options: QueueDeclareOptions,
    arguments: FieldTable,
    prefetch: u16,
}

/// A boolean metadata item (`true`, any case), `false` when absent.
fn flag(properties: &HashMap<String, String>, name: &str) -> bool {
    properties
        .get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A number metadata item, or why it is not one.
fn number<T: std::str::FromStr>(
    properties: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, String> {
    match properties
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} `{text}` is not a number")),
    }
}

impl RabbitBinding {
    /// Connects and declares the queue.
    pub async fn open(
        name: String,
        properties: &HashMap<String, String>,
    ) -> Result<RabbitBinding, String> {
        let queue = properties
            .get("queueName")
            .filter(|q| !q.is_empty())
            .cloned()
            .ok_or("metadata `queueName` is required")?;
        let url = properties
            .get("host")
            .filter(|h| !h.is_empty())
            .map(String::as_str)
            .unwrap_or("amqp://guest:guest@localhost:5672");
        let mut arguments = FieldTable::default();
        if let Some(priority) = number::<u8>(properties, "maxPriority")? {
            arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(priority));
        }
        if let Some(seconds) = number::<u32>(properties, "ttlInSeconds")? {
            arguments.insert(
                "x-message-ttl".into(),
                AMQPValue::LongUInt(seconds.saturating_mul(1_000)),
            );
        }
        let queue = QueueSpec {
            name: queue,
            options: QueueDeclareOptions {
                durable: flag(properties, "durable"),
                auto_delete: flag(properties, "deleteWhenUnused"),
                exclusive: flag(properties, "exclusive"),
                ..Default::default()
            },
            arguments,
            prefetch: number(properties, "prefetchCount")?.unwrap_or(0),
        };
        let reconnect_wait =
            reconnect_wait(properties, "reconnectWaitInSeconds", DEFAULT_RECONNECT_WAIT)?;
        let connection = RabbitConnection::open(url).await?;
        let (publisher, generation) = connection.publisher().await?;
        queue.declare(&publisher).await?;
        Ok(RabbitBinding {
            name,
            connection: Arc::new(connection),
            queue: Arc::new(queue),
            declared_on: AtomicU64::new(generation),
            reconnect_wait,
        })
    }

    async fn publish(&self, request: BindingRequest) -> Result<(), String> {
        let mut headers = FieldTable::default();
        for (key, value) in &request.metadata {
            headers.insert(
                ShortString::from(key.as_str()),
                AMQPValue::LongString(LongString::from(value.as_bytes())),
            );
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("text/plain".into())
            .with_headers(headers);
        if let Some(ttl) = super::redis::ttl(&request.metadata)? {
            properties = properties.with_expiration(ttl.as_millis().to_string().into());
        }
        if let Some(priority) = number::<u8>(&request.metadata, "priority")? {
            properties = properties.with_priority(priority);
        }
        let publish = |channel: Channel, generation: u64| {
            let properties = properties.clone();
            let data = &request.data;
            async move {
                // A new connection may be to a broker that lost the queue
                // (restarted without its data): declare it again first.
                if self.declared_on.load(Ordering::Relaxed) != generation {
                    self.queue.declare(&channel).await?;
                    self.declared_on.store(generation, Ordering::Relaxed);
                }
                publish_confirmed(&channel, "", &self.queue.name, data, properties)
                    .await
                    .map_err(|e| format!("failed to publish message: {e}"))
            }
        };
        self.connection.publishing(publish).await
    }
}

impl QueueSpec {
    /// Declares the queue on `channel`.
    async fn declare(&self, channel: &Channel) -> Result<(), String> {
        channel
            .queue_declare(
                self.name.as_str().into(),
                self.options,
                self.arguments.clone(),
            )
            .await
            .map(drop)
            .map_err(|e| format!("cannot declare queue `{}`: {e}", self.name))
    }

    /// Declares the queue and consumes it on a channel of its own.
    async fn consume(&self, connection: &RabbitConnection) -> Result<Subscription, String> {
        let channel = connection.channel().await?;
        self.declare(&channel).await?;
        consume_queue(channel, &self.name, self.prefetch).await
    }
}

#[async_trait::async_trait]
impl OutputBinding for RabbitBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        self.publish(request)
            .await
            .map_err(|reason| invoke_failed(&self.name, reason))?;
        Ok(None)
    }
}

/// A message's string headers, as daprd passes them on.
fn header_metadata(properties: &BasicProperties) -> HashMap<String, String> {
    let Some(headers) = properties.headers() else {
        return HashMap::new();
    };
    headers
        .inner()
        .iter()
        .filter_map(|(key, value)| match value {
            AMQPValue::LongString(text) => Some((
                key.to_string(),
                String::from_utf8_lossy(text.as_bytes()).into_owned(),
            )),
            AMQPValue::ShortString(text) => Some((key.to_string(), text.to_string())),
            _ => None,
        })
        .collect()
}

#[async_trait::async_trait]
impl InputBinding for RabbitBinding {
    async fn read(&self) -> Result<Events, InputBindingError> {
        let mut subscription = self
            .queue
            .consume(&self.connection)
            .await
            .map_err(InputBindingError)?;
        let (sender, events) = mpsc::channel(1);
        let (connection, queue, wait) = (
            self.connection.clone(),
            self.queue.clone(),
            self.reconnect_wait,
        );
        tokio::spawn(async move {
            let subscribe = || queue.consume(&connection);
            while let Some(delivery) =
                next_delivery(&sender, &mut subscription, &queue.name, wait, &subscribe).await
            {
                let (done, taken) = oneshot::channel();
                let event = InputEvent {
                    data: Bytes::from(delivery.data),
                    metadata: header_metadata(&delivery.properties),
                    done: Some(done),
                };
                if sender.send(event).await.is_err() {
                    return;
                }
                // One at a time: the next message waits for the app's answer.
                let settled = if taken.await.unwrap_or(false) {
                    delivery.acker.ack(BasicAckOptions::default()).await
                } else {
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    delivery.acker.nack(requeue).await
                };
                if let Err(err) = settled {
                    tracing::warn!(queue = %queue.name, error = %err, "cannot settle a RabbitMQ message");
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            events,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_headers_become_metadata() {
        let mut headers = FieldTable::default();
        headers.insert("order".into(), AMQPValue::LongString("7".into()));
        headers.insert("short".into(), AMQPValue::ShortString("s".into()));
        headers.insert("count".into(), AMQPValue::LongUInt(3));
        let properties = BasicProperties::default().with_headers(headers);
        assert_eq!(
            header_metadata(&properties),
            HashMap::from([
                ("order".to_string(), "7".to_string()),
                ("short".to_string(), "s".to_string())
            ])
        );
        assert!(header_metadata(&BasicProperties::default()).is_empty());
    }
}
