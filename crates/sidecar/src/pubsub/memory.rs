//! `pubsub.in-memory`: events passed between the publishers and
//! subscribers of one sidecar, as daprd's in-memory component does. Nothing
//! is stored: an event published while no one subscribes is gone, and
//! events in flight die with the sidecar. For tests and demos.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{Broker, BrokerError, Message, SUBSCRIPTION_BUFFER};

/// Subscribers by topic.
#[derive(Default)]
pub struct MemoryBroker {
    topics: Mutex<HashMap<String, Vec<mpsc::Sender<Message>>>>,
}

#[async_trait::async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        let subscribers = {
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            let subscribers = topics.entry(topic.to_string()).or_default();
            subscribers.retain(|s| !s.is_closed());
            subscribers.clone()
        };
        for subscriber in subscribers {
            // A full subscriber slows the publisher down rather than
            // losing the event; a closed one has gone.
            let _ = subscriber
                .send(Message::unacknowledged(payload.clone()))
                .await;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        _consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(topic.to_string())
            .or_default()
            .push(sender);
        Ok(receiver)
    }
}
