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
//!   The producer's event loop writes the publishes queued for it, as
//!   many as rumqttc's window of unacknowledged ones (100) allows, before
//!   one flush ([`run_producer`]); rumqttc's own request queue writes and
//!   flushes each by itself.
//! - Subscriptions are QoS 1 on a persistent session (`cleanSession`
//!   false by default), so the broker keeps events for the app while its
//!   sidecar is away. Events are acknowledged to the broker only once the
//!   sidecar is done with them (manual acks); unacknowledged ones are sent
//!   again when the client reconnects. A broker that comes back without
//!   the session (it restarted without its data) is subscribed to again
//!   ([`subscribe_again`]).
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
//! - Acknowledgements are written by the consumer's event loop itself,
//!   as many as are owed in one write ([`run_consumer`]): through
//!   rumqttc's request queue, a bulk delivery's hundred acks were a
//!   hundred system calls (writes were half the sidecar's CPU in the MQTT
//!   bench, docs/performance.md). An ack carries the number of the
//!   connection its event came on, and one owed to an earlier connection
//!   is dropped: the broker sends that event again, and a packet id of a
//!   new connection may already name another event.
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
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, Publish, QoS, Request,
    Subscribe, SubscribeFilter,
};
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER};

/// How long after the consumer connects an event for a topic no
/// subscription here has asked for is held, waiting for one: every
/// subscription of the app starts within moments of the first.
pub const STALE_TOPIC_GRACE: Duration = Duration::from_secs(30);

/// The most acknowledgements the consumer writes at once.
const ACK_BATCH: usize = 1024;

/// The most publishes the producer takes from its queue at once.
const PUBLISH_BATCH: usize = 256;

/// A publish on its way to the broker, and who waits for its
/// acknowledgement.
struct Outbound {
    publish: Publish,
    acknowledged: oneshot::Sender<()>,
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
    held: HashMap<String, Vec<Received>>,
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
    events: mpsc::UnboundedSender<Received>,
}

/// An event as the consumer received it, and the number of the connection
/// it came on: its acknowledgement is good on that connection only.
struct Received {
    publish: Publish,
    connection: u64,
}

/// An acknowledgement owed to the broker ([`run_consumer`] writes it).
struct Ack {
    pkid: u16,
    connection: u64,
}

impl Received {
    fn ack(&self) -> Ack {
        Ack {
            pkid: self.publish.pkid,
            connection: self.connection,
        }
    }
}

