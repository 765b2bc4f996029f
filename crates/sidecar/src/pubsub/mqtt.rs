//! `pubsub.mqtt3`: MQTT 3.1.1 with QoS 1.
//!
//! - A topic is an MQTT topic. One client per component, whose id is the
//!   `consumerID`, publishes and subscribes. A publish returns once the
//!   broker has acknowledged it (`PUBACK`).
//! - Subscriptions are QoS 1 on a persistent session (`cleanSession`
//!   false by default), so the broker keeps events for the app while its
//!   sidecar is away. Events are acknowledged to the broker only once the
//!   sidecar is done with them (manual acks); unacknowledged ones are sent
//!   again when the client reconnects.
//!
//! Metadata: `url` (default `tcp://localhost:1883`), `qos` (only 1),
//! `retain`, `cleanSession`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, hand_on};

/// Publishes waiting for the broker's acknowledgement: first in the order
/// they were handed to the client, then by packet id.
#[derive(Default)]
struct Waiting {
    queued: VecDeque<oneshot::Sender<()>>,
    sent: HashMap<u16, oneshot::Sender<()>>,
}

/// Shared by the component and its event loop.
#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    subscribers: Mutex<HashMap<String, mpsc::Sender<Message>>>,
}

/// An MQTT broker.
pub struct MqttBroker {
    client: AsyncClient,
    shared: Arc<Shared>,
    /// Orders publishes, so packet ids match their waiters.
    publishing: tokio::sync::Mutex<()>,
    retain: bool,
}

fn backend(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

impl MqttBroker {
    /// Connects as `client_id` with the component's metadata.
    pub async fn open(
        properties: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<Self, BrokerError> {
        let url = properties
            .get("url")
            .filter(|u| !u.is_empty())
            .map(String::as_str)
            .unwrap_or("tcp://localhost:1883");
        let address = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("mqtt://"))
            .ok_or_else(|| BrokerError::Metadata(format!("url {url}: use tcp://host:port")))?;
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .unwrap_or((address.to_string(), 1883));
        if let Some(qos) = properties.get("qos").filter(|q| !q.is_empty() && *q != "1") {
            return Err(BrokerError::Metadata(format!(
                "qos {qos} is not supported: events are at least once (qos 1)"
            )));
        }
        let flag = |name: &str, default: bool| {
            properties
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| v.eq_ignore_ascii_case("true"))
                .unwrap_or(default)
        };
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_clean_session(flag("cleanSession", false))
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut events) = AsyncClient::new(options, 64);
        // No Nagle delay: an ack or a publish is one small packet, and
        // waiting to coalesce it cost about 20 ms per event.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        events.set_network_options(network);
        // Connect before answering, so a wrong url fails at start-up.
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
        let shared = Arc::new(Shared::default());
        tokio::spawn(run_events(events, client.clone(), shared.clone()));
        Ok(MqttBroker {
            client,
            shared,
            publishing: tokio::sync::Mutex::new(()),
            retain: flag("retain", false),
        })
    }
}

/// Drives the client: publish acknowledgements to their waiters, incoming
/// events to their subscription. Reconnects (rumqttc does, on the next
/// poll) after a pause when the connection fails.
async fn run_events(mut events: EventLoop, client: AsyncClient, shared: Arc<Shared>) {
    loop {
        let event = match events.poll().await {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "MQTT connection failed; reconnecting in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut waiting = shared.waiting.lock().unwrap_or_else(|p| p.into_inner());
                // A resent packet already has its waiter.
                if !waiting.sent.contains_key(&pkid)
                    && let Some(waiter) = waiting.queued.pop_front()
                {
                    waiting.sent.insert(pkid, waiter);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                let waiter = shared
                    .waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sent
                    .remove(&ack.pkid);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
            Event::Incoming(Packet::Publish(publish)) => {
                let subscriber = shared
                    .subscribers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&publish.topic)
                    .cloned();
                let Some(subscriber) = subscriber else {
                    // Not (or no longer) subscribed here: acknowledged so
                    // the broker does not resend it forever.
                    let _ = client.ack(&publish).await;
                    continue;
                };
                let acker = client.clone();
                let payload = publish.payload.to_vec();
                hand_on(&subscriber, payload, move || async move {
                    acker.ack(&publish).await
                })
                .await;
            }
            _ => {}
        }
    }
}

#[async_trait::async_trait]
impl Broker for MqttBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let (waiter, acknowledged) = oneshot::channel();
        {
            let _order = self.publishing.lock().await;
            self.shared
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queued
                .push_back(waiter);
            self.client
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
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), sender);
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .map_err(backend)?;
        Ok(receiver)
    }
}
