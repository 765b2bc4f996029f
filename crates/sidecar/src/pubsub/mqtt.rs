//! `pubsub.mqtt3`: MQTT 3.1.1 with QoS 1.
//!
//! - A topic is an MQTT topic, and a subscription's topic may be a filter
//!   with MQTT's wildcards (`sensors/+/temperature`, `fleet/#`): it gets
//!   the events of every topic the filter matches.
//! - The component has two connections, as
//!   Dapr's `pubsub.mqtt` has: a producer (client id `producerID`, by
//!   default `{consumerID}-producer`) that publishes, and a consumer
//!   (client id `consumerID`) that subscribes, opened at the first
//!   subscription. Each has its own event loop, and the consumer's runs
//!   where the subscriptions run (the delivery thread), so publishing and
//!   delivering do not take turns on one connection. An app that only
//!   publishes never opens a consumer session.
//! - A publish returns once the broker has acknowledged it (`PUBACK`).
//! - Subscriptions are QoS 1 on a persistent session (`cleanSession`
//!   false by default), so the broker keeps events for the app while its
//!   sidecar is away. Events are acknowledged to the broker only once the
//!   sidecar is done with them (manual acks); unacknowledged ones are sent
//!   again when the client reconnects.
//! - The broker sends a persistent session's events as soon as the
//!   consumer connects, and between a subscription's end (the app turned
//!   unhealthy) and its restart. Such an event is **held**, unacknowledged,
//!   and handed to the topic's next subscription ([`Routes`]). An MQTT
//!   broker never sends an unacknowledged event again on the same
//!   connection, so acknowledging it, or letting it go, would lose it. An
//!   event for a topic this sidecar has not subscribed to by
//!   [`STALE_TOPIC_GRACE`] after connecting (one the session kept from an
//!   earlier run of the app) is dropped with a warning, and the topic is
//!   unsubscribed.
//! - The consumer's event loop never waits for the app: each topic has a
//!   forwarder task ([`forward_topic`]) with a queue of its own, so a slow
//!   app does not stop the connection being read. (It did: with the loop
//!   waiting on a full subscription, the broker's keep-alive answer went
//!   unread and the client dropped the connection, "Last pingreq isn't
//!   acked".)
//!
//! Metadata: `url` (default `tcp://localhost:1883`), `qos` (only 1),
//! `retain`, `cleanSession`, `producerID`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, Publish, QoS,
};
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER};

/// How long after the consumer connects an event for a topic no
/// subscription here has asked for is held, waiting for one: every
/// subscription of the app starts within moments of the first.
pub const STALE_TOPIC_GRACE: Duration = Duration::from_secs(30);

/// Publishes waiting for the broker's acknowledgement: first in the order
/// they were handed to the client, then by packet id.
#[derive(Default)]
struct Waiting {
    queued: VecDeque<oneshot::Sender<()>>,
    sent: HashMap<u16, oneshot::Sender<()>>,
}

/// Where the consumer's events go. The consumer's event loop never waits
/// for a subscription: it hands each event to its topic's forwarder
/// ([`forward_topic`]) or holds it, so it goes on reading the connection
/// (and answering the broker's keep-alive) while the app is slow. The
/// broker's window of unacknowledged events bounds what is queued here.
#[derive(Default)]
struct Routes {
    /// The forwarder of each running subscription, by its topic or topic
    /// filter.
    forwarders: HashMap<String, Forwarder>,
    /// Tells forwarders apart when one takes over a topic from another.
    forwarders_started: u64,
    /// Events no running subscription matches, unacknowledged, by topic,
    /// in the broker's order.
    held: HashMap<String, Vec<Publish>>,
    /// Every topic or filter subscribed since the consumer connected: the
    /// events it matches are held for however long its subscription is
    /// away.
    subscribed: HashSet<String>,
    /// Set once [`STALE_TOPIC_GRACE`] has passed: an event for a topic
    /// never subscribed is then dropped at once.
    grace_over: bool,
}

/// Whether the MQTT topic filter `filter` matches `topic`: `+` stands
/// for one level, a trailing `#` for any number (none included), and a
/// filter that starts with a wildcard does not match a `$` topic.
fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(name) if level == "+" || level == name => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// The queue of a topic's forwarder.
struct Forwarder {
    id: u64,
    events: mpsc::UnboundedSender<Publish>,
}

