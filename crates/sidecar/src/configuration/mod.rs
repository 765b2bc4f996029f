//! Configuration: Dapr's configuration API, reading an app's settings from
//! a store and telling it when they change. Over HTTP ([`api`]:
//! `GET /v1.0/configuration/{store}`, `.../subscribe`,
//! `.../{id}/unsubscribe`, and the same under `v1.0-alpha1`) and gRPC
//! (`GetConfiguration`, `SubscribeConfiguration`,
//! `UnsubscribeConfiguration` and their `Alpha1` names), both on the
//! methods of [`Sidecar`] below.
//!
//! A store holds items: a value, a version and metadata under a key.
//! Getting no keys gets them all. A subscription watches keys (all of them
//! when none are named) and reports each change as the changed keys'
//! items, a deleted key as an empty item, as daprd does:
//!
//! - subscribed over HTTP, each change is `POST`ed to the app, once per
//!   key, on `/configuration/{store}/{key}` with `{"id", "items"}`;
//! - subscribed over gRPC, the stream's first message is the
//!   subscription's id, then one message per change; it ends when the
//!   client goes or unsubscribes.
//!
//! Either way an id names the subscription until it is unsubscribed
//! ([`Subscriptions`]). Each get, subscribe and unsubscribe is counted in
//! daprd's `dapr_component_configuration_count` and `_latencies`.
//!
//! Each backend is a module implementing [`ConfigurationStore`], opened by
//! its Dapr type in [`open`]: `configuration.redis` ([`redis`]).

pub mod api;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::Sidecar;
use crate::components::Component;
use crate::error::DaprError;
use crate::invoke::Origin;

/// One configuration item, as daprd writes it in JSON (empty fields left
/// out, so a deleted key's item is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// The value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Its version, if the store keeps one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The store's metadata about it.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub metadata: HashMap<String, String>,
}

/// Items by key (in key order, as Go writes a map).
pub type Items = BTreeMap<String, Item>;

/// A change a subscription reports: its id and the changed keys' items.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpdateEvent {
    /// The subscription.
    pub id: String,
    /// The changed keys' items.
    pub items: Items,
}

/// A configuration backend failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigurationError(pub String);

/// The changes a store watches for: each the items of the keys changed.
/// Dropping it stops the watch.
pub type Changes = Pin<Box<dyn futures_util::Stream<Item = Items> + Send>>;

/// One configuration backend.
#[async_trait::async_trait]
pub trait ConfigurationStore: Send + Sync {
    /// The items of `keys` that exist (of every key when `keys` is empty).
    async fn get(
        &self,
        keys: &[String],
        metadata: &HashMap<String, String>,
    ) -> Result<Items, ConfigurationError>;

    /// Watches `keys` (every key when empty): every change made once this
    /// returns is in the stream.
    async fn watch(
        &self,
        keys: &[String],
        metadata: &HashMap<String, String>,
    ) -> Result<Changes, ConfigurationError>;
}

/// The configuration component types this sidecar serves.
pub const CONFIGURATION_TYPES: &[&str] = &["configuration.redis"];

/// Opens the configuration component `component` (of a type in
/// [`CONFIGURATION_TYPES`]).
pub async fn open(component: &Component) -> Result<Box<dyn ConfigurationStore>, String> {
    let properties = component.properties();
    match component.spec.component_type.as_str() {
        "configuration.redis" => Ok(Box::new(
            redis::RedisConfiguration::open(&properties).await?,
        )),
        other => Err(format!(
            "unsupported type `{other}`; supported: {}",
            CONFIGURATION_TYPES.join(", ")
        )),
    }
}

/// Where a subscription's changes go.
pub(crate) enum Subscriber {
    /// `POST`ed to the app (subscribed over HTTP).
    App,
    /// Sent on a gRPC stream (subscribed over gRPC); the subscription ends
    /// when the stream's receiver is gone.
    Stream(mpsc::Sender<UpdateEvent>),
}

/// The subscriptions open now, by id.
#[derive(Default)]
pub(crate) struct Subscriptions {
    open: Mutex<HashMap<String, OpenSubscription>>,
}

struct OpenSubscription {
    store: String,
    /// The task that forwards its changes.
    forwarder: tokio::task::AbortHandle,
}

