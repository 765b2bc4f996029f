//! Serves wasi:http components (the `wasi:http/proxy` world, as `wasmtime
//! serve`, Spin and wasmCloud run them) as Dapr apps: `dapr-wasm serve
//! FILE.wasm`.
//!
//! A component is compiled once (and cached on disk, as the function host
//! caches modules); each request gets a fresh instance from the pooling
//! allocator, with its own memory limit and deadline, and bounded bodies
//! both ways. Nothing is shared between requests; a component that loops,
//! traps or runs out of memory fails its own request only.
//!
//! What a component may reach: no files, no sockets, an environment of
//! `APP_ID` and `DAPR_HTTP_PORT` only, and outgoing HTTP (wasi:http's
//! outgoing-handler) only to its own Dapr sidecar, plus destinations the
//! operator allows ([`outbound`]). Through the sidecar's HTTP API it
//! reaches every Dapr building block.
//!
//! # Layout
//!
//! - [`config`]: [`ComponentHostConfig`], and each component's
//!   [`ComponentSettings`] (its [`RequestLimits`], environment, outbound).
//! - [`host`]: [`ComponentHost`] (engine, linker, slots) and
//!   [`ServedComponent`] (one component; a request's whole life).
//! - [`outbound`]: where outgoing requests may go.
//! - [`error`]: [`LoadError`] and the host's answers, [`RequestError`].
//! - `body` (private): the bounded, streaming bodies both ways.
//! - [`args`] and [`app`]: the `dapr-wasm serve` command.

#![deny(missing_docs)]

pub mod app;
pub mod args;
mod body;
pub mod config;
pub mod error;
pub mod host;
pub mod outbound;

pub use args::{ServeComponentArgs, ServeConfig};
pub use config::{ComponentHostConfig, ComponentSettings, RequestLimits, component_env};
pub use error::{LoadError, RequestError};
pub use host::{ComponentHost, ServedComponent};
