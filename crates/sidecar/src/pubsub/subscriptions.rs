//! Subscriptions: which topics this sidecar's app receives, and where.
//!
//! - **Declarative:** `kind: Subscription` documents in the resources
//!   folders, `dapr.io/v2alpha1` (`routes: {rules, default}`) or
//!   `dapr.io/v1alpha1` (`route`), with `scopes`.
//! - **Programmatic:** the app's answer to `GET /dapr/subscribe` (a 404
//!   means none), or a gRPC app's to `ListTopicSubscriptions`
//!   ([`super::app_callback`]), read once the app answers and again each
//!   time it becomes healthy.
//!
//! Both have `pubsubname`, `topic`, `deadLetterTopic`, `metadata` (such
//! as `rawPayload`) and `bulkSubscribe` (`enabled`, `maxMessagesCount`
//! (default 100), `maxAwaitDurationMs` (default 1000), as daprd: events
//! then go to the app many at a time, [`super::bulk_delivery`]). A `match` rule cannot be evaluated by this sidecar: it
//! is refused with an error log naming it, never silently dropped, and the
//! default route serves the topic; a subscription with no route left is
//! refused.
//!
//! [`Sidecar::run_subscriptions`] starts one consumer per subscription
//! ([`super::delivery`]) and stops them all when the app turns unhealthy or
//! the sidecar stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use serde::Deserialize;
use serde_json::Value;

use dapr::dapr::proto::runtime::v1 as pb;

use crate::Sidecar;
use crate::components::{ComponentError, documents_of_kind, yaml_text};

/// Where a subscription came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// A `Subscription` YAML document.
    Declarative,
    /// The app's `GET /dapr/subscribe`.
    Programmatic,
    /// A client's `SubscribeTopicEventsAlpha1` stream.
    Streaming,
}

impl SubscriptionKind {
    /// The name the metadata API gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Declarative => "DECLARATIVE",
            SubscriptionKind::Programmatic => "PROGRAMMATIC",
            SubscriptionKind::Streaming => "STREAMING",
        }
    }
}

/// One topic this app receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The pub/sub component.
    pub pubsub_name: String,
    /// The topic.
    pub topic: String,
    /// The app's path events are posted to.
    pub route: String,
    /// Where events go that the app never accepted.
    pub dead_letter_topic: Option<String>,
    /// Per-topic metadata, e.g. `rawPayload`.
    pub metadata: HashMap<String, String>,
    /// Declarative or programmatic.
    pub kind: SubscriptionKind,
    /// `bulkSubscribe`, when enabled: events go to the app in batches.
    pub bulk: Option<BulkSubscribe>,
    /// A streaming subscription's client, which gets the events instead of
    /// the app ([`super::streaming`]).
    pub(crate) subscriber: Option<super::streaming::Subscriber>,
}

/// A subscription's `bulkSubscribe` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSubscribe {
    /// `maxMessagesCount`: the most events in one delivery.
    pub max_messages: usize,
    /// `maxAwaitDurationMs`: how long a batch waits to fill once it has
    /// its first event.
    pub max_await: Duration,
}

impl BulkSubscribe {
    /// daprd's defaults for a broker without bulk support of its own.
    pub const DEFAULT_MAX_MESSAGES: usize = 100;
    /// The same, for `maxAwaitDurationMs`.
    pub const DEFAULT_MAX_AWAIT: Duration = Duration::from_millis(1000);
}

