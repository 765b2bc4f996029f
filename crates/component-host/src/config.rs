//! What a [`ComponentHost`](crate::ComponentHost) is built with (how many
//! requests run at once, the largest memory any may have), and what each
//! component is served with ([`ComponentSettings`]: its limits, its
//! environment, what it may reach).

use std::path::PathBuf;
use std::time::Duration;

use crate::outbound::Outbound;

/// Limits applied to every request a component serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock time from the request's start until the component has
    /// finished its response, body included; past it the instance is
    /// dropped (504 if no response had started).
    pub deadline: Duration,
    /// Largest request body the component is given, in bytes.
    pub max_request_body_bytes: u64,
    /// Largest response body the component may send, in bytes.
    pub max_response_body_bytes: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_memory_bytes: 512 << 20,
            deadline: Duration::from_secs(10),
            max_request_body_bytes: 16 << 20,
            max_response_body_bytes: 64 << 20,
        }
    }
}

/// A function's limits, as a component's: its input and output are the
/// request and response bodies.
impl From<function_host::CallLimits> for RequestLimits {
    fn from(limits: function_host::CallLimits) -> Self {
        RequestLimits {
            max_memory_bytes: limits.max_memory_bytes,
            deadline: limits.deadline,
            max_request_body_bytes: limits.max_input_bytes as u64,
            max_response_body_bytes: limits.max_output_bytes as u64,
        }
    }
}

/// Configuration of a [`ComponentHost`](crate::ComponentHost).
#[derive(Debug, Clone)]
pub struct ComponentHostConfig {
    /// Where compiled components are cached. `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Requests served at once (each holds one instance); more wait.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a free slot before it gets 503.
    pub queue_timeout: Duration,
    /// The largest linear memory any component's instance may have (each
    /// component's own limit is at most this).
    pub max_memory_bytes: usize,
    /// How often the deadline clock ticks; a looping guest yields to other
    /// requests at every tick.
    pub epoch_tick: Duration,
}

/// Requests at once when `--max-concurrent-requests` is not given: a
/// component mostly waits on I/O (its sidecar), so many more than cores.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;

impl Default for ComponentHostConfig {
    fn default() -> Self {
        ComponentHostConfig {
            cache_dir: None,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            queue_timeout: Duration::from_secs(5),
            max_memory_bytes: RequestLimits::default().max_memory_bytes,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// What one component is served with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentSettings {
    /// Limits applied to each of its requests.
    pub limits: RequestLimits,
    /// The environment its instances see (`APP_ID`, `DAPR_HTTP_PORT`, and
    /// what the operator adds with `--env`); nothing else of the host's.
    pub env: Vec<(String, String)>,
    /// Where its outgoing HTTP requests may go.
    pub outbound: Outbound,
}

/// The environment of a component's instances: `APP_ID` and
/// `DAPR_HTTP_PORT` when the app has them, then the operator's `given`
/// variables, which may not set those two or have a name with `=`.
pub fn component_env(
    app_id: Option<&str>,
    dapr_http_port: Option<u16>,
    given: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    if let Some(app_id) = app_id {
        env.push(("APP_ID".to_string(), app_id.to_string()));
    }
    if let Some(port) = dapr_http_port {
        env.push(("DAPR_HTTP_PORT".to_string(), port.to_string()));
    }
    for (name, value) in given {
        if name.is_empty() || name.contains('=') {
            return Err(format!("env: `{name}` is not a variable name"));
        }
        if name == "APP_ID" || name == "DAPR_HTTP_PORT" {
            return Err(format!(
                "env: `{name}` is set by the app; it cannot be given"
            ));
        }
        env.push((name, value));
    }
    Ok(env)
}