impl Routes {
    /// Queues `publish` for the forwarder of the subscription that asks for
    /// its topic; gives it back when none is running.
    fn route(&mut self, publish: Publish) -> Result<(), Publish> {
        let forwarder = match self.forwarders.get(&publish.topic) {
            Some(forwarder) => forwarder,
            None => match self
                .forwarders
                .iter()
                .find(|(filter, _)| filter_matches(filter, &publish.topic))
            {
                Some((_, forwarder)) => forwarder,
                None => return Err(publish),
            },
        };
        let id = forwarder.id;
        let Err(gone) = forwarder.events.send(publish) else {
            return Ok(());
        };
        self.forwarders.retain(|_, f| f.id != id);
        Err(gone.0)
    }

    /// Whether a subscription since the consumer connected asks for
    /// `topic`, by name or by a filter that matches it.
    fn is_subscribed(&self, topic: &str) -> bool {
        self.subscribed
            .iter()
            .any(|filter| filter_matches(filter, topic))
    }

    /// Takes the held events of every topic `filter` matches.
    fn take_held(&mut self, filter: &str) -> Vec<Publish> {
        let topics: Vec<String> = self
            .held
            .keys()
            .filter(|topic| filter_matches(filter, topic))
            .cloned()
            .collect();
        topics
            .iter()
            .filter_map(|topic| self.held.remove(topic))
            .flatten()
            .collect()
    }

    /// Queues `publish` for its topic's forwarder, or holds it for the
    /// topic's next subscription.
    fn route_or_hold(&mut self, publish: Publish) {
        if let Err(publish) = self.route(publish) {
            self.hold(publish);
        }
    }

    /// Holds `publish` for its topic's next subscription.
    fn hold(&mut self, publish: Publish) {
        self.held
            .entry(publish.topic.clone())
            .or_default()
            .push(publish);
    }
}

/// The consumer connection and its routes.
struct Consumer {
    client: AsyncClient,
    routes: Arc<Mutex<Routes>>,
}

/// How to connect: the broker's address and the component's settings.
struct Connection {
    url: String,
    host: String,
    port: u16,
    clean_session: bool,
}

impl Connection {
    /// Connects as `client_id` and waits for the broker's `CONNACK`, so a
    /// wrong url fails here.
    async fn open(&self, client_id: &str) -> Result<(AsyncClient, EventLoop), BrokerError> {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_clean_session(self.clean_session)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut events) = AsyncClient::new(options, 64);
        // No Nagle delay: an ack or a publish is one small packet, and
        // waiting to coalesce it cost about 20 ms per event.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        let url = &self.url;
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(err) => return Err(err),
                }
            }
        })
        .await
        .map_err(|_| BrokerError::Backend(format!("no answer from MQTT at {url} within 5s")))?;
        connected.map_err(|e| BrokerError::Backend(format!("MQTT at {url}: {e}")))?;
        Ok((client, events))
    }
}

/// An MQTT broker.
pub struct MqttBroker {
    connection: Connection,
    consumer_id: String,
    producer: AsyncClient,
    waiting: Arc<Mutex<Waiting>>,
    /// Orders publishes, so packet ids match their waiters.
    publishing: tokio::sync::Mutex<()>,
    retain: bool,
    consumer: OnceCell<Consumer>,
}

