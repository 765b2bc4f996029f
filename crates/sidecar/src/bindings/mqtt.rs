//! `bindings.mqtt3`: an MQTT topic as an input and output binding, as
//! Dapr's MQTT binding runs it, on the client `pubsub.mqtt3` uses
//! ([`MqttBroker`]): QoS 1, a producer connection (client id
//! `<consumerID>-producer`), and, once the binding is read, a consumer with
//! a persistent session (client id `<consumerID>-consumer`) that comes back
//! after the broker does.
//!
//! Metadata: `url` (`tcp://host:port`), `topic` and `consumerID` (each
//! required, as in daprd), `retain`, `cleanSession`, and the retries of an
//! event the app failed: `backOffMaxRetries` (default 0; -1 retries
//! forever) every `backOffDuration` (default 5 s).
//!
//! - Output: `create` publishes the data to the request metadata's `topic`
//!   (the component's by default) and answers 204 once the broker
//!   acknowledged it.
//! - Input: each message on `topic` (which may hold MQTT's wildcards) goes
//!   to the app with the metadata `topic`, the topic it was published to.
//!   It is acknowledged once the app took it; one the app failed is sent
//!   again `backOffMaxRetries` times, then dropped with a warning (daprd
//!   leaves it unacknowledged, where the broker holds it until the
//!   consumer reconnects, and the broker's window of unacknowledged
//!   messages fills up with such).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;
use crate::input_bindings::{Events, InputBinding, InputBindingError, InputEvent};
use crate::pubsub::mqtt::MqttBroker;
use crate::pubsub::{Broker, Message};

/// Dapr's default `backOffDuration`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);

/// A `bindings.mqtt3` component.
pub struct MqttBinding {
    name: String,
    broker: MqttBroker,
    topic: String,
    consumer_id: String,
    /// How often an event the app failed is sent again; `None`: forever.
    retries: Option<u64>,
    backoff: Duration,
}

impl MqttBinding {
    /// Reads the metadata and connects the producer.
    pub async fn open(
        name: String,
        properties: &HashMap<String, String>,
    ) -> Result<MqttBinding, String> {
        let required = |key: &str| {
            properties
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("metadata `{key}` is required"))
        };
        required("url")?;
        let topic = required("topic")?;
        let consumer_id = required("consumerID")?;
        let retries = match properties
            .get("backOffMaxRetries")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => Some(0),
            Some(text) => match text.parse::<i64>() {
                Ok(-1) => None,
                Ok(n) if n >= 0 => Some(n.unsigned_abs()),
                _ => return Err(format!("backOffMaxRetries `{text}`: use -1 or more")),
            },
        };
        let backoff = match properties
            .get("backOffDuration")
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            None => DEFAULT_BACKOFF,
            Some(text) => service_kit::units::parse_duration(text)
                .map_err(|e| format!("backOffDuration: {e}"))?,
        };
        let mut client = properties.clone();
        client.insert("producerID".into(), format!("{consumer_id}-producer"));
        let broker = MqttBroker::open(&client, &format!("{consumer_id}-consumer"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(MqttBinding {
            name,
            broker,
            topic,
            consumer_id,
            retries,
            backoff,
        })
    }
}

#[async_trait::async_trait]
impl OutputBinding for MqttBinding {
    fn operations(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        let topic = request
            .metadata
            .get("topic")
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.topic);
        self.broker
            .publish(topic, request.data.to_vec())
            .await
            .map_err(|e| invoke_failed(&self.name, format!("failed to publish: {e}")))?;
        Ok(None)
    }
}

#[async_trait::async_trait]
impl InputBinding for MqttBinding {
    async fn read(&self) -> Result<Events, InputBindingError> {
        let mut messages = self
            .broker
            .subscribe(&self.topic, &self.consumer_id)
            .await
            .map_err(|e| InputBindingError(e.to_string()))?;
        let (sender, events) = mpsc::channel(1);
        let (topic, retries, backoff) = (self.topic.clone(), self.retries, self.backoff);
        tokio::spawn(async move {
            while let Some(message) = messages.recv().await {
                match deliver(&sender, &topic, message, retries, backoff).await {
                    Delivered::Taken | Delivered::GaveUp => {}
                    Delivered::ReaderGone => return,
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            events,
        )))
    }
}

/// How one message's delivery ended.
enum Delivered {
    /// The app took it: acknowledged.
    Taken,
    /// The app failed it every time: dropped.
    GaveUp,
    /// Nobody reads the binding any more.
    ReaderGone,
}

/// Sends `message` to the app (through `sender`), again after `backoff`
/// up to `retries` times while the app fails it; acknowledges it once
/// taken, or given up on (so the broker does not send it again).
async fn deliver(
    sender: &mpsc::Sender<InputEvent>,
    subscribed: &str,
    message: Message,
    retries: Option<u64>,
    backoff: Duration,
) -> Delivered {
    let data = Bytes::from(message.payload.clone());
    let topic = message.topic.as_deref().unwrap_or(subscribed).to_string();
    let mut attempt: u64 = 0;
    loop {
        let (done, taken) = oneshot::channel();
        let event = InputEvent {
            data: data.clone(),
            metadata: HashMap::from([("topic".to_string(), topic.clone())]),
            done: Some(done),
        };
        if sender.send(event).await.is_err() {
            return Delivered::ReaderGone;
        }
        if taken.await.unwrap_or(false) {
            message.ack();
            return Delivered::Taken;
        }
        if retries.is_some_and(|most| attempt >= most) {
            tracing::warn!(%topic, attempts = attempt + 1, "the app failed an MQTT message every time; dropped");
            message.ack();
            return Delivered::GaveUp;
        }
        attempt += 1;
        tokio::select! {
            () = sender.closed() => return Delivered::ReaderGone,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}
