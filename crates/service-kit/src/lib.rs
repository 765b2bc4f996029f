//! What every dapr-wasm service shares.
//!
//! - [`units`]: parsing of the sizes (`16Mi`) and durations (`10s`) that
//!   flags take, in daprd's formats.
//! - [`error_body`]: Dapr's JSON error response `{errorCode, message}`.
//! - [`headers`]: reading shared request headers (`Content-Length`).
//! - [`body`]: reading a request body under a size limit.
//! - [`serve`]: the HTTP server loop, with header bounds, timeouts and a
//!   connection limit (`--max-connections`).
//! - [`idle_trim`]: giving freed memory back to the kernel when a server
//!   goes idle (what [`serve`] does after a burst).
//! - [`metrics`]: Prometheus metrics: building them, `GET /metrics`, and
//!   the apps' HTTP server metrics.
//! - [`trace`]: distributed tracing: W3C trace context through every hop,
//!   spans recorded and exported as a Dapr `Configuration` says.
//! - [`ports`]: a free loopback port for a process that binds it itself.
//! - [`shutdown`]: one shutdown signal (Ctrl-C or SIGTERM) for every
//!   long-running subcommand.

pub mod body;
pub mod error_body;
pub mod headers;
pub mod idle_trim;
pub mod metrics;
pub mod ports;
pub mod serve;
pub mod shutdown;
pub mod trace;
pub mod units;
