//! Runs WASI preview1 commands ("functions") as isolated, limited wasm calls.
//!
//! This is the heart of dapr-wasm: every service that serves a function embeds
//! a [`FunctionHost`]. A call hands the function its stdin bytes and argv, and
//! gets back what it wrote to stdout and stderr, or a typed [`CallError`]
//! (tests/calls.rs makes these calls for real; doc tests are not run, as
//! `cargo nextest` does not run them):
//!
//! ```ignore
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use function_host::{FunctionHost, HostConfig};
//!
//! let host = FunctionHost::new(HostConfig::default())?;
//! let grayscale = host.load_file("grayscale", "build/functions/grayscale.wasm".as_ref())?;
//! let photo = std::fs::read("photo.jpg")?;
//! let output = grayscale.call(photo.into(), &[]).await?;
//! std::fs::write("gray.png", &output.stdout)?;
//! # Ok(()) }
//! ```
//!
//! # How a call moves through the host
//!
//! 1. [`FunctionHost::load_file`] compiles the module once, or loads the
//!    precompiled artifact from the on-disk [`cache`](crate::cache), and links
//!    WASI into an `InstancePre`. That is all the per-module work.
//! 2. [`Function::call`] waits, for at most [`HostConfig::queue_timeout`], for
//!    one of [`HostConfig::max_concurrent_calls`] slots; else [`CallError::Busy`].
//! 3. On a blocking thread it builds a fresh `Store` with in-memory stdio, no
//!    environment, no sockets, and no preopened directories except the
//!    read-only ones the function was given, instantiates from
//!    the pooling allocator and runs `_start`.
//! 4. The epoch ticker (see [`epoch`](crate::epoch)) interrupts a call that
//!    runs past its deadline; a resource limiter refuses memory growth past
//!    the limit. The outcome is classified into [`CallOutput`] or
//!    [`CallError`].
//!
//! # Exit codes
//!
//! A function says "bad input" by exiting non-zero and writing a one-line
//! reason to stderr. Services map the code to a status; dapr-wasm's functions
//! use `1` for invalid input, `2` for an unsupported format and `3` for input
//! over a limit ([`ExitKind`]).
//!
//! # Layout
//!
//! - [`config`](crate::config): [`HostConfig`] and per-call [`CallLimits`].
//! - [`cache`](crate::cache): the on-disk cache of precompiled modules.
//! - [`epoch`](crate::epoch): the thread that drives deadlines.
//! - [`host`](crate::host): [`FunctionHost`], [`Function`] and the call itself.
//! - [`error`](crate::error): [`LoadError`] and [`CallError`].
//! - [`limiter`](crate::limiter): the per-call memory limit.
//! - [`metrics`](crate::metrics): what the host counts, per function.
//! - [`nn`](crate::nn): WASI-NN: models preloaded by name, run by ONNX
//!   Runtime (or tract, with the `tract` feature), linked only into
//!   functions that import it.
//! - `stdio` (private): the direct `fd_write` behind stdout and stderr.

#![deny(missing_docs)]

pub mod cache;
pub mod config;
pub mod epoch;
pub mod error;
pub mod host;
pub mod limiter;
pub mod metrics;
pub mod nn;
mod stdio;

pub use config::{CacheArgs, CallLimits, HostConfig, LimitArgs, profiler_from_env};
pub use error::{CallError, ExitKind, LoadError};
pub use host::{CallOutput, Function, FunctionHost, ReadOnlyDir};
