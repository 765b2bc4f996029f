//! What a [`ComponentHost`](crate::ComponentHost) is built with: the limits
//! every request gets, how many run at once, and what a component may
//! reach ([`Outbound`]).

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

/// Configuration of a [`ComponentHost`](crate::ComponentHost).
#[derive(Debug, Clone)]
pub struct ComponentHostConfig {
    /// Where compiled components are cached. `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Requests served at once (each holds one instance); more wait.
    pub max_concurrent_requests: usize,
    /// How long a request waits for a free slot before it gets 503.
    pub queue_timeout: Duration,
    /// Limits applied to every request.
    pub limits: RequestLimits,
    /// The environment every instance sees (`APP_ID`, `DAPR_HTTP_PORT`,
    /// and what the operator adds with `--env`).
    pub env: Vec<(String, String)>,
    /// Where outgoing HTTP requests may go.
    pub outbound: Outbound,
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
            limits: RequestLimits::default(),
            env: Vec::new(),
            outbound: Outbound::default(),
            epoch_tick: Duration::from_millis(10),
        }
    }
}
