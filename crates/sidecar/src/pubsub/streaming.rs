//! Streaming subscriptions: gRPC `SubscribeTopicEventsAlpha1`, how Dapr's
//! SDKs subscribe to a topic without an app server (Python's
//! `DaprClient.subscribe`, Go's `Subscribe`, ...).
//!
//! The client opens the stream with an initial request (pub/sub, topic,
//! metadata such as `rawPayload`, a dead-letter topic); the sidecar answers
//! with an initial response and then sends each event as a
//! `TopicEventRequest` (the fields `OnTopicEvent` gets:
//! [`super::app_callback`]); the client answers each with
//! `event_processed` (its id and `SUCCESS`, `RETRY` or `DROP`).
//!
//! A streaming subscription is an ordinary [`Subscription`] whose
//! [`Subscriber`] takes the events instead of the app, so the line,
//! retries, dead letters and acknowledgements are [`super::delivery`]'s.
//! When the client hangs up, consuming stops; events it had not settled
//! are not acknowledged, and brokers that can deliver them again. While a
//! stream is open the metadata API lists it (`STREAMING`). As daprd, a
//! second stream on the same topic is refused, and a second initial
//! request ends its stream with an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dapr::dapr::proto::runtime::v1 as pb;
use pb::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as FromClient;
use pb::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as ToClient;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::app_callback::Verdict;
use super::delivery::CloudEvent;
use super::subscriptions::{Subscription, SubscriptionKind};
use crate::Sidecar;
use crate::error::DaprError;

/// The stream of answers to a streaming subscription's client.
pub(crate) type EventStream =
    tokio_stream::wrappers::ReceiverStream<Result<pb::SubscribeTopicEventsResponseAlpha1, Status>>;

/// The client of a streaming subscription: where its events go, and the
/// events waiting for its verdict.
#[derive(Clone)]
pub(crate) struct Subscriber(Arc<Waiting>);

struct Waiting {
    to_client: mpsc::Sender<Result<pb::SubscribeTopicEventsResponseAlpha1, Status>>,
    /// Each event sent and not yet settled, by id: where its status goes.
    verdicts: Mutex<HashMap<String, oneshot::Sender<i32>>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscriber")
    }
}

/// The same client (subscriptions compare equal only when they deliver to
/// the same place).
impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Subscriber {}

