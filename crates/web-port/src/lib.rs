//! web-port: the image demo's front door, a Dapr app.
//!
//! It serves the web UI (embedded in the binary, see [`ui`]) and
//! `POST /api/hello`, which routes an uploaded image by its `api` header to
//! one of the image apps **through its own Dapr sidecar**
//! (`/v1.0/invoke/<app-id>/method/api/image`), and records each call in the
//! Dapr state store (see [`stats`]). It knows nothing of dapr-wasm's own
//! sidecar: it speaks only Dapr's HTTP API and env vars, so it runs the same
//! under `dapr-wasm up` and under real Dapr.
//!
//! # Layout
//!
//! - [`config`]: flags and env vars.
//! - [`dapr`]: the little Dapr HTTP client (invoke, state with etags).
//! - [`stats`]: the invocation counter and the last events, updated in
//!   batches with etag concurrency so that concurrent uploads never lose a
//!   count.
//! - [`routes`]: the handlers; [`error`]: their JSON errors.
//! - [`metrics`]: uploads and stats retries, for `GET /metrics`.
//! - [`system`]: the System panel: each process's health and request
//!   rate, from its metrics.
//! - [`ui`]: the page, its script and its style.

pub mod config;
pub mod dapr;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod stats;
pub mod system;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use service_kit::metrics::Listeners;

use crate::metrics::WebPortMetrics;

pub use config::{WebPortArgs, WebPortConfig};

/// Runs web-port until `shutdown`, then finishes the requests in flight.
pub async fn run(
    config: WebPortConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(dapr_http_port = config.dapr_http_port, "starting web-port");
    let listeners = Listeners::bind("web-port", config.listen, &config.metrics).await?;
    serve(listeners, config, shutdown).await
}

/// Serves web-port on `listeners` (for tests and `run`).
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: WebPortConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let connections = config.max_connections;
    let metrics = Arc::new(WebPortMetrics::new().context("cannot set up the metrics")?);
    let registries = vec![metrics.registry().clone()];
    let app = routes::app(config, metrics);
    service_kit::metrics::serve_app(listeners, app, registries, connections, shutdown).await;
    Ok(())
}
