//! What the workspace's tests share, so that no test helper is written
//! twice. A dev-dependency of every crate with integration tests.
//!
//! # Layout
//!
//! - [`paths`]: files of the repository ([`repo_path`]), the built guests
//!   ([`wasm_path`]), the built components ([`component_path`]) and the photos in `testdata/` ([`photo`]).
//! - [`services`]: real servers the tests need: [`require_service`] for the
//!   machine's Redis or PostgreSQL, and [`RedisServer`], a private
//!   `redis-server` killed on drop.
//! - [`metrics`]: a scrape of `GET /metrics`, its samples looked up by name
//!   and labels ([`metrics::Scrape`]).
//! - [`otlp`]: an OpenTelemetry collector (OTLP/HTTP) keeping the spans
//!   it is sent ([`otlp::SpanReceiver`]).
//! - [`wait`]: waiting for readiness instead of sleeping ([`wait_until`]).
//! - [`process`]: a service binary on port 0, its address read from its
//!   log ([`spawn_listening`]).
//! - [`sidecar`]: a sidecar started with the production `run_on` on an
//!   ephemeral port ([`RunningSidecar`]), an app that echoes what it got
//!   ([`start_echo_app`]), and checks of Dapr's error bodies.
//! - [`tls`]: a test CA's certificates, and the echo app over HTTPS for
//!   clients with a certificate ([`tls::start_mtls_echo_app`]).
//!
//! # Tests that need something outside the repository
//!
//! They are `#[ignore = "needs …"]`, so a plain `cargo test` lists them as
//! ignored with the reason instead of passing them silently;
//! `scripts/test.sh` starts what they need and runs them too
//! (`--run-ignored all`). A test that runs and finds its service missing
//! fails with the fix ([`require_service`]): it never skips itself.

pub mod metrics;
pub mod otlp;
pub mod paths;
pub mod process;
pub mod services;
pub mod sidecar;
pub mod tls;
pub mod wait;

pub use paths::{component_path, photo, repo_path, wasm_path};
pub use process::{run_sdk_checks, spawn_listening};
pub use services::{BrokerServer, RabbitVhost, RedisServer, require_service};
pub use sidecar::{RunningSidecar, assert_dapr_error, get_json, start_echo_app};
pub use wait::wait_until;
