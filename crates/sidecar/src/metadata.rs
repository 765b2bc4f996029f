//! Metadata and health.
//!
//! - `GET /v1.0/metadata` → `{id, runtimeVersion, components, extended, ...}`
//! - `PUT /v1.0/metadata/{key}` sets an `extended` attribute (body: the value)
//! - `GET /v1.0/healthz`, `GET /v1.0/healthz/outbound` → 204 when healthy

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use dapr::dapr::proto::runtime::v1 as pb;

use crate::Sidecar;
use crate::args::AppProtocol;

/// The version reported as `runtimeVersion`.
pub const RUNTIME_VERSION: &str = concat!("dapr-wasm-", env!("CARGO_PKG_VERSION"));

impl Sidecar {
    /// The `extended` attributes set so far.
    pub(crate) fn extended_metadata(&self) -> HashMap<String, String> {
        self.extended.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Sets an `extended` attribute (the metadata building block, shared by
    /// the HTTP and gRPC APIs).
    pub(crate) fn set_extended_metadata(&self, key: String, value: String) {
        if let Ok(mut extended) = self.extended.lock() {
            extended.insert(key, value);
        }
    }

    /// How this sidecar reaches its app, as both metadata APIs report it.
    pub(crate) fn app_connection(&self) -> pb::AppConnectionProperties {
        let health = self
            .config
            .app_health
            .as_ref()
            .map(|h| pb::AppConnectionHealthProperties {
                health_check_path: h.path.clone(),
                health_probe_interval: format!("{}s", h.interval.as_secs()),
                health_probe_timeout: format!("{}ms", h.timeout.as_millis()),
                health_threshold: i32::try_from(h.threshold).unwrap_or(i32::MAX),
            });
        pb::AppConnectionProperties {
            port: i32::from(self.config.app_port.unwrap_or(0)),
            protocol: match self.config.app_protocol {
                AppProtocol::Http => "http",
                AppProtocol::Grpc => "grpc",
            }
            .into(),
            channel_address: "127.0.0.1".into(),
            health,
            ..Default::default()
        }
    }

    /// The components, as the metadata API lists them.
    pub(crate) fn component_infos(&self) -> &[crate::ComponentInfo] {
        &self.components
    }
}

pub(crate) async fn metadata_get(State(sidecar): State<Arc<Sidecar>>) -> Json<Value> {
    let components: Vec<Value> = sidecar
        .component_infos()
        .iter()
        .map(|c| json!({ "name": c.name, "type": c.component_type, "version": c.version, "capabilities": c.capabilities }))
        .collect();
    let subscriptions: Vec<Value> = sidecar
        .subscriptions()
        .into_iter()
        .map(|s| {
            json!({
                "pubsubname": s.pubsub_name,
                "topic": s.topic,
                "rules": [{"path": s.route}],
                "deadLetterTopic": s.dead_letter_topic.unwrap_or_default(),
                "metadata": s.metadata,
                "type": s.kind.as_str(),
            })
        })
        .collect();
    let actor_runtime = sidecar.actors.runtime_metadata();
    let active_actors: Vec<Value> = actor_runtime
        .active_actors
        .iter()
        .map(|a| json!({ "type": a.r#type, "count": a.count }))
        .collect();
    Json(json!({
        "id": sidecar.config.app_id,
        "runtimeVersion": RUNTIME_VERSION,
        "enabledFeatures": [],
        "actors": active_actors,
        "actorRuntime": {
            "runtimeStatus": actor_runtime.runtime_status().as_str_name(),
            "activeActors": active_actors,
            "hostReady": actor_runtime.host_ready,
            "placement": actor_runtime.placement,
        },
        "components": components,
        "extended": sidecar.extended_metadata(),
        "subscriptions": subscriptions,
        "httpEndpoints": sidecar
            .http_endpoints
            .names()
            .into_iter()
            .map(|name| json!({ "name": name }))
            .collect::<Vec<_>>(),
        "appConnectionProperties": app_connection_json(&sidecar.app_connection()),
        "workflows": workflows_json(sidecar.workflows.connected_workers()),
    }))
}

/// `workflows` as daprd writes it (`connectedWorkers` left out when 0).
fn workflows_json(connected_workers: i32) -> Value {
    if connected_workers == 0 {
        json!({})
    } else {
        json!({ "connectedWorkers": connected_workers })
    }
}

/// `appConnectionProperties` as daprd's HTTP metadata API writes it.
fn app_connection_json(app: &pb::AppConnectionProperties) -> Value {
    let mut properties = json!({
        "port": app.port,
        "protocol": app.protocol,
        "channelAddress": app.channel_address,
    });
    if let Some(health) = &app.health {
        properties["health"] = json!({
            "healthCheckPath": health.health_check_path,
            "healthProbeInterval": health.health_probe_interval,
            "healthProbeTimeout": health.health_probe_timeout,
            "healthThreshold": health.health_threshold,
        });
    }
    properties
}

pub(crate) async fn metadata_put(
    State(sidecar): State<Arc<Sidecar>>,
    Path(key): Path<String>,
    body: Bytes,
) -> StatusCode {
    sidecar.set_extended_metadata(key, String::from_utf8_lossy(&body).into_owned());
    StatusCode::NO_CONTENT
}

pub(crate) async fn healthz() -> StatusCode {
    StatusCode::NO_CONTENT
}