impl Subscription {
    /// Whether events are raw bytes, not CloudEvents (`rawPayload`).
    pub fn raw_payload(&self) -> bool {
        self.metadata
            .get("rawPayload")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// A subscription as written, in the YAML `spec` or the app's JSON.
#[derive(Debug, Deserialize)]
struct Written {
    #[serde(alias = "pubsubName")]
    pubsubname: String,
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<WrittenRoutes>,
    #[serde(default, rename = "deadLetterTopic")]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, Value>,
    #[serde(default, rename = "bulkSubscribe")]
    bulk_subscribe: Option<WrittenBulk>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenBulk {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    max_messages_count: Option<i64>,
    #[serde(default)]
    max_await_duration_ms: Option<i64>,
}

impl WrittenBulk {
    /// The settings, if enabled; a count or duration below 1 is refused.
    fn resolve(self) -> Result<Option<BulkSubscribe>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let max_messages = match self.max_messages_count {
            None => BulkSubscribe::DEFAULT_MAX_MESSAGES,
            Some(n) if n >= 1 => n as usize,
            Some(n) => return Err(format!("bulkSubscribe.maxMessagesCount {n} is below 1")),
        };
        let max_await = match self.max_await_duration_ms {
            None => BulkSubscribe::DEFAULT_MAX_AWAIT,
            Some(ms) if ms >= 1 => Duration::from_millis(ms as u64),
            Some(ms) => return Err(format!("bulkSubscribe.maxAwaitDurationMs {ms} is below 1")),
        };
        Ok(Some(BulkSubscribe {
            max_messages,
            max_await,
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
struct WrittenRoutes {
    #[serde(default)]
    rules: Vec<WrittenRule>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WrittenRule {
    #[serde(default, rename = "match")]
    condition: String,
    path: String,
}

/// How a subscription's route is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteForm {
    /// An HTTP path: one is needed, and it starts with `/`.
    Paths,
    /// A gRPC app's `path`, passed back to it in `OnTopicEvent` as
    /// written; empty when none is set, as daprd does.
    AsWritten,
}

impl Written {
    /// The subscription, or why it is refused.
    fn resolve(
        self,
        kind: SubscriptionKind,
        route_form: RouteForm,
    ) -> Result<Subscription, String> {
        let routes = self.routes.unwrap_or_default();
        let mut catch_all = None;
        for rule in routes.rules {
            if rule.condition.trim().is_empty() {
                catch_all.get_or_insert(rule.path);
            } else {
                tracing::error!(
                    pubsub = %self.pubsubname,
                    topic = %self.topic,
                    condition = %rule.condition,
                    path = %rule.path,
                    "a subscription rule with `match` is refused: this sidecar does not evaluate CEL; its events go to the default route"
                );
            }
        }
        let given = |route: Option<String>| route.filter(|r| !r.trim().is_empty());
        let written = given(routes.default)
            .or(given(self.route))
            .or(given(catch_all));
        let route = match (written, route_form) {
            (Some(route), RouteForm::Paths) => format!("/{}", route.trim_start_matches('/')),
            (Some(route), RouteForm::AsWritten) => route,
            (None, RouteForm::AsWritten) => String::new(),
            (None, RouteForm::Paths) => {
                return Err(format!(
                    "subscription to {}/{} has no route its events can go to (a default route is needed beside `match` rules)",
                    self.pubsubname, self.topic
                ));
            }
        };
        if self.pubsubname.is_empty() || self.topic.is_empty() {
            return Err("a subscription needs pubsubname and topic".into());
        }
        let bulk = match self.bulk_subscribe {
            Some(written) => written.resolve()?,
            None => None,
        };
        let metadata = self
            .metadata
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        Ok(Subscription {
            pubsub_name: self.pubsubname,
            topic: self.topic,
            route,
            dead_letter_topic: self.dead_letter_topic.filter(|t| !t.is_empty()),
            metadata,
            kind,
            bulk,
            subscriber: None,
        })
    }
}

/// The `Subscription` documents in `folders` in scope for `app_id`.
pub fn load_declarative(
    folders: &[PathBuf],
    app_id: &str,
) -> Result<Vec<Subscription>, ComponentError> {
    let mut subscriptions = Vec::new();
    for (path, document) in documents_of_kind(folders, "Subscription")? {
        let invalid = |reason: String| ComponentError::Invalid {
            path: path.clone(),
            reason,
        };
        let scopes: Vec<String> = document
            .get("scopes")
            .and_then(|s| s.as_sequence())
            .map(|s| s.iter().map(yaml_text).collect())
            .unwrap_or_default();
        if !scopes.is_empty() && !scopes.iter().any(|s| s == app_id) {
            continue;
        }
        let spec = document
            .get("spec")
            .cloned()
            .ok_or_else(|| invalid("a Subscription needs a spec".into()))?;
        let written: Written =
            serde_yaml::from_value(spec).map_err(|e| invalid(format!("Subscription: {e}")))?;
        subscriptions.push(
            written
                .resolve(SubscriptionKind::Declarative, RouteForm::Paths)
                .map_err(invalid)?,
        );
    }
    Ok(subscriptions)
}

/// The subscriptions in an app's `GET /dapr/subscribe` answer; refused
/// ones are logged and left out.
pub fn parse_programmatic(body: &[u8]) -> Result<Vec<Subscription>, String> {
    let written: Vec<Written> = serde_json::from_slice(body).map_err(|e| {
        format!("GET /dapr/subscribe answered something else than a list of subscriptions: {e}")
    })?;
    Ok(resolve_programmatic(written, RouteForm::Paths))
}

/// The subscriptions in a gRPC app's `ListTopicSubscriptions` answer;
/// refused ones are logged and left out. A count or duration of 0 in
/// `bulk_subscribe` means daprd's default, as protobuf cannot tell it
/// from unset.
pub fn parse_app_callback(answer: pb::ListTopicSubscriptionsResponse) -> Vec<Subscription> {
    let written = answer.subscriptions.into_iter().map(|s| {
        let routes = s.routes.unwrap_or_default();
        let set = |n: i32| (n != 0).then_some(i64::from(n));
        Written {
            pubsubname: s.pubsub_name,
            topic: s.topic,
            route: None,
            routes: Some(WrittenRoutes {
                rules: routes
                    .rules
                    .into_iter()
                    .map(|rule| WrittenRule {
                        condition: rule.r#match,
                        path: rule.path,
                    })
                    .collect(),
                default: Some(routes.default),
            }),
            dead_letter_topic: Some(s.dead_letter_topic),
            metadata: s
                .metadata
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            bulk_subscribe: s.bulk_subscribe.map(|bulk| WrittenBulk {
                enabled: bulk.enabled,
                max_messages_count: set(bulk.max_messages_count),
                max_await_duration_ms: set(bulk.max_await_duration_ms),
            }),
        }
    });
    resolve_programmatic(written, RouteForm::AsWritten)
}

fn resolve_programmatic(
    written: impl IntoIterator<Item = Written>,
    route_form: RouteForm,
) -> Vec<Subscription> {
    written
        .into_iter()
        .filter_map(
            |w| match w.resolve(SubscriptionKind::Programmatic, route_form) {
                Ok(subscription) => Some(subscription),
                Err(reason) => {
                    tracing::error!(%reason, "subscription refused");
                    None
                }
            },
        )
        .collect()
}

impl Sidecar {
    /// The app's programmatic subscriptions, asked until it answers (or
    /// the sidecar stops: `None`).
    async fn ask_app_subscriptions(&self) -> Option<Vec<Subscription>> {
        let port = self.config.app_port?;
        self.ask_app_until_answered("subscriptions", || async {
            match &self.app_callback {
                Some(app) => super::app_callback::list_subscriptions(app.clone()).await,
                None => self.get_app_subscriptions(port).await,
            }
        })
        .await
    }

    /// The HTTP app's answer to `GET /dapr/subscribe` (a 404 means none).
    async fn get_app_subscriptions(&self, port: u16) -> Result<Vec<Subscription>, String> {
        let request = axum::http::Request::get(format!("http://127.0.0.1:{port}/dapr/subscribe"))
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        match self.client.request(request).await {
            Ok(response) if response.status() == axum::http::StatusCode::NOT_FOUND => {
                Ok(Vec::new())
            }
            Ok(response) if response.status().is_success() => {
                use http_body_util::BodyExt;
                match http_body_util::Limited::new(response.into_body(), 1 << 20)
                    .collect()
                    .await
                {
                    Ok(body) => parse_programmatic(&body.to_bytes()),
                    Err(e) => Err(format!("cannot read GET /dapr/subscribe: {e}")),
                }
            }
            Ok(response) => Err(format!(
                "GET /dapr/subscribe answered {}",
                response.status()
            )),
            Err(e) => Err(format!("the app does not answer yet: {e}")),
        }
    }

    /// The subscriptions in effect (for the metadata APIs).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let mut all = self
            .subscriptions
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        all.extend(self.open_streams().iter().cloned());
        all
    }

    /// The streaming subscriptions open now.
    pub(crate) fn open_streams(&self) -> std::sync::MutexGuard<'_, Vec<Subscription>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this sidecar has events to deliver: a pub/sub component
    /// and an app to deliver to.
    pub(crate) fn delivers_events(&self) -> bool {
        !self.pubsubs.is_empty() && self.config.app_port.is_some()
    }

    /// Runs the app's subscriptions until the sidecar stops: waits for
    /// the app to be healthy, reads its subscriptions, consumes every
    /// topic, and starts over when the app turns unhealthy.
    pub(crate) async fn run_subscriptions(self: Arc<Self>) {
        if !self.delivers_events() {
            return;
        }
        let clear = |sidecar: &Sidecar| {
            // Events being delivered are not acknowledged; brokers that
            // can will deliver them again.
            if let Ok(mut current) = sidecar.subscriptions.lock() {
                current.clear();
            }
        };
        self.while_app_is_healthy("subscriptions", Sidecar::consume_subscriptions, clear)
            .await;
    }

    /// Reads the app's subscriptions and starts a consumer for each
    /// (`None` if the sidecar stops first).
    async fn consume_subscriptions(self: Arc<Self>) -> Option<tokio::task::JoinSet<()>> {
        let programmatic = self.ask_app_subscriptions().await?;
        let mut all = self.declarative.clone();
        all.extend(programmatic);
        let mut consumers = tokio::task::JoinSet::new();
        let mut running = Vec::new();
        for subscription in all {
            let Some(pubsub) = self.pubsubs.get(&subscription.pubsub_name) else {
                tracing::error!(pubsub = %subscription.pubsub_name, topic = %subscription.topic, "subscription to a pub/sub that is not loaded; refused");
                continue;
            };
            match pubsub
                .broker
                .subscribe(&subscription.topic, &pubsub.consumer_id)
                .await
            {
                Ok(messages) => {
                    tracing::info!(pubsub = %subscription.pubsub_name, topic = %subscription.topic, route = %subscription.route, "subscribed");
                    running.push(subscription.clone());
                    let concurrency = pubsub.broker.delivery_concurrency();
                    let subscription = Arc::new(subscription);
                    match subscription.bulk {
                        Some(bulk) => consumers.spawn(super::bulk_delivery::consume(
                            self.clone(),
                            subscription,
                            messages,
                            concurrency,
                            bulk,
                        )),
                        None => consumers.spawn(super::delivery::consume(
                            self.clone(),
                            subscription,
                            messages,
                            concurrency,
                        )),
                    };
                }
                Err(err) => {
                    tracing::error!(pubsub = %subscription.pubsub_name, topic = %subscription.topic, error = %err, "cannot subscribe");
                }
            }
        }
        if let Ok(mut current) = self.subscriptions.lock() {
            *current = running;
        }
        Some(consumers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmatic_subscriptions_in_both_forms() {
        let body = br#"[
            {"pubsubname":"bus","topic":"a","route":"orders","metadata":{"rawPayload":"true"}},
            {"pubsubname":"bus","topic":"b","routes":{"rules":[{"match":"event.type == \"x\"","path":"/x"}],"default":"/b"},"deadLetterTopic":"dead"},
            {"pubsubname":"bus","topic":"c","routes":{"rules":[{"match":"event.type == \"x\"","path":"/x"}]}}
        ]"#;
        let subscriptions = parse_programmatic(body).unwrap();
        assert_eq!(
            subscriptions.len(),
            2,
            "the rule-only subscription is refused"
        );
        assert_eq!(subscriptions[0].route, "/orders");
        assert!(subscriptions[0].raw_payload());
        assert_eq!(subscriptions[1].route, "/b");
        assert_eq!(subscriptions[1].dead_letter_topic.as_deref(), Some("dead"));
        assert!(parse_programmatic(b"{\"not\":\"a list\"}").is_err());
    }

    #[test]
    fn bulk_subscribe_settings_with_daprs_defaults() {
        let body = br#"[
            {"pubsubname":"bus","topic":"a","route":"/a","bulkSubscribe":{"enabled":true}},
            {"pubsubname":"bus","topic":"b","route":"/b","bulkSubscribe":{"enabled":true,"maxMessagesCount":5,"maxAwaitDurationMs":40}},
            {"pubsubname":"bus","topic":"c","route":"/c","bulkSubscribe":{"enabled":false,"maxMessagesCount":5}},
            {"pubsubname":"bus","topic":"d","route":"/d","bulkSubscribe":{"enabled":true,"maxMessagesCount":0}}
        ]"#;
        let subscriptions = parse_programmatic(body).unwrap();
        assert_eq!(subscriptions.len(), 3, "a count of 0 is refused");
        assert_eq!(
            subscriptions[0].bulk,
            Some(BulkSubscribe {
                max_messages: 100,
                max_await: Duration::from_millis(1000)
            })
        );
        assert_eq!(
            subscriptions[1].bulk,
            Some(BulkSubscribe {
                max_messages: 5,
                max_await: Duration::from_millis(40)
            })
        );
        assert_eq!(subscriptions[2].bulk, None);
    }
}
