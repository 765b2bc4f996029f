//! `pubsub.rabbitmq`: RabbitMQ, laid out as daprd lays it out.
//!
//! - A topic is a durable `fanout` exchange of the same name; a publish
//!   returns once RabbitMQ has confirmed it (publisher confirms), and
//!   events are persistent (`deliveryMode` 2) when `durable`.
//! - Each app reads from its own durable queue `<consumerID>-<topic>`,
//!   bound to the exchange, which keeps events while the app's sidecar is
//!   down. Events are acknowledged once done with; the unacknowledged
//!   events of a sidecar that dies go back to the queue.
//!
//! Metadata: `connectionString` (default
//! `amqp://guest:guest@localhost:5672`), `durable` (default true),
//! `deletedWhenUnused` (default false), `prefetchCount` (default 64),
//! `concurrencyMode` (`parallel`, the default as in daprd: up to
//! `prefetchCount` events with the app at once; `single`: in order).
//! A lost connection is not re-established: publishing then fails with a
//! clear error until the sidecar restarts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, hand_on};

/// A RabbitMQ broker.
pub struct RabbitBroker {
    connection: Connection,
    /// Publishes, with confirms.
    publisher: Channel,
    /// The exchanges this publisher has declared, so a publish declares
    /// its topic's once, not every time.
    declared: Mutex<HashSet<String>>,
    durable: bool,
    delete_when_unused: bool,
    prefetch: u16,
    /// `concurrencyMode` `parallel` (daprd's default): up to `prefetch`
    /// events with the app at once; `single`: in order.
    parallel: bool,
}

fn backend(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

fn flag(properties: &HashMap<String, String>, name: &str, default: bool) -> bool {
    properties
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.eq_ignore_ascii_case("true"))
        .unwrap_or(default)
}

impl RabbitBroker {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, BrokerError> {
        let url = properties
            .get("connectionString")
            .filter(|u| !u.is_empty())
            .map(String::as_str)
            .unwrap_or("amqp://guest:guest@localhost:5672");
        let connection = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| BrokerError::Backend("no answer from RabbitMQ within 5s".into()))?
        .map_err(|e| BrokerError::Backend(format!("RabbitMQ: {e}")))?;
        let publisher = connection.create_channel().await.map_err(backend)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(backend)?;
        let prefetch = match properties.get("prefetchCount").filter(|v| !v.is_empty()) {
            Some(text) => text.trim().parse().map_err(|_| {
                BrokerError::Metadata(format!("prefetchCount `{text}` is not a number"))
            })?,
            None => 64,
        };
        Ok(RabbitBroker {
            connection,
            publisher,
            declared: Mutex::new(HashSet::new()),
            durable: flag(properties, "durable", true),
            delete_when_unused: flag(properties, "deletedWhenUnused", false),
            prefetch,
            parallel: match properties
                .get("concurrencyMode")
                .map(|m| m.trim())
                .filter(|m| !m.is_empty())
            {
                None | Some("parallel") => true,
                Some("single") => false,
                Some(other) => {
                    return Err(BrokerError::Metadata(format!(
                        "concurrencyMode `{other}`: use parallel or single"
                    )));
                }
            },
        })
    }

    async fn declare_exchange(&self, channel: &Channel, topic: &str) -> Result<(), BrokerError> {
        channel
            .exchange_declare(
                topic.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: self.durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend)
    }
}

#[async_trait::async_trait]
impl Broker for RabbitBroker {
    fn delivery_concurrency(&self) -> usize {
        match (self.parallel, self.prefetch) {
            (false, _) => 1,
            // prefetchCount 0 is RabbitMQ's "no limit".
            (true, 0) => 1024,
            (true, n) => usize::from(n),
        }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let known = self
            .declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if !known {
            self.declare_exchange(&self.publisher, topic).await?;
            self.declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.to_string());
        }
        let properties =
            BasicProperties::default().with_delivery_mode(if self.durable { 2 } else { 1 });
        let confirmation = self
            .publisher
            .basic_publish(
                topic.into(),
                "".into(),
                BasicPublishOptions::default(),
                &payload,
                properties,
            )
            .await
            .map_err(backend)?
            .await
            .map_err(backend)?;
        if confirmation.is_nack() {
            return Err(BrokerError::Backend("RabbitMQ refused the event".into()));
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let channel = self.connection.create_channel().await.map_err(backend)?;
        self.declare_exchange(&channel, topic).await?;
        let queue = format!("{consumer_id}-{topic}");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: self.durable,
                    auto_delete: self.delete_when_unused,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        channel
            .queue_bind(
                queue.as_str().into(),
                topic.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(backend)?;
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(async move {
            // The channel lives as long as the subscription: closing it
            // returns the unacknowledged events to the queue.
            let _channel = channel;
            while let Some(delivery) = next_delivery(&sender, &mut deliveries, &queue).await {
                let acker = delivery.acker.clone();
                let acknowledge =
                    move || async move { acker.ack(BasicAckOptions::default()).await.map(drop) };
                if !hand_on(&sender, delivery.data, acknowledge).await {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}

/// The next message of `deliveries`: `None` once whoever reads them is
/// gone (`reader` closed), or the consumer failed (logged) or ended.
pub(crate) async fn next_delivery<T>(
    reader: &mpsc::Sender<T>,
    deliveries: &mut lapin::Consumer,
    queue: &str,
) -> Option<lapin::message::Delivery> {
    let next = tokio::select! {
        () = reader.closed() => return None,
        next = deliveries.next() => next?,
    };
    next.inspect_err(|err| tracing::warn!(%queue, error = %err, "RabbitMQ consumer failed"))
        .ok()
}
