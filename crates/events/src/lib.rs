//! The events service: the seed's events-service, as Dapr users would
//! build it. A Dapr app that subscribes to the image events web-port
//! publishes (topic `image-events`), keeps each one in a SQL database, and
//! serves them:
//!
//! - `GET /dapr/subscribe`: its subscription (Dapr asks at start-up);
//! - `POST /image-events`: an event, as a CloudEvent from the sidecar;
//!   stored once per CloudEvent `id`, so a redelivery never counts twice;
//! - `GET /events?limit=&offset=`: the events, newest first, paged;
//! - `GET /events/summary`: counts per API and status;
//! - `GET /healthz`.
//!
//! The database is SQLite by default, or PostgreSQL or MariaDB/MySQL by
//! URL, read from a Dapr secret store (`--database-secret STORE/KEY`) as
//! the seed reads its MySQL URL, or given directly (`--database-url`).
//!
//! # Layout
//!
//! - [`config`]: flags and env vars.
//! - [`store`]: the [`store::EventStore`] trait and one module per database.
//! - [`routes`]: the handlers.

pub mod config;
pub mod routes;
pub mod store;

use std::future::Future;

use serde::{Deserialize, Serialize};
use service_kit::metrics::Listeners;

pub use config::{EventsArgs, EventsConfig};

/// One processed image, as web-port publishes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageEvent {
    /// When the call finished, RFC 3339 UTC.
    pub time: String,
    /// `grayscale` or `classify`.
    pub api: String,
    /// Upload size.
    #[serde(rename = "inputBytes")]
    pub input_bytes: usize,
    /// Answer size.
    #[serde(rename = "outputBytes")]
    pub output_bytes: usize,
    /// Time the call took, in milliseconds.
    pub milliseconds: f64,
    /// The HTTP status returned to the browser.
    pub status: u16,
    /// The browser's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Opens the database, then serves until `shutdown`.
pub async fn run(
    config: EventsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind("events service", config.listen, &config.metrics).await?;
    let store = store::open(&config).await?;
    tracing::info!(database = store.kind(), "events service ready");
    serve(listeners, config, store, shutdown).await;
    Ok(())
}

/// Serves on `listeners` with `store` (for tests and [`run`]).
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: EventsConfig,
    store: Box<dyn store::EventStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let connections = config.max_connections;
    let app = routes::app(config, store);
    service_kit::metrics::serve_app(listeners, app, Vec::new(), connections, shutdown).await;
}
