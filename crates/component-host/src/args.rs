//! The flags of `dapr-wasm serve FILE.wasm` ([`ServeComponentArgs`]), which
//! feel like `wasmtime serve`'s and take the function apps' limit flags,
//! checked into a [`ServeConfig`] before any port is bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use function_host::{CacheArgs, LimitArgs};

use crate::config::{
    ComponentHostConfig, ComponentSettings, DEFAULT_MAX_CONCURRENT_REQUESTS, RequestLimits,
    component_env,
};
use crate::outbound::{Destination, Outbound};

/// The app port of `dapr-wasm serve` when none is given (`wasmtime serve`'s).
pub const DEFAULT_SERVE_PORT: u16 = 8080;

/// Flags of `dapr-wasm serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeComponentArgs {
    /// The wasi:http component (a `.wasm` exporting
    /// wasi:http/incoming-handler@0.2).
    #[arg(value_name = "FILE.wasm")]
    pub component: PathBuf,

    /// The port to listen on (Dapr's app port).
    #[arg(long, env = "APP_PORT", default_value_t = DEFAULT_SERVE_PORT)]
    pub app_port: u16,

    /// The address to bind. Loopback by default; use 0.0.0.0 to serve others.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The app id, given to the component as `APP_ID`.
    #[arg(long, env = "APP_ID")]
    pub app_id: Option<String>,

    /// The sidecar's HTTP port: given to the component as `DAPR_HTTP_PORT`,
    /// and the one destination its outgoing requests may reach.
    #[arg(long, env = "DAPR_HTTP_PORT")]
    pub dapr_http_port: Option<u16>,

    /// An environment variable for the component, NAME=VALUE (repeatable),
    /// beside `APP_ID` and `DAPR_HTTP_PORT`; nothing else of this
    /// process's environment reaches it.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Another destination outgoing requests may reach (repeatable).
    #[arg(long = "allow-outbound", value_name = "HOST:PORT")]
    pub allow_outbound: Vec<Destination>,

    /// The limits of one request (`--max-body-size`, `--max-output-size`,
    /// `--max-memory`, `--timeout`, `--queue-timeout`).
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Requests served at once (one instance each); more wait.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_calls: usize,

    /// The compiled-component cache.
    #[command(flatten)]
    pub cache: CacheArgs,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,

    /// The metrics port (`--metrics-port`).
    #[command(flatten)]
    pub metrics: service_kit::metrics::MetricsArgs,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// A checked configuration of `dapr-wasm serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The component file.
    pub component: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host's configuration.
    pub host: ComponentHostConfig,
    /// What the component is served with.
    pub settings: ComponentSettings,
    /// How many connections it serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
    /// Where its metrics are served, if anywhere.
    pub metrics: service_kit::metrics::MetricsArgs,
}

impl ServeComponentArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<ServeConfig, String> {
        let limits = self.limits.call_limits()?;
        if self.max_concurrent_calls == 0 {
            return Err("--max-concurrent-calls must be at least 1".into());
        }
        let env = component_env(
            self.app_id.as_deref(),
            self.dapr_http_port,
            self.env.iter().cloned(),
        )
        .map_err(|e| format!("--{e}"))?;
        Ok(ServeConfig {
            component: self.component.clone(),
            listen: SocketAddr::new(self.bind, self.app_port),
            host: ComponentHostConfig {
                cache_dir: self.cache.cache_dir(),
                max_concurrent_requests: self.max_concurrent_calls,
                queue_timeout: self.limits.queue_timeout,
                max_memory_bytes: limits.max_memory_bytes,
                ..ComponentHostConfig::default()
            },
            settings: ComponentSettings {
                limits: RequestLimits::from(limits),
                env,
                outbound: Outbound::sidecar_and(self.dapr_http_port, self.allow_outbound.clone()),
            },
            max_connections: self.connections.validate()?,
            metrics: self.metrics.clone(),
        })
    }
}