fn backend(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

impl MqttBroker {
    /// Connects the producer, as `producerID` (by default
    /// `{consumer_id}-producer`), with the component's metadata; the
    /// consumer connects as `consumer_id` at the first subscription.
    pub async fn open(
        properties: &HashMap<String, String>,
        consumer_id: &str,
    ) -> Result<Self, BrokerError> {
        let setting = |name: &str| properties.get(name).filter(|v| !v.is_empty());
        let url = setting("url").map_or("tcp://localhost:1883", String::as_str);
        let address = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("mqtt://"))
            .ok_or_else(|| BrokerError::Metadata(format!("url {url}: use tcp://host:port")))?;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .unwrap_or((address.to_string(), 1883));
        if let Some(qos) = setting("qos").filter(|q| *q != "1") {
            return Err(BrokerError::Metadata(format!(
                "qos {qos} is not supported: events are at least once (qos 1)"
            )));
        }
        let flag = |name: &str, default: bool| {
            setting(name).map_or(default, |v| v.eq_ignore_ascii_case("true"))
        };
        let connection = Connection {
            url: url.to_string(),
            host,
            port,
            clean_session: flag("cleanSession", false),
        };
        let producer_id = setting("producerID")
            .cloned()
            .unwrap_or_else(|| format!("{consumer_id}-producer"));
        let (producer, events) = connection.open(&producer_id).await?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        tokio::spawn(run_producer(events, waiting.clone()));
        Ok(MqttBroker {
            connection,
            consumer_id: consumer_id.to_string(),
            producer,
            waiting,
            publishing: tokio::sync::Mutex::new(()),
            retain: flag("retain", false),
            consumer: OnceCell::new(),
        })
    }

    /// The consumer connection, opened on first use (on the runtime of
    /// the caller, the subscriptions').
    async fn consumer(&self) -> Result<&Consumer, BrokerError> {
        self.consumer
            .get_or_try_init(|| async {
                let (client, events) = self.connection.open(&self.consumer_id).await?;
                let routes = Arc::new(Mutex::new(Routes::default()));
                tokio::spawn(run_consumer(events, client.clone(), routes.clone()));
                tokio::spawn(end_grace(client.clone(), routes.clone()));
                Ok(Consumer { client, routes })
            })
            .await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs a failed connection and pauses before its event loop polls
/// again: rumqttc reconnects on the next poll.
async fn pause_after(err: &rumqttc::ConnectionError, which: &str) {
    tracing::warn!(error = %err, "MQTT {which} connection failed; reconnecting in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Drives the producer: publish acknowledgements to their waiters.
async fn run_producer(mut events: EventLoop, waiting: Arc<Mutex<Waiting>>) {
    loop {
        match events.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut waiting = lock(&waiting);
                // A resent packet already has its waiter.
                if !waiting.sent.contains_key(&pkid)
                    && let Some(waiter) = waiting.queued.pop_front()
                {
                    waiting.sent.insert(pkid, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(waiter) = lock(&waiting).sent.remove(&ack.pkid) {
                    let _ = waiter.send(());
                }
            }
            Ok(_) => {}
            Err(err) => pause_after(&err, "producer").await,
        }
    }
}

/// Drives the consumer: each event to its topic's subscription, or held
/// for the next one ([`Routes`]).
async fn run_consumer(mut events: EventLoop, client: AsyncClient, routes: Arc<Mutex<Routes>>) {
    loop {
        let publish = match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => publish,
            Ok(_) => continue,
            Err(err) => {
                pause_after(&err, "consumer").await;
                continue;
            }
        };
        let stale = {
            let mut routes = lock(&routes);
            match routes.route(publish) {
                Ok(()) => None,
                Err(publish) if routes.grace_over && !routes.is_subscribed(&publish.topic) => {
                    Some(publish)
                }
                Err(publish) => {
                    routes.hold(publish);
                    None
                }
            }
        };
        if let Some(publish) = stale {
            tracing::warn!(topic = %publish.topic, "dropped an MQTT event for a topic no subscription here asks for");
            // Not awaited: this task is what drains the client's requests.
            if let Err(err) = client.try_ack(&publish) {
                tracing::warn!(error = %err, "cannot acknowledge a dropped MQTT event; it comes again after a reconnect");
            }
        }
    }
}

/// An event handed to a subscription and not yet settled. Settled, it is
/// acknowledged to the broker; let go unsettled (its subscription stopped
/// with it in a buffer or with the app), it goes to the topic's next
/// subscription, since the broker will not send it again on this
/// connection.
struct Unsettled {
    publish: Option<Publish>,
    routes: Arc<Mutex<Routes>>,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(publish) = self.publish.take() {
            lock(&self.routes).route_or_hold(publish);
        }
    }
}

/// Hands `publish` to a subscription, to be acknowledged to the broker
/// once the sidecar is done with it; `false` if the subscription has gone
/// (the event then goes to the topic's next one).
///
/// Not [`super::hand_on`]'s task per ack: an MQTT ack is a push onto the client's
/// queue, done at once when the queue has room (nearly always), and in a
/// task of its own only when it is full.
async fn forward(
    client: &AsyncClient,
    routes: &Arc<Mutex<Routes>>,
    subscriber: &mpsc::Sender<Message>,
    publish: Publish,
) -> bool {
    let acker = client.clone();
    let payload = publish.payload.to_vec();
    let mut unsettled = Unsettled {
        publish: Some(publish),
        routes: routes.clone(),
    };
    let message = Message::new(payload, move || {
        let Some(publish) = unsettled.publish.take() else {
            return;
        };
        if acker.try_ack(&publish).is_err() {
            tokio::spawn(async move {
                if let Err(err) = acker.ack(&publish).await {
                    tracing::warn!(error = %err, "cannot acknowledge an event; it will come again");
                }
            });
        }
    });
    subscriber.send(message).await.is_ok()
}

/// Once [`STALE_TOPIC_GRACE`] has passed: drops the held events of topics
/// never subscribed, and unsubscribes those topics.
async fn end_grace(client: AsyncClient, routes: Arc<Mutex<Routes>>) {
    tokio::time::sleep(STALE_TOPIC_GRACE).await;
    let stale: Vec<(String, Vec<Publish>)> = {
        let mut routes = lock(&routes);
        routes.grace_over = true;
        let topics: Vec<String> = routes
            .held
            .keys()
            .filter(|topic| !routes.is_subscribed(topic))
            .cloned()
            .collect();
        topics
            .into_iter()
            .filter_map(|topic| routes.held.remove_entry(&topic))
            .collect()
    };
    for (topic, events) in stale {
        tracing::warn!(%topic, dropped = events.len(), "the MQTT session subscribes to a topic this app no longer subscribes to: unsubscribed, and its events dropped");
        for publish in &events {
            let _ = client.ack(publish).await;
        }
        let _ = client.unsubscribe(&topic).await;
    }
}

/// Forwards `topic`'s events to its subscription until that ends: the
/// held ones first, then the new ones as they come. Then the events still
/// queued here go to the topic's next subscription.
async fn forward_topic(
    client: AsyncClient,
    routes: Arc<Mutex<Routes>>,
    topic: String,
    subscriber: mpsc::Sender<Message>,
) {
    let (events, mut queue) = mpsc::unbounded_channel();
    let id = {
        let mut routes = lock(&routes);
        for publish in routes.take_held(&topic) {
            let _ = events.send(publish);
        }
        routes.forwarders_started += 1;
        let id = routes.forwarders_started;
        routes
            .forwarders
            .insert(topic.clone(), Forwarder { id, events });
        id
    };
    loop {
        let publish = tokio::select! {
            publish = queue.recv() => publish,
            () = subscriber.closed() => None,
        };
        let Some(publish) = publish else { break };
        if !forward(&client, &routes, &subscriber, publish).await {
            break;
        }
    }
    let mut routes = lock(&routes);
    if routes.forwarders.get(&topic).is_some_and(|f| f.id == id) {
        routes.forwarders.remove(&topic);
    }
    queue.close();
    while let Ok(publish) = queue.try_recv() {
        routes.route_or_hold(publish);
    }
}

#[async_trait::async_trait]
impl Broker for MqttBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let (waiter, acknowledged) = oneshot::channel();
        {
            let _order = self.publishing.lock().await;
            lock(&self.waiting).queued.push_back(waiter);
            self.producer
                .publish(topic, QoS::AtLeastOnce, self.retain, payload)
                .await
                .map_err(backend)?;
        }
        tokio::time::timeout(Duration::from_secs(10), acknowledged)
            .await
            .map_err(|_| {
                BrokerError::Backend("the MQTT broker did not acknowledge within 10s".into())
            })?
            .map_err(|_| BrokerError::Backend("the MQTT connection closed".into()))
    }

    async fn subscribe(
        &self,
        topic: &str,
        _consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let consumer = self.consumer().await?;
        lock(&consumer.routes).subscribed.insert(topic.to_string());
        consumer
            .client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(backend)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(forward_topic(
            consumer.client.clone(),
            consumer.routes.clone(),
            topic.to_string(),
            sender,
        ));
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::filter_matches;

    #[test]
    fn topic_filters_match_as_mqtt_defines() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "orders/eu", false),
            ("sensors/+/temperature", "sensors/kitchen/temperature", true),
            ("sensors/+/temperature", "sensors/kitchen/humidity", false),
            ("sensors/+/temperature", "sensors/a/b/temperature", false),
            ("sensors/+", "sensors/", true),
            ("sensors/+", "sensors", false),
            ("fleet/#", "fleet", true),
            ("fleet/#", "fleet/truck-7/position", true),
            ("fleet/#", "fleets/truck-7", false),
            ("#", "anything/at/all", true),
            ("+/status", "door/status", true),
            ("#", "$SYS/broker/uptime", false),
            ("+/broker/uptime", "$SYS/broker/uptime", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
        ];
        for (filter, topic, matches) in cases {
            assert_eq!(
                filter_matches(filter, topic),
                matches,
                "{filter} against {topic}"
            );
        }
    }
}
