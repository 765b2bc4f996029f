//! What every dapr-wasm service shares.
//!
//! - [`units`]: parsing of the sizes (`16Mi`) and durations (`10s`) that
//!   flags take, in daprd's formats.
//! - [`headers`]: reading shared request headers (`Content-Length`).
//! - [`shutdown`]: one shutdown signal (Ctrl-C or SIGTERM) for every
//!   long-running subcommand.

pub mod headers;
pub mod shutdown;
pub mod units;