impl Subscriptions {
    /// Stops the subscription `id` (only if it is on `store`, when given);
    /// the store it was on, if there was one.
    fn stop(&self, id: &str, store: Option<&str>) -> Option<String> {
        let mut open = self.open.lock().ok()?;
        let on_store = open
            .get(id)
            .is_some_and(|s| store.is_none_or(|store| s.store == store));
        if !on_store {
            return None;
        }
        let stopped = open.remove(id)?;
        stopped.forwarder.abort();
        Some(stopped.store)
    }

    /// Forgets `id` (its forwarder has ended).
    fn forget(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        if let Ok(open) = self.open.get_mut() {
            for subscription in open.values() {
                subscription.forwarder.abort();
            }
        }
    }
}

impl Sidecar {
    /// The configuration store `store_name`.
    fn configuration_store(&self, store_name: &str) -> Result<&dyn ConfigurationStore, DaprError> {
        if self.configurations.is_empty() {
            return Err(DaprError::ConfigurationStoresNotConfigured);
        }
        self.configurations
            .get(store_name)
            .map(|store| store.as_ref())
            .ok_or_else(|| DaprError::ConfigurationStoreNotFound(store_name.to_string()))
    }

    /// The items of `keys` (every item when empty) in `store_name`.
    pub(crate) async fn get_configuration(
        &self,
        store_name: &str,
        keys: &[String],
        metadata: &HashMap<String, String>,
    ) -> Result<Items, DaprError> {
        let store = self.configuration_store(store_name)?;
        let started = std::time::Instant::now();
        let items = store.get(keys, metadata).await;
        self.metrics
            .record_configuration(store_name, "get", items.is_ok(), started.elapsed());
        items.map_err(|e| DaprError::ConfigurationGet {
            keys: go_list(keys),
            store: store_name.to_string(),
            reason: e.to_string(),
        })
    }

    /// Subscribes `subscriber` to changes of `keys` (every key when empty)
    /// in `store_name`; the subscription's id.
    pub(crate) async fn subscribe_configuration(
        self: &Arc<Self>,
        store_name: &str,
        keys: &[String],
        metadata: &HashMap<String, String>,
        subscriber: Subscriber,
    ) -> Result<String, DaprError> {
        let store = self.configuration_store(store_name)?;
        if matches!(subscriber, Subscriber::App) && self.config.app_port.is_none() {
            return Err(DaprError::AppChannelNil(
                "app channel is not initialized. cannot subscribe to configuration updates",
            ));
        }
        let started = std::time::Instant::now();
        let changes = store.watch(keys, metadata).await;
        self.metrics.record_configuration(
            store_name,
            "subscribe",
            changes.is_ok(),
            started.elapsed(),
        );
        let changes = changes.map_err(|e| DaprError::ConfigurationSubscribe {
            keys: go_list(keys),
            store: store_name.to_string(),
            reason: e.to_string(),
        })?;
        let id = crate::ids::new_uuid();
        // Registered before it can end, so that it can forget itself.
        let mut open = self.configuration_subscriptions.open.lock().map_err(|_| {
            DaprError::ConfigurationSubscribe {
                keys: go_list(keys),
                store: store_name.to_string(),
                reason: "the subscriptions' lock is poisoned".into(),
            }
        })?;
        let forwarder = tokio::spawn(forward(
            Arc::downgrade(self),
            self.shutdown_requested.subscribe(),
            store_name.to_string(),
            id.clone(),
            changes,
            subscriber,
        ));
        open.insert(
            id.clone(),
            OpenSubscription {
                store: store_name.to_string(),
                forwarder: forwarder.abort_handle(),
            },
        );
        tracing::info!(store = store_name, %id, ?keys, "configuration subscription opened");
        Ok(id)
    }

    /// Stops the subscription `id` to `store_name` (over HTTP, as daprd
    /// asks the store).
    pub(crate) fn unsubscribe_configuration(
        &self,
        store_name: &str,
        id: &str,
    ) -> Result<(), DaprError> {
        self.configuration_store(store_name)?;
        let stopped = self.configuration_subscriptions.stop(id, Some(store_name));
        self.metrics.record_configuration(
            store_name,
            "unsubscribe",
            stopped.is_some(),
            Duration::ZERO,
        );
        if stopped.is_some() {
            tracing::info!(store = store_name, %id, "configuration subscription closed");
            Ok(())
        } else {
            Err(DaprError::ConfigurationUnsubscribe {
                id: id.to_string(),
                reason: format!("subscription with id {id} does not exist"),
            })
        }
    }