impl Subscriber {
    /// Sends `event` to the client and waits for its verdict.
    pub(crate) async fn deliver(&self, subscription: &Subscription, event: &CloudEvent) -> Verdict {
        let request = super::app_callback::topic_event_request(subscription, event)?;
        let id = request.id.clone();
        let (verdict, settled) = oneshot::channel();
        self.verdicts().insert(id.clone(), verdict);
        let message = pb::SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(ToClient::EventMessage(request)),
        };
        if self.0.to_client.send(Ok(message)).await.is_err() {
            self.verdicts().remove(&id);
            return Err("the subscriber has gone".into());
        }
        match settled.await {
            Ok(status) => super::app_callback::verdict(status, subscription, &id),
            Err(_) => Err("the subscriber has gone".into()),
        }
    }

    /// The client's verdict on an event it was sent.
    fn settle(&self, processed: pb::SubscribeTopicEventsRequestProcessedAlpha1) {
        let status = processed.status.map(|s| s.status).unwrap_or_default();
        match self.verdicts().remove(&processed.id) {
            Some(waiting) => {
                let _ = waiting.send(status);
            }
            None => {
                tracing::warn!(id = %processed.id, "a streaming subscriber settled an event it was not waiting on")
            }
        }
    }

    /// Takes this client's stream off the sidecar's open ones.
    fn close(&self, sidecar: &Sidecar) {
        sidecar
            .open_streams()
            .retain(|s| s.subscriber.as_ref() != Some(self));
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<i32>>> {
        self.0
            .verdicts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves one `SubscribeTopicEventsAlpha1` stream: reads its initial
/// request, subscribes, and answers with the stream of events.
pub(crate) async fn subscribe(
    sidecar: Arc<Sidecar>,
    mut from_client: tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>,
) -> Result<EventStream, Status> {
    let initial = match from_client.message().await? {
        Some(pb::SubscribeTopicEventsRequestAlpha1 {
            subscribe_topic_events_request_type: Some(FromClient::InitialRequest(initial)),
        }) => initial,
        _ => {
            return Err(DaprError::MalformedRequest(
                "a streaming subscription starts with its initial request".into(),
            )
            .to_status());
        }
    };
    // daprd's words.
    if initial.pubsub_name.is_empty() {
        return Err(DaprError::MalformedRequest("pubsubName name is required".into()).to_status());
    }
    if initial.topic.is_empty() {
        return Err(DaprError::MalformedRequest("topic is required".into()).to_status());
    }
    let pubsub = sidecar.pubsub(&initial.pubsub_name)?;
    let (to_client, answers) = mpsc::channel(super::SUBSCRIPTION_BUFFER);
    let subscriber = Subscriber(Arc::new(Waiting {
        to_client,
        verdicts: Mutex::new(HashMap::new()),
    }));
    let subscription = Subscription {
        pubsub_name: initial.pubsub_name,
        topic: initial.topic,
        route: String::new(),
        dead_letter_topic: initial.dead_letter_topic.filter(|t| !t.is_empty()),
        metadata: initial.metadata,
        kind: SubscriptionKind::Streaming,
        bulk: None,
        subscriber: Some(subscriber.clone()),
    };
    let topic = subscription.topic.clone();
    {
        // One stream per topic, as daprd has it (and its words).
        let mut open = sidecar.open_streams();
        if open
            .iter()
            .any(|s| s.pubsub_name == subscription.pubsub_name && s.topic == topic)
        {
            return Err(Status::unknown(format!(
                "streamer already subscribed to pubsub {:?} topic {topic:?}",
                subscription.pubsub_name
            )));
        }
        open.push(subscription.clone());
    }
    let messages = match pubsub.broker.subscribe(&topic, &pubsub.consumer_id).await {
        Ok(messages) => messages,
        Err(e) => {
            subscriber.close(&sidecar);
            return Err(Status::internal(format!(
                "cannot subscribe to {topic}: {e}"
            )));
        }
    };
    let concurrency = pubsub.broker.delivery_concurrency();
    let opened = pb::SubscribeTopicEventsResponseAlpha1 {
        subscribe_topic_events_response_type: Some(ToClient::InitialResponse(
            pb::SubscribeTopicEventsResponseInitialAlpha1 {},
        )),
    };
    // The channel is new and has room: this cannot wait.
    let _ = subscriber.0.to_client.send(Ok(opened)).await;
    tracing::info!(pubsub = %subscription.pubsub_name, %topic, "streaming subscription opened");
    let subscription = Arc::new(subscription);
    let consumer = tokio::spawn(super::delivery::consume(
        sidecar.clone(),
        subscription,
        messages,
        concurrency,
    ));
    tokio::spawn(async move {
        // The client's verdicts, until it hangs up or the sidecar stops.
        loop {
            tokio::select! {
                next = from_client.message() => match next {
                    Ok(Some(pb::SubscribeTopicEventsRequestAlpha1 {
                        subscribe_topic_events_request_type: Some(FromClient::EventProcessed(processed)),
                    })) => subscriber.settle(processed),
                    Ok(Some(pb::SubscribeTopicEventsRequestAlpha1 {
                        subscribe_topic_events_request_type: Some(FromClient::InitialRequest(_)),
                    })) => {
                        // As daprd: the stream ends with an error.
                        let refused = Status::invalid_argument("duplicate initial request received");
                        let _ = subscriber.0.to_client.send(Err(refused)).await;
                        break;
                    }
                    Ok(Some(_)) => tracing::warn!(%topic, "a streaming subscriber sent an empty message; ignored"),
                    Ok(None) | Err(_) => break,
                },
                () = sidecar.shutdown_was_requested() => break,
            }
        }
        consumer.abort();
        subscriber.close(&sidecar);
        tracing::info!(%topic, "streaming subscription closed");
    });
    Ok(EventStream::new(answers))
}
