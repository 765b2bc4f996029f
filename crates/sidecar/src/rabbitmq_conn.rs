//! The RabbitMQ connection `pubsub.rabbitmq` and `bindings.rabbitmq` share:
//! one AMQP connection with a channel to publish on, which comes back after
//! it is lost (RabbitMQ restarted, an operator closed the connection, the
//! network went away), as Dapr's RabbitMQ components come back.
//!
//! - **Publishing** returns once RabbitMQ confirmed it has the message
//!   (publisher confirms). A publish that finds the connection lost
//!   connects again first, at once. When RabbitMQ cannot be reached, that
//!   publish fails with its reason and the next one tries again, so a
//!   broker that is down gives clear errors and a broker that is back is
//!   used again. A publish cut short by the loss is tried once more on the
//!   new connection (an event may then be stored twice, as with daprd: at
//!   least once).
//! - **Consuming.** A consumer whose channel or connection is lost
//!   subscribes again after each reconnect wait (Dapr's metadata
//!   `reconnectWaitSeconds` for pub/sub, 3 s by default, and
//!   `reconnectWaitInSeconds` for bindings, 5 s) until it is back, or until
//!   nobody reads it any more ([`next_delivery`]). What was not
//!   acknowledged went back to the queue with the old connection and comes
//!   again.
//!
//! A new connection is always made on the runtime that made the first one,
//! so its I/O does not depend on the thread that noticed the loss (the
//! subscriptions run on a runtime of their own).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::StreamExt;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A RabbitMQ connection that connects again when it was lost.
pub(crate) struct RabbitConnection {
    url: String,
    /// The runtime every connection's I/O runs on.
    runtime: tokio::runtime::Handle,
    live: Mutex<Option<Live>>,
    /// Counts the connections made; see [`RabbitConnection::publisher`].
    generation: AtomicU64,
}

/// The current connection and its publishing channel.
struct Live {
    connection: Connection,
    publisher: Channel,
}

/// A consumer ([`consume_queue`]) and the channel it lives on: closing the
/// channel (dropping this) returns the messages not acknowledged to the
/// queue.
pub(crate) struct Subscription {
    _channel: Channel,
    deliveries: Consumer,
}

impl RabbitConnection {
    /// Connects to `url` now, so that a wrong URL or a broker that is down
    /// is reported at start-up.
    pub(crate) async fn open(url: &str) -> Result<RabbitConnection, String> {
        let connection = RabbitConnection {
            url: url.to_string(),
            runtime: tokio::runtime::Handle::current(),
            live: Mutex::new(None),
            generation: AtomicU64::new(0),
        };
        connection.publisher().await?;
        Ok(connection)
    }

    /// The channel to publish on, and the generation of its connection:
    /// a number that changes with every new connection, for what must be
    /// done again on a new one (declaring an exchange).
    pub(crate) async fn publisher(&self) -> Result<(Channel, u64), String> {
        let mut live = self.live.lock().await;
        let current = self.connected(&mut live).await?;
        if !current.publisher.status().connected() {
            // RabbitMQ closes a channel, but not its connection, on a
            // channel-level error (a missing queue or exchange).
            current.publisher = open_publisher(&current.connection).await?;
        }
        Ok((
            current.publisher.clone(),
            self.generation.load(Ordering::Relaxed),
        ))
    }

    /// A new channel of its own, for a consumer.
    pub(crate) async fn channel(&self) -> Result<Channel, String> {
        let mut live = self.live.lock().await;
        let current = self.connected(&mut live).await?;
        current
            .connection
            .create_channel()
            .await
            .map_err(|e| format!("RabbitMQ: {e}"))
    }

    /// Runs `publish` on the publishing channel; when it fails because
    /// that channel was lost meanwhile, once more on a new one.
    pub(crate) async fn publishing<T, F, Fut>(&self, publish: F) -> Result<T, String>
    where
        F: Fn(Channel, u64) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let (channel, generation) = self.publisher().await?;
        match publish(channel.clone(), generation).await {
            Err(err) if !channel.status().connected() => {
                tracing::warn!(error = %err, "RabbitMQ lost the publishing channel; publishing again on a new one");
                let (channel, generation) = self.publisher().await?;
                publish(channel, generation).await
            }
            done => done,
        }
    }

    /// The live connection, connecting again first when it was lost.
    async fn connected<'a>(&self, live: &'a mut Option<Live>) -> Result<&'a mut Live, String> {
        if live
            .as_ref()
            .is_some_and(|l| !l.connection.status().connected())
        {
            tracing::warn!("the RabbitMQ connection was lost; connecting again");
            *live = None;
        }
        if live.is_none() {
            let url = self.url.clone();
            let fresh = self
                .runtime
                .spawn(async move { dial(&url).await })
                .await
                .map_err(|e| format!("RabbitMQ: connecting stopped: {e}"))??;
            if self.generation.fetch_add(1, Ordering::Relaxed) > 0 {
                tracing::info!("connected to RabbitMQ again");
            }
            *live = Some(fresh);
        }
        live.as_mut()
            .ok_or_else(|| "RabbitMQ: no connection".to_string())
    }
}

