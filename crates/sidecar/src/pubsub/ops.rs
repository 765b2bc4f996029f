//! The publish building block, shared by the HTTP API ([`super::api`]) and
//! gRPC `PublishEvent`/`BulkPublishEvent`: checks the component and topic,
//! wraps the event in a CloudEvent as daprd does ([`cloud_event`]), and
//! hands it to the broker.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::PubsubComponent;
use super::json_object::JsonObject;
use crate::Sidecar;
use crate::error::DaprError;

/// One event to publish, as either API received it.
#[derive(Debug, Default)]
pub(crate) struct Publication {
    /// The event's bytes.
    pub data: Vec<u8>,
    /// Its content type (empty: `text/plain`, as daprd).
    pub content_type: String,
    /// `rawPayload`, `ttlInSeconds` and the like.
    pub metadata: HashMap<String, String>,
    /// The caller's W3C `traceparent`, if any.
    pub traceparent: Option<String>,
}

/// One entry of a bulk publish.
#[derive(Debug)]
pub(crate) struct BulkEntry {
    /// The caller's id for it, echoed in failures.
    pub entry_id: String,
    /// The event.
    pub publication: Publication,
}

impl Sidecar {
    /// The pub/sub component `name`.
    pub(crate) fn pubsub(&self, name: &str) -> Result<&PubsubComponent, DaprError> {
        if self.pubsubs.is_empty() {
            return Err(DaprError::PubsubNotConfigured);
        }
        self.pubsubs
            .get(name)
            .ok_or_else(|| DaprError::PubsubNotFound(name.to_string()))
    }

    /// Publishes one event on `topic` of `pubsub_name`.
    pub(crate) async fn publish_event(
        &self,
        pubsub_name: &str,
        topic: &str,
        publication: Publication,
    ) -> Result<(), DaprError> {
        let pubsub = self.publishable(pubsub_name, topic)?;
        let payload = cloud_event(&self.config.app_id, pubsub_name, topic, publication)?;
        let started = std::time::Instant::now();
        let published = pubsub.broker.publish(topic, payload).await;
        self.metrics.record_pubsub_egress(
            pubsub_name,
            topic,
            published.is_ok(),
            started.elapsed(),
            1,
        );
        published.map_err(|e| publish_failed(pubsub_name, topic, e))
    }

    /// Publishes every entry at once ([`super::Broker::publish_many`]:
    /// one round trip where the broker's client can; as daprd, without an
    /// order between them); returns the ones that failed, with why. A
    /// wrong component or topic fails the whole call instead.
    pub(crate) async fn publish_events(
        &self,
        pubsub_name: &str,
        topic: &str,
        entries: Vec<BulkEntry>,
    ) -> Result<Vec<(String, String)>, DaprError> {
        let pubsub = self.publishable(pubsub_name, topic)?;
        let mut failed = Vec::new();
        let mut entry_ids = Vec::with_capacity(entries.len());
        let mut payloads = Vec::with_capacity(entries.len());
        for entry in entries {
            match cloud_event(&self.config.app_id, pubsub_name, topic, entry.publication) {
                Ok(payload) => {
                    entry_ids.push(entry.entry_id);
                    payloads.push(payload);
                }
                Err(err) => failed.push((entry.entry_id, err.to_string())),
            }
        }
        let started = std::time::Instant::now();
        let published = pubsub.broker.publish_many(topic, payloads).await;
        let elapsed = started.elapsed();
        let succeeded = published.iter().filter(|r| r.is_ok()).count();
        let metrics = &self.metrics;
        metrics.record_pubsub_egress(pubsub_name, topic, true, elapsed, succeeded as u64);
        let failures = (published.len() - succeeded) as u64;
        metrics.record_pubsub_egress(pubsub_name, topic, false, elapsed, failures);
        for (entry_id, result) in entry_ids.into_iter().zip(published) {
            if let Err(err) = result {
                failed.push((
                    entry_id,
                    publish_failed(pubsub_name, topic, err).to_string(),
                ));
            }
        }
        Ok(failed)
    }

    /// The component, if this app may publish to `topic` on it.
    fn publishable(&self, pubsub_name: &str, topic: &str) -> Result<&PubsubComponent, DaprError> {
        let pubsub = self.pubsub(pubsub_name)?;
        if topic.is_empty() {
            return Err(DaprError::MalformedRequest("topic is empty".into()));
        }
        if let Some(allowed) = &pubsub.allowed_topics
            && !allowed.iter().any(|t| t == topic)
        {
            return Err(DaprError::PubsubForbidden {
                topic: topic.to_string(),
                app_id: self.config.app_id.clone(),
            });
        }
        Ok(pubsub)
    }
}

/// Dapr's error for a publish the broker refused.
fn publish_failed(pubsub_name: &str, topic: &str, err: super::BrokerError) -> DaprError {
    DaprError::PubsubPublish {
        topic: topic.to_string(),
        pubsub: pubsub_name.to_string(),
        reason: err.to_string(),
    }
}

