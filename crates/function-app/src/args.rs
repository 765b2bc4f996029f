//! The flags every function app takes ([`ServeArgs`]: where to listen,
//! default limits, call slots, cache, models), and those of `dapr-wasm
//! functions` ([`FunctionsArgs`]), checked into an [`AppConfig`] before any
//! port is bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use function_host::nn::{NnArgs, NnConfig};
use function_host::{CacheArgs, HostConfig, LimitArgs};
use service_kit::units::parse_duration;

use crate::catalog::Source;
use crate::config::{Defaults, FunctionsFile};

/// The app port of `dapr-wasm functions` when none is given.
pub const DEFAULT_FUNCTIONS_PORT: u16 = 9006;

/// Flags shared by `dapr-wasm functions` and `dapr-wasm image-api`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The port this app listens on (Dapr's app port).
    #[arg(long, env = "APP_PORT")]
    pub app_port: Option<u16>,

    /// The address to bind. Loopback by default; use 0.0.0.0 to serve others.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The sidecar's HTTP port, set by Dapr: given to the app's components
    /// (and the one place their outgoing requests may go).
    #[arg(long, env = "DAPR_HTTP_PORT")]
    pub dapr_http_port: Option<u16>,

    /// The app id, set by Dapr: given to the app's components as `APP_ID`.
    #[arg(long, env = "APP_ID")]
    pub app_id: Option<String>,

    /// The limits of one call (`--max-body-size`, `--max-output-size`,
    /// `--max-memory`, `--timeout`, `--queue-timeout`).
    #[command(flatten)]
    pub limits: LimitArgs,

    /// How long a whole upload may take to arrive; slower uploads get 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Calls that may run at once (all functions together); more wait.
    /// Defaults to the number of cores.
    #[arg(long)]
    pub max_concurrent_calls: Option<usize>,

    /// How often wasm files (and the functions file) are checked for
    /// changes, which are then loaded live; 0 turns reloading off.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// The module cache.
    #[command(flatten)]
    pub cache: CacheArgs,

    /// WASI-NN models and engine.
    #[command(flatten)]
    pub nn: NnArgs,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,

    /// The metrics port (`--metrics-port`).
    #[command(flatten)]
    pub metrics: service_kit::metrics::MetricsArgs,
}

/// Flags of `dapr-wasm functions`.
#[derive(Debug, Clone, Args)]
pub struct FunctionsArgs {
    /// The functions file (YAML) declaring what this app serves.
    #[arg(long, short = 'c', value_name = "FILE", env = "DAPR_WASM_FUNCTIONS")]
    pub config: PathBuf,
    /// Rebuild a function when its sources change (each entry's `build`:
    /// command and watched files); the new wasm file then reloads live.
    /// `dapr-wasm up --watch` sets it for every app.
    #[arg(long, env = "DAPR_WASM_WATCH", value_parser = clap::builder::BoolishValueParser::new())]
    pub watch: bool,

    /// Everything else.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// A checked configuration of a function app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Where its functions are declared.
    pub source: Source,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The sidecar's HTTP port, when running under Dapr.
    pub dapr_http_port: Option<u16>,
    /// The function host's configuration (slots, cache, the largest limits).
    pub host: HostConfig,
    /// Models for WASI-NN, loaded only for functions that import it.
    pub nn: NnConfig,
    /// What a function that sets no limits gets, and what bounds them.
    pub defaults: Defaults,
    /// How long a whole upload may take to arrive.
    pub body_timeout: Duration,
    /// How often to look for changed files; `None` never reloads.
    pub reload_interval: Option<Duration>,
    /// Whether functions are rebuilt when their sources change
    /// ([`crate::rebuild`]; at the reload interval).
    pub watch: bool,
    /// How many connections it serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
    /// Where its metrics are served, if anywhere.
    pub metrics: service_kit::metrics::MetricsArgs,
}

impl ServeArgs {
    /// Checks the shared flags into a configuration serving `source`, on
    /// `default_port` unless `--app-port` says otherwise.
    pub fn validate(&self, source: Source, default_port: u16) -> Result<AppConfig, String> {
        let limits = self.limits.call_limits()?;
        if self.body_timeout.is_zero() {
            return Err("--body-timeout must be greater than zero".into());
        }
        let defaults = HostConfig::default();
        let host = HostConfig {
            cache_dir: self.cache.cache_dir(),
            max_concurrent_calls: match self.max_concurrent_calls {
                Some(0) => return Err("--max-concurrent-calls must be at least 1".into()),
                Some(n) => n,
                None => defaults.max_concurrent_calls,
            },
            queue_timeout: self.limits.queue_timeout,
            limits,
            ..defaults
        };
        // One inference session per call slot: no call waits for another's.
        let nn = NnConfig {
            sessions: host.max_concurrent_calls,
            ..self.nn.validate()?
        };
        let defaults = Defaults {
            limits,
            models: nn.models.iter().map(|m| m.name.clone()).collect(),
            app_id: self.app_id.clone(),
            dapr_http_port: self.dapr_http_port,
        };
        // A file's own errors come first, before any port is bound.
        if let Source::File(path) = &source {
            FunctionsFile::load(path, &defaults)?;
        }
        Ok(AppConfig {
            source,
            listen: SocketAddr::new(self.bind, self.app_port.unwrap_or(default_port)),
            dapr_http_port: self.dapr_http_port,
            host,
            nn,
            defaults,
            body_timeout: self.body_timeout,
            reload_interval: (!self.reload_interval.is_zero()).then_some(self.reload_interval),
            watch: false,
            max_connections: self.connections.validate()?,
            metrics: self.metrics.clone(),
        })
    }
}

impl FunctionsArgs {
    /// Checks the flags and the functions file.
    pub fn validate(&self) -> Result<AppConfig, String> {
        let config = self
            .serve
            .validate(Source::File(self.config.clone()), DEFAULT_FUNCTIONS_PORT)?;
        if self.watch && config.reload_interval.is_none() {
            return Err(
                "--watch rebuilds wasm files for live reload, which --reload-interval 0 turns off"
                    .into(),
            );
        }
        Ok(AppConfig {
            watch: self.watch,
            ..config
        })
    }
}
