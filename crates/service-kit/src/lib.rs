//! What every dapr-wasm service shares.
//!
//! - [`units`]: parsing of the sizes (`16Mi`) and durations (`10s`) that
//!   flags take, in daprd's formats.
//! - [`shutdown`]: one shutdown signal (Ctrl-C or SIGTERM) for every
//!   long-running subcommand.

pub mod shutdown;
pub mod units;
