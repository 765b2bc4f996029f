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
//! `prefetchCount` events with the app at once; `single`: in order),
//! `reconnectWaitSeconds` (default 3).
//!
//! A lost connection comes back (`crate::rabbitmq_conn`): a publish connects
//! again at once, and a subscription subscribes again every
//! `reconnectWaitSeconds`; the events published meanwhile wait in its queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, hand_on};
use crate::rabbitmq_conn::{
    RabbitConnection, Subscription, consume_queue, next_delivery, publish_confirmed, reconnect_wait,
};

/// Dapr's default `reconnectWaitSeconds` for `pubsub.rabbitmq`.
const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(3);

/// A RabbitMQ broker.
pub struct RabbitBroker {
    connection: Arc<RabbitConnection>,
    /// The exchanges declared on the publishing connection, and that
    /// connection's generation: a publish declares its topic's exchange
    /// once per connection, not every time.
    declared: Mutex<(u64, HashSet<String>)>,
    layout: Layout,
    /// `concurrencyMode` `parallel` (daprd's default): up to `prefetch`
    /// events with the app at once; `single`: in order.
    parallel: bool,
    reconnect_wait: Duration,
}

/// How topics and queues are declared, from the component's metadata.
#[derive(Debug, Clone, Copy)]
struct Layout {
    durable: bool,
    delete_when_unused: bool,
    prefetch: u16,
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
        let prefetch = match properties.get("prefetchCount").filter(|v| !v.is_empty()) {
            Some(text) => text.trim().parse().map_err(|_| {
                BrokerError::Metadata(format!("prefetchCount `{text}` is not a number"))
            })?,
            None => 64,
        };
        let parallel = match properties
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
        };
        let reconnect_wait =
            reconnect_wait(properties, "reconnectWaitSeconds", DEFAULT_RECONNECT_WAIT)
                .map_err(BrokerError::Metadata)?;
        let connection = RabbitConnection::open(url)
            .await
            .map_err(BrokerError::Backend)?;
        Ok(RabbitBroker {
            connection: Arc::new(connection),
            declared: Mutex::new((0, HashSet::new())),
            layout: Layout {
                durable: flag(properties, "durable", true),
                delete_when_unused: flag(properties, "deletedWhenUnused", false),
                prefetch,
            },
            parallel,
            reconnect_wait,
        })
    }

    /// Publishes on `channel`, of connection `generation`, declaring the
    /// topic's exchange first when this connection has not.
    async fn publish_on(
        &self,
        channel: Channel,
        generation: u64,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        let known = {
            let declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
            declared.0 == generation && declared.1.contains(topic)
        };
        if !known {
            self.layout.declare_exchange(&channel, topic).await?;
            let mut declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
            if declared.0 != generation {
                *declared = (generation, HashSet::new());
            }
            declared.1.insert(topic.to_string());
        }
        let properties =
            BasicProperties::default().with_delivery_mode(if self.layout.durable { 2 } else { 1 });
        publish_confirmed(&channel, topic, "", payload, properties).await
    }
}

impl Layout {
    async fn declare_exchange(&self, channel: &Channel, topic: &str) -> Result<(), String> {
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
            .map_err(|e| e.to_string())
    }

    /// Declares `topic`'s exchange and `queue`, binds them, and consumes
    /// the queue on a channel of its own.
    async fn consume(
        &self,
        connection: &RabbitConnection,
        topic: &str,
        queue: &str,
    ) -> Result<Subscription, String> {
        let failed = |e: lapin::Error| e.to_string();
        let channel = connection.channel().await?;
        self.declare_exchange(&channel, topic).await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: self.durable,
                    auto_delete: self.delete_when_unused,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        channel
            .queue_bind(
                queue.into(),
                topic.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        consume_queue(channel, queue, self.prefetch).await
    }
}

#[async_trait::async_trait]
impl Broker for RabbitBroker {
    fn delivery_concurrency(&self) -> usize {
        match (self.parallel, self.layout.prefetch) {
            (false, _) => 1,
            // prefetchCount 0 is RabbitMQ's "no limit".
            (true, 0) => 1024,
            (true, n) => usize::from(n),
        }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        self.connection
            .publishing(|channel, generation| self.publish_on(channel, generation, topic, &payload))
            .await
            .map_err(backend)
    }

    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let queue = format!("{consumer_id}-{topic}");
        let mut subscription = self
            .layout
            .consume(&self.connection, topic, &queue)
            .await
            .map_err(backend)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let (connection, layout, wait) =
            (self.connection.clone(), self.layout, self.reconnect_wait);
        let topic = topic.to_string();
        tokio::spawn(async move {
            let subscribe = || layout.consume(&connection, &topic, &queue);
            while let Some(delivery) =
                next_delivery(&sender, &mut subscription, &queue, wait, &subscribe).await
            {
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