/// Connects, within [`CONNECT_TIMEOUT`], and opens the publishing channel.
async fn dial(url: &str) -> Result<Live, String> {
    let connection = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| format!("no answer from RabbitMQ within {CONNECT_TIMEOUT:?}"))?
    .map_err(|e| format!("RabbitMQ: {e}"))?;
    let publisher = open_publisher(&connection).await?;
    Ok(Live {
        connection,
        publisher,
    })
}

/// A new channel to publish on, in confirm mode: a publish returns once
/// RabbitMQ has the message ([`publish_confirmed`]).
async fn open_publisher(connection: &Connection) -> Result<Channel, String> {
    let failed = |e: lapin::Error| format!("RabbitMQ: {e}");
    let channel = connection.create_channel().await.map_err(failed)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(failed)?;
    Ok(channel)
}

/// Consumes `queue` on `channel`, with at most `prefetch` messages
/// unacknowledged at once (0: no limit).
pub(crate) async fn consume_queue(
    channel: Channel,
    queue: &str,
    prefetch: u16,
) -> Result<Subscription, String> {
    let failed = |e: lapin::Error| format!("RabbitMQ: {e}");
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(failed)?;
    let deliveries = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed)?;
    Ok(Subscription {
        _channel: channel,
        deliveries,
    })
}

/// Publishes `payload` to `exchange` with `routing_key` on `channel` (one
/// of [`RabbitConnection::publisher`]'s, in confirm mode) and waits for
/// RabbitMQ to confirm that it has the message.
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await
        .map_err(|e| format!("RabbitMQ: {e}"))?
        .await
        .map_err(|e| format!("RabbitMQ: {e}"))?;
    if confirmation.is_nack() {
        return Err("RabbitMQ refused the message".into());
    }
    Ok(())
}

/// The next message of `subscription`, or `None` once whoever reads them is
/// gone (`reader` closed). When the consumer fails or ends (its channel or
/// connection was lost, its queue deleted), `subscribe` makes a new one
/// every `wait` until it succeeds.
pub(crate) async fn next_delivery<T, F, Fut>(
    reader: &mpsc::Sender<T>,
    subscription: &mut Subscription,
    queue: &str,
    wait: Duration,
    subscribe: &F,
) -> Option<Delivery>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Subscription, String>>,
{
    loop {
        let next = tokio::select! {
            () = reader.closed() => return None,
            next = subscription.deliveries.next() => next,
        };
        match next {
            Some(Ok(delivery)) => return Some(delivery),
            Some(Err(err)) => {
                tracing::warn!(%queue, error = %err, "the RabbitMQ consumer failed; subscribing again in {wait:?}");
            }
            None => {
                tracing::warn!(%queue, "the RabbitMQ consumer was cancelled; subscribing again in {wait:?}");
            }
        }
        loop {
            tokio::select! {
                () = reader.closed() => return None,
                () = tokio::time::sleep(wait) => {}
            }
            match subscribe().await {
                Ok(again) => {
                    tracing::info!(%queue, "the RabbitMQ consumer is back");
                    *subscription = again;
                    break;
                }
                Err(err) => {
                    tracing::warn!(%queue, error = %err, "cannot subscribe to RabbitMQ again; trying again in {wait:?}");
                }
            }
        }
    }
}

/// The reconnect wait in the component's metadata item `name`, or
/// `default`: a Go duration (`500ms`, `2s`) or, as Dapr reads it, a bare
/// number of seconds.
pub(crate) fn reconnect_wait(
    properties: &std::collections::HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    match properties
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(text) => service_kit::units::parse_duration(text).map_err(|e| format!("{name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_reconnect_wait_is_seconds_or_a_go_duration() {
        let properties = HashMap::from([("wait".to_string(), " 2 ".to_string())]);
        assert_eq!(
            reconnect_wait(&properties, "wait", Duration::from_secs(3)),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            reconnect_wait(&HashMap::new(), "wait", Duration::from_secs(3)),
            Ok(Duration::from_secs(3))
        );
        let go = HashMap::from([("wait".to_string(), "500ms".to_string())]);
        assert_eq!(
            reconnect_wait(&go, "wait", Duration::from_secs(3)),
            Ok(Duration::from_millis(500))
        );
        let bad = HashMap::from([("wait".to_string(), "soon".to_string())]);
        assert!(
            reconnect_wait(&bad, "wait", Duration::from_secs(3))
                .is_err_and(|e| e.starts_with("wait: ")),
        );
    }
}
