//! The `dapr-wasm web-port` command line: flags and the env vars Dapr sets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use service_kit::body::BodyLimits;

use crate::dapr::InvokeProtocol;
use service_kit::units::{parse_duration, parse_size};

/// Flags of `dapr-wasm web-port`.
#[derive(Debug, Clone, Args)]
pub struct WebPortArgs {
    /// The port this app listens on (Dapr's app port).
    #[arg(long, env = "APP_PORT", default_value_t = 8080)]
    pub app_port: u16,

    /// The address to bind. Loopback by default.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The sidecar's HTTP port, set by Dapr.
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// The sidecar's gRPC port, set by Dapr.
    #[arg(long, env = "DAPR_GRPC_PORT", default_value_t = 50001)]
    pub dapr_grpc_port: u16,

    /// How uploads reach the grayscale app: over the sidecar's HTTP API (as
    /// the seed did) or its gRPC API.
    #[arg(long, value_enum, default_value = "http")]
    pub grayscale_protocol: InvokeProtocol,

    /// How uploads reach the classify app: over the sidecar's gRPC API (as
    /// the seed's Go SDK did) or its HTTP API.
    #[arg(long, value_enum, default_value = "grpc")]
    pub classify_protocol: InvokeProtocol,

    /// The app id of the grayscale image app.
    #[arg(long, env = "GRAYSCALE_APP_ID", default_value = "image-api-grayscale")]
    pub grayscale_app_id: String,

    /// The app id of the classify image app.
    #[arg(long, env = "CLASSIFY_APP_ID", default_value = "image-api-classify")]
    pub classify_app_id: String,

    /// The Dapr state store that keeps the invocation stats.
    #[arg(long, env = "STATE_STORE", default_value = "statestore")]
    pub state_store: String,

    /// The Dapr pub/sub component each upload's event is published to.
    #[arg(long, env = "PUBSUB_NAME", default_value = "pubsub")]
    pub pubsub: String,

    /// The topic of those events.
    #[arg(long, env = "EVENTS_TOPIC", default_value = "image-events")]
    pub events_topic: String,

    /// The app id of the events service (the UI's history).
    #[arg(long, env = "EVENTS_APP_ID", default_value = "events")]
    pub events_app_id: String,

    /// Largest upload, e.g. 16Mi.
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    pub max_body_size: usize,

    /// How long a whole upload may take to arrive; slower uploads get 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// The most pixels the image apps decode (their functions' limit): the
    /// UI checks a photo against it before uploading.
    #[arg(long, default_value_t = 50_000_000)]
    pub max_image_pixels: u64,

    /// How long a call to an image app may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub invoke_timeout: Duration,

    /// The metrics port (`--metrics-port`).
    #[command(flatten)]
    pub metrics: service_kit::metrics::MetricsArgs,

    /// The processes the UI's System panel shows, as NAME=URL of their
    /// metrics, comma-separated (`dapr-wasm up` sets it).
    #[arg(long, env = "SYSTEM_METRICS", default_value = "")]
    pub system_metrics: String,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct WebPortConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The sidecar's HTTP port.
    pub dapr_http_port: u16,
    /// The sidecar's gRPC port.
    pub dapr_grpc_port: u16,
    /// How uploads reach the grayscale app.
    pub grayscale_protocol: InvokeProtocol,
    /// How uploads reach the classify app.
    pub classify_protocol: InvokeProtocol,
    /// App id of the grayscale app.
    pub grayscale_app_id: String,
    /// App id of the classify app.
    pub classify_app_id: String,
    /// The state store's name.
    pub state_store: String,
    /// The pub/sub component of the image events.
    pub pubsub: String,
    /// Their topic.
    pub events_topic: String,
    /// The events service's app id.
    pub events_app_id: String,
    /// Largest upload and how long it may take to arrive.
    pub body_limits: BodyLimits,
    /// The most pixels the image apps decode.
    pub max_image_pixels: u64,
    /// Timeout of a call to an image app.
    pub invoke_timeout: Duration,
    /// How many connections it serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
    /// Where its metrics are served, if anywhere.
    pub metrics: service_kit::metrics::MetricsArgs,
    /// What the System panel shows.
    pub system_metrics: Vec<crate::system::Target>,
}

impl WebPortArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<WebPortConfig, String> {
        if self.max_body_size == 0 {
            return Err("--max-body-size must be greater than zero".into());
        }
        for id in [
            &self.grayscale_app_id,
            &self.classify_app_id,
            &self.state_store,
            &self.pubsub,
            &self.events_topic,
            &self.events_app_id,
        ] {
            if id.is_empty() || id.contains('/') {
                return Err(format!("`{id}` is not a valid app id or store name"));
            }
        }
        Ok(WebPortConfig {
            listen: SocketAddr::new(self.bind, self.app_port),
            dapr_http_port: self.dapr_http_port,
            dapr_grpc_port: self.dapr_grpc_port,
            grayscale_protocol: self.grayscale_protocol,
            classify_protocol: self.classify_protocol,
            grayscale_app_id: self.grayscale_app_id.clone(),
            classify_app_id: self.classify_app_id.clone(),
            state_store: self.state_store.clone(),
            pubsub: self.pubsub.clone(),
            events_topic: self.events_topic.clone(),
            events_app_id: self.events_app_id.clone(),
            body_limits: BodyLimits {
                max_bytes: self.max_body_size,
                timeout: self.body_timeout,
            },
            max_image_pixels: self.max_image_pixels,
            invoke_timeout: self.invoke_timeout,
            max_connections: self.connections.validate()?,
            metrics: self.metrics.clone(),
            system_metrics: crate::system::parse_targets(&self.system_metrics)
                .map_err(|e| format!("--system-metrics: {e}"))?,
        })
    }
}