/// The prefix of the metadata that replaces a CloudEvent field.
const CLOUDEVENT_PREFIX: &str = "cloudevent.";

/// The bytes the broker stores for `publication`: the body as it is with
/// `rawPayload=true`; else a CloudEvent 1.0 with the fields daprd sets
/// (`id`, `source` (the app id), `type`, `specversion`, `datacontenttype`,
/// `topic`, `pubsubname`, `traceid`, `traceparent`, `tracestate`, `time`,
/// `expiration` with `ttlInSeconds`) and the data (`data` as JSON or text,
/// or `data_base64`). As in daprd, metadata `cloudevent.id`,
/// `cloudevent.source`, `cloudevent.type`, `cloudevent.traceparent` (or
/// `cloudevent.traceid`) and `cloudevent.tracestate` (any case) replace the
/// fields daprd would set. A caller's own CloudEvent
/// (`application/cloudevents+json`) keeps its fields; the missing ones are
/// added.
pub(crate) fn cloud_event(
    app_id: &str,
    pubsub_name: &str,
    topic: &str,
    publication: Publication,
) -> Result<Vec<u8>, DaprError> {
    let flag = |name: &str| {
        publication
            .metadata
            .get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if flag("rawPayload") {
        return Ok(publication.data);
    }
    let content_type = if publication.content_type.is_empty() {
        "text/plain".to_string()
    } else {
        publication.content_type.clone()
    };
    // (Compared as bytes: a key need not be ASCII.)
    let overridden = |field: &str| {
        publication.metadata.iter().find_map(|(key, value)| {
            let named = key
                .as_bytes()
                .split_at_checked(CLOUDEVENT_PREFIX.len())
                .is_some_and(|(prefix, rest)| {
                    prefix.eq_ignore_ascii_case(CLOUDEVENT_PREFIX.as_bytes())
                        && rest.eq_ignore_ascii_case(field.as_bytes())
                });
            (named && !value.is_empty()).then(|| value.clone())
        })
    };
    let traceparent = publication
        .traceparent
        .clone()
        .unwrap_or_else(|| service_kit::trace::TraceContext::new_root().traceparent());
    let expiration = match publication.metadata.get("ttlInSeconds") {
        Some(ttl) => {
            let seconds = crate::state::ops::parse_ttl(ttl)?.unwrap_or(0);
            // A TTL past what a date can hold never expires.
            i64::try_from(seconds)
                .ok()
                .and_then(chrono::TimeDelta::try_seconds)
                .and_then(|ttl| chrono::Utc::now().checked_add_signed(ttl))
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        None => None,
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let written = if content_type.starts_with("application/cloudevents+json") {
        let Ok(Value::Object(mut event)) = serde_json::from_slice(&publication.data) else {
            return Err(DaprError::PubsubCloudEvent(
                "the body is not a JSON CloudEvent object".into(),
            ));
        };
        let defaults = [
            ("id", json!(new_event_id())),
            ("source", json!(app_id)),
            ("type", json!("com.dapr.event.sent")),
            ("specversion", json!("1.0")),
            ("datacontenttype", json!("application/json")),
            ("traceid", json!(traceparent)),
            ("traceparent", json!(traceparent)),
            ("tracestate", json!("")),
            ("time", json!(time)),
        ];
        for (key, value) in defaults {
            event.entry(key).or_insert(value);
        }
        event.insert("topic".into(), json!(topic));
        event.insert("pubsubname".into(), json!(pubsub_name));
        if let Some(expiration) = expiration {
            event.insert("expiration".into(), json!(expiration));
        }
        serde_json::to_vec(&event)
    } else {
        // The usual case, written straight from its parts: JSON data is
        // checked, not parsed into a tree. (An overriding `traceparent`
        // wins over `traceid`, as in daprd.)
        let trace = overridden("traceparent")
            .or_else(|| overridden("traceid"))
            .unwrap_or(traceparent);
        let mut event = JsonObject::with_capacity(publication.data.len() + 512);
        event
            .string("id", &overridden("id").unwrap_or_else(new_event_id))
            .string(
                "source",
                &overridden("source").unwrap_or_else(|| app_id.into()),
            )
            .string(
                "type",
                &overridden("type").unwrap_or_else(|| "com.dapr.event.sent".into()),
            )
            .string("specversion", "1.0")
            .string("datacontenttype", &content_type)
            .string("traceid", &trace)
            .string("traceparent", &trace)
            .string("tracestate", &overridden("tracestate").unwrap_or_default())
            .string("time", &time)
            .string("topic", topic)
            .string("pubsubname", pubsub_name);
        if let Some(expiration) = &expiration {
            event.string("expiration", expiration);
        }
        let is_json_data = is_json(&content_type)
            && serde_json::from_slice::<serde::de::IgnoredAny>(&publication.data).is_ok();
        if is_json_data {
            event.raw("data", &publication.data);
        } else {
            match event_data(&content_type, publication.data) {
                (key, Value::String(text)) => event.string(key, &text),
                (key, other) => event.raw(key, other.to_string().as_bytes()),
            };
        }
        Ok(event.finish())
    };
    written.map_err(|e| DaprError::PubsubCloudEvent(e.to_string()))
}

/// The media type of `content_type`, without parameters, in lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `content_type` is JSON (`*/json`, `*+json`).
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.ends_with("/json") || essence.ends_with("+json")
}

/// The CloudEvent field for a body of `content_type`: JSON as JSON, text
/// as a string, anything else base64.
pub(crate) fn event_data(content_type: &str, data: Vec<u8>) -> (&'static str, Value) {
    use base64::Engine;
    let essence = essence(content_type);
    if is_json(&essence)
        && let Ok(value) = serde_json::from_slice::<Value>(&data)
    {
        return ("data", value);
    }
    let textual =
        essence.starts_with("text/") || essence.ends_with("/xml") || essence.ends_with("/json");
    if textual && let Ok(text) = std::str::from_utf8(&data) {
        return ("data", Value::String(text.to_string()));
    }
    (
        "data_base64",
        Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
    )
}

/// A random UUID (version 4), as daprd's event ids are.
pub(crate) fn new_event_id() -> String {
    crate::ids::new_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(content_type: &str, data: &[u8], metadata: &[(&str, &str)]) -> Value {
        let publication = Publication {
            data: data.to_vec(),
            content_type: content_type.into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            traceparent: None,
        };
        let bytes = cloud_event("app", "bus", "orders", publication).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn events_are_cloud_events_with_daprs_fields() {
        let event = publish("application/json", br#"{"n":1}"#, &[]);
        assert_eq!(event["data"], json!({"n": 1}));
        assert_eq!(event["datacontenttype"], "application/json");
        for (field, value) in [
            ("source", "app"),
            ("type", "com.dapr.event.sent"),
            ("specversion", "1.0"),
            ("topic", "orders"),
            ("pubsubname", "bus"),
        ] {
            assert_eq!(event[field], value, "{field}");
        }
        assert_eq!(event["id"].as_str().unwrap().len(), 36);
        assert_eq!(event["traceid"], event["traceparent"]);
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
        assert!(event.get("expiration").is_none());

        assert_eq!(publish("text/plain", b"hi", &[])["data"], "hi");
        assert_eq!(publish("", b"hi", &[])["datacontenttype"], "text/plain");
        let binary = publish("application/octet-stream", &[0, 159, 255], &[]);
        assert_eq!(binary["data_base64"], "AJ//");
        assert!(binary.get("data").is_none());
        let expiring = publish("text/plain", b"x", &[("ttlInSeconds", "60")]);
        assert!(expiring["expiration"].as_str().is_some());
    }

    #[test]
    fn cloudevent_metadata_replaces_the_fields_daprd_sets() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let event = publish(
            "application/json",
            b"{}",
            &[
                ("cloudevent.id", "order-7"),
                ("CloudEvent.Source", "checkout"),
                ("cloudevent.type", "order.placed"),
                ("cloudevent.traceid", "ignored: traceparent wins"),
                ("cloudevent.traceparent", traceparent),
                ("cloudevent.tracestate", "vendor=1"),
                ("cloudevent.topic", "not overridable"),
            ],
        );
        assert_eq!(event["id"], "order-7");
        assert_eq!(event["source"], "checkout");
        assert_eq!(event["type"], "order.placed");
        assert_eq!(event["traceparent"], traceparent);
        assert_eq!(event["traceid"], traceparent);
        assert_eq!(event["tracestate"], "vendor=1");
        assert_eq!(event["topic"], "orders");

        // `traceid` alone sets both; an empty value overrides nothing.
        let event = publish(
            "text/plain",
            b"x",
            &[("cloudevent.traceid", traceparent), ("cloudevent.id", "")],
        );
        assert_eq!(event["traceparent"], traceparent);
        assert_eq!(event["traceid"], traceparent);
        assert_eq!(event["id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn a_callers_cloud_event_keeps_its_fields_and_raw_payloads_pass_as_they_are() {
        let own = publish(
            "application/cloudevents+json",
            br#"{"id":"mine","type":"order.created","source":"shop","data":{"n":2}}"#,
            &[],
        );
        assert_eq!(own["id"], "mine");
        assert_eq!(own["type"], "order.created");
        assert_eq!(own["source"], "shop");
        assert_eq!(own["topic"], "orders");
        assert_eq!(own["specversion"], "1.0");

        let raw = cloud_event(
            "app",
            "bus",
            "orders",
            Publication {
                data: b"not json".to_vec(),
                metadata: HashMap::from([("rawPayload".into(), "true".into())]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(raw, b"not json");

        let broken = cloud_event(
            "app",
            "bus",
            "orders",
            Publication {
                data: b"[1]".to_vec(),
                content_type: "application/cloudevents+json".into(),
                ..Default::default()
            },
        );
        assert!(matches!(broken, Err(DaprError::PubsubCloudEvent(_))));
    }
}
