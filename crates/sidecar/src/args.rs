//! `dapr-wasm sidecar` flags, mirroring daprd's and `dapr run`'s, validated
//! into a [`SidecarConfig`] before anything is bound.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use service_kit::trace::TracingConfig;
use service_kit::units::{parse_duration, parse_size};

pub use crate::app_health::AppHealthConfig;

/// Flags of `dapr-wasm sidecar`.
#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// The id of the app this sidecar serves.
    #[arg(long, env = "APP_ID")]
    pub app_id: String,

    /// The port the app listens on (0: no app, the sidecar only serves APIs).
    #[arg(long, env = "APP_PORT", default_value_t = 0)]
    pub app_port: u16,

    /// The port of the sidecar's HTTP API.
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// The port of the sidecar's gRPC API.
    #[arg(long, env = "DAPR_GRPC_PORT", default_value_t = 50001)]
    pub dapr_grpc_port: u16,

    /// The port of `GET /metrics` (Prometheus, daprd's metric names).
    #[arg(long, env = "DAPR_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,

    /// Whether to serve the metrics (`--enable-metrics=false` turns the
    /// metrics port off, as with daprd).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics: bool,

    /// Folders of Dapr component YAML files (repeatable).
    #[arg(long = "resources-path", alias = "components-path")]
    pub resources_paths: Vec<PathBuf>,

    /// A Dapr `Configuration` file (daprd's `--config`): its
    /// `spec.tracing` says which traces are recorded and where they go.
    /// Without one, OpenTelemetry's `OTEL_EXPORTER_OTLP_ENDPOINT` (and
    /// friends) turn tracing on, as with daprd.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How the sidecar calls its app: `http`, or `grpc` (Dapr's
    /// `AppCallback` service on the app port).
    #[arg(long, env = "APP_PROTOCOL", default_value = "http")]
    pub app_protocol: String,

    /// Largest request body, e.g. 16Mi (daprd's format).
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    pub max_body_size: usize,

    /// The address to bind. Loopback by default.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Where the default SQLite state store and the name registry live
    /// [default: $XDG_DATA_HOME/dapr-wasm or ~/.local/share/dapr-wasm].
    #[arg(long, env = "DAPR_WASM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// How long a call to an app or another sidecar may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub invoke_timeout: Duration,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,

    /// Probe the app's health, and refuse invocations of it while it fails.
    #[arg(long, env = "ENABLE_APP_HEALTH_CHECK")]
    pub enable_app_health_check: bool,

    /// The path probed on an HTTP app (a gRPC app is asked
    /// `AppCallbackHealthCheck.HealthCheck`).
    #[arg(long, default_value = "/healthz")]
    pub app_health_check_path: String,

    /// Seconds between health probes.
    #[arg(long, default_value_t = 5)]
    pub app_health_probe_interval: u64,

    /// Milliseconds a health probe may take.
    #[arg(long, default_value_t = 500)]
    pub app_health_probe_timeout: u64,

    /// Failed probes in a row that make the app unhealthy.
    #[arg(long, default_value_t = 3)]
    pub app_health_threshold: u32,

    /// Most requests in flight to the app at once (pub/sub deliveries);
    /// -1: no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,

    /// Retries of an event the app did not accept, before its dead-letter
    /// topic (or the bin).
    #[arg(long, default_value_t = 5)]
    pub pubsub_max_retries: u32,

    /// The first wait before retrying an event; each retry doubles it, up
    /// to 16 times.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub pubsub_retry_backoff: Duration,

    /// When a pub/sub component's broker cannot be reached at start, serve
    /// the component with the embedded broker (`pubsub.sqlite` in the data
    /// directory) instead of failing. `dapr-wasm up` sets it.
    #[arg(long, env = "DAPR_WASM_EMBEDDED_PUBSUB_FALLBACK")]
    pub embedded_pubsub_fallback: bool,
}

/// How undelivered events are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait; it doubles each retry, up to 16 times.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// How a sidecar calls its app (`--app-protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AppProtocol {
    /// HTTP/1.1 requests to the app's port.
    #[default]
    Http,
    /// Dapr's `AppCallback` gRPC service on the app's port (`OnInvoke`).
    Grpc,
}