impl Routes {
    /// Queues `event` for the forwarder of the subscription that asks for
    /// its topic; gives it back when none is running.
    fn route(&mut self, event: Received) -> Result<(), Received> {
        let topic = &event.publish.topic;
        let forwarder = match self.forwarders.get(topic) {
            Some(forwarder) => forwarder,
            None => match self
                .forwarders
                .iter()
                .find(|(filter, _)| filter_matches(filter, topic))
            {
                Some((_, forwarder)) => forwarder,
                None => return Err(event),
            },
        };
        let id = forwarder.id;
        let Err(gone) = forwarder.events.send(event) else {
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
    fn take_held(&mut self, filter: &str) -> Vec<Received> {
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

    /// Queues `event` for its topic's forwarder, or holds it for the
    /// topic's next subscription.
    fn route_or_hold(&mut self, event: Received) {
        if let Err(event) = self.route(event) {
            self.hold(event);
        }
    }

    /// Holds `event` for its topic's next subscription.
    fn hold(&mut self, event: Received) {
        self.held
            .entry(event.publish.topic.clone())
            .or_default()
            .push(event);
    }
}

/// The consumer connection, its routes, and the queue of the
/// acknowledgements its event loop writes.
struct Consumer {
    client: AsyncClient,
    routes: Arc<Mutex<Routes>>,
    acks: mpsc::UnboundedSender<Ack>,
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
    /// The producer's queue ([`run_producer`]).
    outbound: mpsc::UnboundedSender<Outbound>,
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
        // The event loop keeps the request queue open; publishes go to it
        // through `outbound`, not through the client.
        let (_, events) = connection.open(&producer_id).await?;
        let (outbound, queue) = mpsc::unbounded_channel();
        tokio::spawn(run_producer(events, queue));
        Ok(MqttBroker {
            connection,
            consumer_id: consumer_id.to_string(),
            outbound,
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
                let (acks, owed) = mpsc::unbounded_channel();
                tokio::spawn(run_consumer(events, owed, routes.clone()));
                tokio::spawn(end_grace(client.clone(), acks.clone(), routes.clone()));
                Ok(Consumer {
                    client,
                    routes,
                    acks,
                })
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

/// Drives the producer: writes the queued publishes, as many as the
/// window of unacknowledged ones allows, in one flush, and hands each
/// acknowledgement to its waiter. The queue is read only while there is
/// room in the window, so `poll` (which reads the acknowledgements) is
/// never starved. As on the consumer ([`run_consumer`]), racing `poll`
/// is safe: reading writes nothing here unless the broker acknowledged
/// out of order (a packet id collision, below).
async fn run_producer(mut events: EventLoop, mut queue: mpsc::UnboundedReceiver<Outbound>) {
    let mut taken = Vec::with_capacity(PUBLISH_BATCH);
    let mut queued = VecDeque::new();
    // Waiters by packet id; after a collision two share one, in order.
    let mut sent: HashMap<u16, VecDeque<oneshot::Sender<()>>> = HashMap::new();
    loop {
        let room = events.network.is_some() && has_room(&events);
        let polled = tokio::select! {
            biased;
            count = queue.recv_many(&mut taken, PUBLISH_BATCH), if room => {
                if count == 0 {
                    return; // the broker is gone
                }
                queued.extend(taken.drain(..));
                None
            }
            polled = events.poll() => Some(polled),
        };
        match polled {
            // rumqttc sends the unacknowledged publishes again when the
            // broker kept the session; a new session drops them, and
            // their callers hear so now, not at their timeout.
            Some(Ok(Event::Incoming(Packet::ConnAck(connack)))) if !connack.session_present => {
                sent.clear();
            }
            None | Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                if let Some(waiter) = sent.get_mut(&ack.pkid).and_then(VecDeque::pop_front) {
                    let _ = waiter.send(());
                }
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => {
                pause_after(&err, "producer").await;
                continue;
            }
        }
        if !queued.is_empty()
            && let Err(err) = write_publishes(&mut events, &mut queued, &mut sent).await
        {
            tracing::warn!(error = %err, "MQTT producer connection failed; reconnecting");
            events.clean();
        }
    }
}

/// After a reconnect to a broker that kept no session for this consumer
/// (it restarted without its data, or `cleanSession`): subscribes again to
/// every topic subscribed so far, first thing on the new connection, or
/// nothing more would come.
fn subscribe_again(events: &mut EventLoop, routes: &Mutex<Routes>) {
    let topics: Vec<String> = lock(routes).subscribed.iter().cloned().collect();
    if topics.is_empty() {
        return;
    }
    tracing::warn!(
        topics = topics.len(),
        "the MQTT broker kept no session for this consumer; subscribing again"
    );
    let filters = topics
        .into_iter()
        .map(|topic| SubscribeFilter::new(topic, QoS::AtLeastOnce));
    events
        .pending
        .push_front(Request::Subscribe(Subscribe::new_many(filters)));
}

/// Whether the producer may send another publish now: its window of
/// unacknowledged ones has room, and no packet id is waiting on a
/// collision.
fn has_room(events: &EventLoop) -> bool {
    events.state.inflight() < events.mqtt_options.inflight() && events.state.collision.is_none()
}

/// Writes publishes from `queued` while the window has room, then
/// flushes. rumqttc's state gives each its packet id and keeps it until
/// acknowledged, to send again after a reconnect.
async fn write_publishes(
    events: &mut EventLoop,
    queued: &mut VecDeque<Outbound>,
    sent: &mut HashMap<u16, VecDeque<oneshot::Sender<()>>>,
) -> Result<(), rumqttc::StateError> {
    let mut wrote = false;
    while has_room(events) {
        let Some(network) = events.network.as_mut() else {
            break;
        };
        let Some(Outbound {
            publish,
            acknowledged,
        }) = queued.pop_front()
        else {
            break;
        };
        match events
            .state
            .handle_outgoing_packet(rumqttc::Request::Publish(publish))?
        {
            Some(packet) => {
                if let Packet::Publish(publish) = &packet {
                    sent.entry(publish.pkid)
                        .or_default()
                        .push_back(acknowledged);
                }
                network.write(packet).await?;
                wrote = true;
            }
            // Its packet id is still unacknowledged: the state holds it
            // and sends it once that id is acknowledged.
            None => {
                if let Some(held) = &events.state.collision {
                    sent.entry(held.pkid).or_default().push_back(acknowledged);
                }
            }
        }
    }
    match events.network.as_mut() {
        Some(network) if wrote => network.flush().await,
        _ => Ok(()),
    }
}

/// Drives the consumer: each event to its topic's subscription, or held
/// for the next one ([`Routes`]); and the acknowledgements owed, as many
/// as are queued in one write.
///
/// Racing `poll` against the ack queue is safe on this connection: it
/// has manual acks and publishes nothing, so reading never writes, and
/// an event rumqttc has read is kept in its state for the next `poll`.
/// A cancelled write leaves its bytes in the write buffer, for the next
/// flush. The queue is not read while the connection is down, so a
/// reconnect is never cut short.
async fn run_consumer(
    mut events: EventLoop,
    mut owed: mpsc::UnboundedReceiver<Ack>,
    routes: Arc<Mutex<Routes>>,
) {
    // `Connection::open` saw the first connection's CONNACK.
    let mut connection = 0;
    let mut batch = Vec::with_capacity(ACK_BATCH);
    loop {
        let polled = tokio::select! {
            biased;
            taken = owed.recv_many(&mut batch, ACK_BATCH), if events.network.is_some() => {
                if taken == 0 {
                    return; // the broker is gone
                }
                acknowledge(&mut events, connection, &mut batch).await;
                continue;
            }
            polled = events.poll() => polled,
        };
        let publish = match polled {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                connection += 1;
                if !connack.session_present {
                    subscribe_again(&mut events, &routes);
                }
                continue;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => publish,
            Ok(_) => continue,
            Err(err) => {
                pause_after(&err, "consumer").await;
                continue;
            }
        };
        let event = Received {
            publish,
            connection,
        };
        let stale = {
            let mut routes = lock(&routes);
            match routes.route(event) {
                Ok(()) => None,
                Err(event) if routes.grace_over && !routes.is_subscribed(&event.publish.topic) => {
                    Some(event)
                }
                Err(event) => {
                    routes.hold(event);
                    None
                }
            }
        };
        if let Some(event) = stale {
            tracing::warn!(topic = %event.publish.topic, "dropped an MQTT event for a topic no subscription here asks for");
            batch.push(event.ack());
            acknowledge(&mut events, connection, &mut batch).await;
        }
    }
}

/// Writes the acknowledgements in `batch` ([`write_acks`]) and empties it.
/// A failed write drops the connection: rumqttc reconnects, and the broker
/// sends the unacknowledged events again.
async fn acknowledge(events: &mut EventLoop, connection: u64, batch: &mut Vec<Ack>) {
    if let Err(err) = write_acks(events, connection, batch).await {
        tracing::warn!(error = %err, acks = batch.len(), "cannot acknowledge MQTT events; they come again after a reconnect");
        events.clean();
    }
    batch.clear();
}

/// Writes the acknowledgements of `acks` owed to connection `connection`
/// (the current one) and flushes them, in one write when they fit the
/// socket. The others are dropped: their events come again.
async fn write_acks(
    events: &mut EventLoop,
    connection: u64,
    acks: &[Ack],
) -> Result<(), rumqttc::StateError> {
    let Some(network) = events.network.as_mut() else {
        return Ok(());
    };
    for ack in acks.iter().filter(|ack| ack.connection == connection) {
        let request = rumqttc::Request::PubAck(rumqttc::PubAck::new(ack.pkid));
        if let Some(packet) = events.state.handle_outgoing_packet(request)? {
            network.write(packet).await?;
        }
    }
    network.flush().await
}

/// An event handed to a subscription and not yet settled. Settled, it is
/// acknowledged to the broker; let go unsettled (its subscription stopped
/// with it in a buffer or with the app), it goes to the topic's next
/// subscription, since the broker will not send it again on this
/// connection.
struct Unsettled {
    event: Option<Received>,
    routes: Arc<Mutex<Routes>>,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            lock(&self.routes).route_or_hold(event);
        }
    }
}

/// Hands `event` to a subscription, to be acknowledged to the broker
/// once the sidecar is done with it; `false` if the subscription has gone
/// (the event then goes to the topic's next one).
async fn forward(
    acks: &mpsc::UnboundedSender<Ack>,
    routes: &Arc<Mutex<Routes>>,
    subscriber: &mpsc::Sender<Message>,
    event: Received,
) -> bool {
    let acks = acks.clone();
    let payload = event.publish.payload.to_vec();
    let topic = event.publish.topic.clone();
    let mut unsettled = Unsettled {
        event: Some(event),
        routes: routes.clone(),
    };
    let message = Message::new(payload, move || {
        if let Some(event) = unsettled.event.take() {
            // Only fails once the consumer has stopped; the event then
            // comes again with the next session.
            let _ = acks.send(event.ack());
        }
    })
    .with_topic(topic);
    subscriber.send(message).await.is_ok()
}

/// Once [`STALE_TOPIC_GRACE`] has passed: drops the held events of topics
/// never subscribed, and unsubscribes those topics.
async fn end_grace(
    client: AsyncClient,
    acks: mpsc::UnboundedSender<Ack>,
    routes: Arc<Mutex<Routes>>,
) {
    tokio::time::sleep(STALE_TOPIC_GRACE).await;
    let stale: Vec<(String, Vec<Received>)> = {
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
        for event in &events {
            let _ = acks.send(event.ack());
        }
        let _ = client.unsubscribe(&topic).await;
    }
}

/// Forwards `topic`'s events to its subscription until that ends: the
/// held ones first, then the new ones as they come. Then the events still
/// queued here go to the topic's next subscription.
async fn forward_topic(
    acks: mpsc::UnboundedSender<Ack>,
    routes: Arc<Mutex<Routes>>,
    topic: String,
    subscriber: mpsc::Sender<Message>,
) {
    let (events, mut queue) = mpsc::unbounded_channel();
    let id = {
        let mut routes = lock(&routes);
        for event in routes.take_held(&topic) {
            let _ = events.send(event);
        }
        routes.forwarders_started += 1;
        let id = routes.forwarders_started;
        routes
            .forwarders
            .insert(topic.clone(), Forwarder { id, events });
        id
    };
    loop {
        let event = tokio::select! {
            event = queue.recv() => event,
            () = subscriber.closed() => None,
        };
        let Some(event) = event else { break };
        if !forward(&acks, &routes, &subscriber, event).await {
            break;
        }
    }
    let mut routes = lock(&routes);
    if routes.forwarders.get(&topic).is_some_and(|f| f.id == id) {
        routes.forwarders.remove(&topic);
    }
    queue.close();
    while let Ok(event) = queue.try_recv() {
        routes.route_or_hold(event);
    }
}

#[async_trait::async_trait]
impl Broker for MqttBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        if topic.contains(['+', '#']) {
            return Err(BrokerError::Backend(format!(
                "cannot publish to {topic}: an MQTT topic name has no wildcards"
            )));
        }
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.retain = self.retain;
        let (waiter, acknowledged) = oneshot::channel();
        self.outbound
            .send(Outbound {
                publish,
                acknowledged: waiter,
            })
            .map_err(|_| BrokerError::Backend("the MQTT producer has stopped".into()))?;
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
            consumer.acks.clone(),
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