    /// Stops the subscription `id`, whatever its store (gRPC's deprecated
    /// `UnsubscribeConfiguration`): whether there was one.
    pub(crate) fn stop_configuration_subscription(&self, id: &str) -> bool {
        let stopped = self.configuration_subscriptions.stop(id, None);
        if let Some(store) = stopped.as_deref() {
            self.metrics
                .record_configuration(store, "unsubscribe", true, Duration::ZERO);
        }
        stopped.is_some()
    }

    /// Tells the app about `event` of `store`, as daprd does: one `POST`
    /// per changed key, on `/configuration/{store}/{key}`.
    async fn post_configuration_update(&self, store: &str, event: &UpdateEvent) {
        let body = match serde_json::to_vec(event) {
            Ok(body) => bytes::Bytes::from(body),
            Err(e) => {
                tracing::error!(%store, error = %e, "a configuration update cannot be written");
                return;
            }
        };
        for key in event.items.keys() {
            let path = format!("/configuration/{}/{}", path_text(store), path_text(key));
            let request = axum::http::Request::post(&path)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.clone()));
            let answer = match request {
                Ok(request) => {
                    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                    let app_id = &self.config.app_id;
                    self.invoke(app_id, &path, peer, Origin::Sidecar, request)
                        .await
                        .map(|response| response.status())
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(status) if status == axum::http::StatusCode::OK => {}
                Ok(status) => tracing::error!(
                    %store, %key, %status,
                    "error sending configuration item to application"
                ),
                Err(error) => tracing::error!(
                    %store, %key, %error,
                    "error sending configuration item to application"
                ),
            }
        }
    }
}

/// Forwards a subscription's changes to its subscriber until the store's
/// stream ends, the gRPC client goes, the sidecar stops, or it is
/// unsubscribed (aborted).
async fn forward(
    sidecar: std::sync::Weak<Sidecar>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    store: String,
    id: String,
    mut changes: Changes,
    subscriber: Subscriber,
) {
    loop {
        let items = tokio::select! {
            items = changes.next() => items,
            () = subscriber.gone() => None,
            _ = stopping.wait_for(|&stop| stop) => None,
        };
        let Some(items) = items else { break };
        let event = UpdateEvent {
            id: id.clone(),
            items,
        };
        match &subscriber {
            Subscriber::Stream(sender) => {
                if sender.send(event).await.is_err() {
                    break;
                }
            }
            Subscriber::App => match sidecar.upgrade() {
                Some(sidecar) => sidecar.post_configuration_update(&store, &event).await,
                None => break,
            },
        }
    }
    if let Some(sidecar) = sidecar.upgrade() {
        sidecar.configuration_subscriptions.forget(&id);
        tracing::info!(%store, %id, "configuration subscription ended");
    }
}

impl Subscriber {
    /// Completes when nobody can get the changes any more: the gRPC
    /// client has gone (the app, never).
    async fn gone(&self) {
        match self {
            Subscriber::Stream(sender) => sender.closed().await,
            Subscriber::App => std::future::pending().await,
        }
    }
}

/// `keys` as Go's `%s` writes a `[]string` in daprd's messages: `[a b]`.
fn go_list(keys: &[String]) -> String {
    format!("[{}]", keys.join(" "))
}

/// `text` as one part of a URL path: bytes a path may hold as they are,
/// the rest percent-encoded.
fn path_text(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_events_are_written_as_daprd_writes_them() {
        let mut items = Items::new();
        items.insert(
            "b".into(),
            Item {
                value: "2".into(),
                version: "v1".into(),
                metadata: HashMap::new(),
            },
        );
        items.insert("a".into(), Item::default());
        let event = UpdateEvent {
            id: "s-1".into(),
            items,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"id":"s-1","items":{"a":{},"b":{"value":"2","version":"v1"}}}"#
        );
        assert_eq!(go_list(&["a".into(), "b".into()]), "[a b]");
        assert_eq!(go_list(&[]), "[]");
    }

    #[test]
    fn keys_are_written_into_paths_safely() {
        assert_eq!(path_text("orders/limit"), "orders/limit");
        assert_eq!(path_text("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(path_text("é"), "%C3%A9");
    }
}