/// A checked sidecar configuration.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// This sidecar's app id.
    pub app_id: String,
    /// The app's port, if there is an app.
    pub app_port: Option<u16>,
    /// The HTTP API port.
    pub dapr_http_port: u16,
    /// The gRPC API port.
    pub dapr_grpc_port: u16,
    /// The metrics port, unless metrics are off.
    pub metrics_port: Option<u16>,
    /// The address to bind.
    pub bind: IpAddr,
    /// How the sidecar calls its app.
    pub app_protocol: AppProtocol,
    /// Component folders.
    pub resources_paths: Vec<PathBuf>,
    /// Body limit in bytes.
    pub max_body_size: usize,
    /// Data directory (SQLite store, name registry).
    pub data_dir: PathBuf,
    /// Timeout of outgoing calls.
    pub invoke_timeout: Duration,
    /// How many connections the API serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
    /// `DAPR_API_TOKEN`: required from callers of the API when set.
    pub api_token: Option<String>,
    /// `APP_API_TOKEN`: sent to the app when set.
    pub app_api_token: Option<String>,
    /// App health checks, when enabled.
    pub app_health: Option<AppHealthConfig>,
    /// Most requests in flight to the app (`--app-max-concurrency`).
    pub app_max_concurrency: Option<usize>,
    /// How undelivered events are retried.
    pub pubsub_retry: RetryPolicy,
    /// Whether an unreachable broker falls back to the embedded one.
    pub embedded_pubsub_fallback: bool,
    /// Which traces are recorded, and where they go.
    pub tracing: TracingConfig,
}

impl SidecarArgs {
    /// Checks the flags and reads the token env vars.
    pub fn validate(&self) -> Result<SidecarConfig, String> {
        let valid_id = !self.app_id.is_empty()
            && self
                .app_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid_id {
            return Err(format!(
                "--app-id `{}` must be letters, digits, `-`, `_` or `.`",
                self.app_id
            ));
        }
        let app_protocol = match self.app_protocol.as_str() {
            "http" => AppProtocol::Http,
            "grpc" => AppProtocol::Grpc,
            other => {
                return Err(format!(
                    "--app-protocol {other} is not supported; use http or grpc"
                ));
            }
        };
        for path in &self.resources_paths {
            if !path.is_dir() {
                return Err(format!(
                    "--resources-path {} is not a folder",
                    path.display()
                ));
            }
        }
        let app_health = self
            .enable_app_health_check
            .then(|| self.app_health_config())
            .transpose()?;
        let data_dir = self
            .data_dir
            .clone()
            .or_else(local_dirs::data_dir)
            .ok_or("no data directory: set --data-dir or HOME")?;
        let tracing = match &self.config {
            Some(path) => TracingConfig::from_dapr_configuration_file(path),
            None => TracingConfig::from_env(),
        }
        .map_err(|e| format!("--config: {e}"))?;
        Ok(SidecarConfig {
            tracing,
            app_id: self.app_id.clone(),
            app_port: (self.app_port != 0).then_some(self.app_port),
            dapr_http_port: self.dapr_http_port,
            dapr_grpc_port: self.dapr_grpc_port,
            metrics_port: self.enable_metrics.then_some(self.metrics_port),
            app_protocol,
            bind: self.bind,
            resources_paths: self.resources_paths.clone(),
            max_body_size: self.max_body_size,
            data_dir,
            invoke_timeout: self.invoke_timeout,
            max_connections: self.connections.validate()?,
            api_token: non_empty_env("DAPR_API_TOKEN"),
            app_api_token: non_empty_env("APP_API_TOKEN"),
            app_health,
            app_max_concurrency: usize::try_from(self.app_max_concurrency)
                .ok()
                .filter(|&n| n > 0),
            pubsub_retry: RetryPolicy {
                max_retries: self.pubsub_max_retries,
                backoff: self.pubsub_retry_backoff,
            },
            embedded_pubsub_fallback: self.embedded_pubsub_fallback,
        })
    }

    fn app_health_config(&self) -> Result<AppHealthConfig, String> {
        if self.app_port == 0 {
            return Err("--enable-app-health-check needs an app (--app-port)".into());
        }
        if !self.app_health_check_path.starts_with('/') {
            return Err(format!(
                "--app-health-check-path {} must start with /",
                self.app_health_check_path
            ));
        }
        if self.app_health_probe_interval == 0
            || self.app_health_probe_timeout == 0
            || self.app_health_threshold == 0
        {
            return Err(
                "--app-health-probe-interval, --app-health-probe-timeout and \
                 --app-health-threshold must be at least 1"
                    .into(),
            );
        }
        Ok(AppHealthConfig {
            path: self.app_health_check_path.clone(),
            interval: Duration::from_secs(self.app_health_probe_interval),
            timeout: Duration::from_millis(self.app_health_probe_timeout),
            threshold: self.app_health_threshold,
        })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
