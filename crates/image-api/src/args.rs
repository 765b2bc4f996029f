//! The `dapr-wasm image-api` command line: [`ImageApiArgs`] is what the user
//! typed (flags and Dapr's env vars); [`ImageApiArgs::validate`] turns it into
//! an [`ImageApiConfig`] whose values are checked before any port is bound.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use function_host::nn::{NnArgs, NnConfig};
use function_host::{CacheArgs, CallLimits, HostConfig};

use service_kit::units::{parse_duration, parse_size};

/// Flags of `dapr-wasm image-api`.
#[derive(Debug, Clone, Args)]
pub struct ImageApiArgs {
    /// The function to serve, as NAME=PATH to a WASI command (.wasm).
    #[arg(long, value_name = "NAME=PATH", env = "DAPR_WASM_FUNCTION")]
    pub function: String,

    /// The port this app listens on (Dapr's app port) [default: 9003 for
    /// the `classify` function, the seed's classify port; 9004 otherwise].
    #[arg(long, env = "APP_PORT")]
    pub app_port: Option<u16>,

    /// The address to bind. Loopback by default; use 0.0.0.0 to serve others.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// The sidecar's HTTP port, set by Dapr. Read now, used by later features.
    #[arg(long, env = "DAPR_HTTP_PORT")]
    pub dapr_http_port: Option<u16>,

    /// Largest request body (and function input), e.g. 16Mi.
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    pub max_body_size: usize,

    /// Largest function output, e.g. 64Mi.
    #[arg(long, default_value = "64Mi", value_parser = parse_size)]
    pub max_output_size: usize,

    /// Largest linear memory of one call, e.g. 512Mi.
    #[arg(long, default_value = "512Mi", value_parser = parse_size)]
    pub max_memory: usize,

    /// Wall-clock deadline of one call, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How long a whole upload may take to arrive; slower uploads get 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Calls that may run at once; more wait. Defaults to the number of cores.
    #[arg(long)]
    pub max_concurrent_calls: Option<usize>,

    /// How long a call waits for a free slot before it gets 503 busy.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub queue_timeout: Duration,

    /// The module cache.
    #[command(flatten)]
    pub cache: CacheArgs,

    /// WASI-NN models and engine.
    #[command(flatten)]
    pub nn: NnArgs,

    /// The connection limit (`--max-connections`).
    #[command(flatten)]
    pub connections: service_kit::serve::ConnectionArgs,
}

/// A checked configuration of the image service.
#[derive(Debug, Clone)]
pub struct ImageApiConfig {
    /// The function's name: its `argv[0]` and its alias route `POST /<name>`.
    pub function_name: String,
    /// The function's wasm file.
    pub function_path: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The sidecar's HTTP port, when running under Dapr.
    pub dapr_http_port: Option<u16>,
    /// The function host's configuration (limits, slots, cache).
    pub host: HostConfig,
    /// Models for WASI-NN, loaded only if the function imports it.
    pub nn: NnConfig,
    /// How long a whole upload may take to arrive.
    pub body_timeout: Duration,
    /// How many connections it serves at once.
    pub max_connections: service_kit::serve::ConnectionLimit,
}

/// The app port when none is given: the seed's ports.
pub fn default_app_port(function_name: &str) -> u16 {
    if function_name == "classify" {
        9003
    } else {
        9004
    }
}

impl ImageApiArgs {
    /// Checks the flags and derives the service's configuration.
    pub fn validate(&self) -> Result<ImageApiConfig, String> {
        let (name, path) = self
            .function
            .split_once('=')
            .ok_or_else(|| format!("--function `{}` must be NAME=PATH", self.function))?;
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!(
                "--function name `{name}` must be letters, digits, `-` or `_`"
            ));
        }
        if name == "api" || name == "healthz" {
            return Err(format!(
                "--function name `{name}` clashes with a built-in route"
            ));
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "--function {name}: {} does not exist (build the functions first: bash scripts/up.sh)",
                path.display()
            ));
        }
        if self.max_body_size == 0 || self.max_output_size == 0 || self.max_memory == 0 {
            return Err("sizes must be greater than zero".into());
        }
        if self.timeout.is_zero() || self.body_timeout.is_zero() {
            return Err("--timeout and --body-timeout must be greater than zero".into());
        }
        let defaults = HostConfig::default();
        let host = HostConfig {
            cache_dir: self.cache.cache_dir(),
            max_concurrent_calls: match self.max_concurrent_calls {
                Some(0) => return Err("--max-concurrent-calls must be at least 1".into()),
                Some(n) => n,
                None => defaults.max_concurrent_calls,
            },
            queue_timeout: self.queue_timeout,
            limits: CallLimits {
                max_memory_bytes: self.max_memory,
                deadline: self.timeout,
                max_input_bytes: self.max_body_size,
                max_output_bytes: self.max_output_size,
            },
            ..defaults
        };
        // One inference session per call slot: no call waits for another's.
        let nn = NnConfig {
            sessions: host.max_concurrent_calls,
            ..self.nn.validate()?
        };
        Ok(ImageApiConfig {
            function_name: name.to_string(),
            function_path: path,
            listen: SocketAddr::new(
                self.bind,
                self.app_port.unwrap_or_else(|| default_app_port(name)),
            ),
            dapr_http_port: self.dapr_http_port,
            host,
            nn,
            body_timeout: self.body_timeout,
            max_connections: self.connections.validate()?,
        })
    }
}
