//! The function app: a Dapr app that serves WebAssembly functions over HTTP.
//!
//! `dapr-wasm functions --config functions.yaml` serves every function the
//! file declares ([`config`]), each at `POST /fn/{name}` and its aliases,
//! with its own limits, models, read-only directories and exit-code
//! answers. When a wasm file or the file itself changes, the new version is
//! loaded off the request path and swapped in ([`catalog`]); calls in
//! flight finish on the old one.
//!
//! `dapr-wasm image-api --function grayscale=build/functions/grayscale.wasm`
//! is the image apps' shorthand for one such entry ([`image_api`]): it
//! listens on `APP_PORT` (default 9004; 9003 for `classify`) and runs the
//! function on every `POST /api/image`. A function that imports WASI-NN
//! gets its models, preloaded once (see [`function_host::nn`]). Under Dapr,
//! other apps reach it through their sidecar at
//! `/v1.0/invoke/<app-id>/method/api/image`.
//!
//! # How a request moves through the app
//!
//! [`routes::app`] finds the function for the path in the catalog's current
//! table, reads the body (bounded by the function's input limit), hands it
//! to [`function_host::Function::call`], and answers with the function's
//! stdout or with an [`error::ApiError`] as JSON `{errorCode, message}`.
//!
//! # Layout
//!
//! - [`args`]: the flags, validated into an [`AppConfig`].
//! - [`config`]: the functions file.
//! - [`image_api`]: the `image-api` shorthand.
//! - [`catalog`]: the loaded functions and their live reload.
//! - [`rebuild`]: rebuilding functions from their sources (`--watch`).
//! - [`routes`]: the router and its handlers.
//! - [`error`]: the one table of status codes and `errorCode`s.
//! - [`serve`] and [`run`]: the server loop, testable on any listener.

pub mod args;
pub mod catalog;
pub mod config;
pub mod error;
pub mod image_api;
pub mod rebuild;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use function_host::{Function, FunctionHost};
use service_kit::metrics::Listeners;
use service_kit::serve::ConnectionLimit;
use tokio::net::TcpListener;

pub use args::{AppConfig, FunctionsArgs, ServeArgs};
pub use catalog::Catalog;
pub use image_api::ImageApiArgs;

/// Serves `app` on `listener`, at most `connections` at once, until
/// `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    connections: ConnectionLimit,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    service_kit::serve::serve(listener, app, connections, shutdown).await
}

/// Creates the function host and loads every configured function
/// (compiling each or loading it from the cache, and its models) off the
/// async threads.
pub async fn load_catalog(config: &AppConfig) -> anyhow::Result<Arc<Catalog>> {
    let host_config = config.host.clone();
    let nn = config.nn.clone();
    let defaults = config.defaults.clone();
    let source = config.source.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Catalog>> {
        let host = FunctionHost::new(host_config)?;
        let catalog = Catalog::load(host, nn, defaults, source)
            .map_err(anyhow::Error::msg)
            .context("cannot load the functions")?;
        Ok(Arc::new(catalog))
    })
    .await
    .context("loading the functions panicked")?
}

/// The router of an app serving one function already loaded (with its
/// models), at the image apps' routes ([`image_api::image_function`]),
/// with no reload: for tests and benchmarks that build their own
/// [`Function`].
pub fn single_function_app(
    function: Function,
    body_limits: service_kit::body::BodyLimits,
) -> Router {
    let catalog = Catalog::with_loaded(image_api::loaded_image_function(
        function,
        body_limits.max_bytes,
    ));
    routes::app(Arc::new(catalog), body_limits.timeout)
}

/// Runs the function app described by `config` until `shutdown`.
pub async fn run(
    config: AppConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let catalog = load_catalog(&config).await?;
    let listeners = Listeners::bind("function app", config.listen, &config.metrics).await?;
    serve_catalog(&config, catalog, listeners, shutdown).await;
    Ok(())
}

/// Serves `catalog` on `listeners` as `config` says (its function host's
/// metrics on the metrics port, [`function_host::metrics`]), watching its
/// files for changes, until `shutdown`.
pub async fn serve_catalog(
    config: &AppConfig,
    catalog: Arc<Catalog>,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let listeners = listeners.into();
    let listener = &listeners.app;
    let names: Vec<String> = catalog
        .current()
        .functions()
        .iter()
        .map(|served| served.config.name.clone())
        .collect();
    match listener.local_addr() {
        Ok(local) => tracing::info!(
            functions = ?names,
            dapr_http_port = config.dapr_http_port,
            reload_interval = ?config.reload_interval,
            "function app serving on http://{local}"
        ),
        Err(e) => tracing::warn!(error = %e, "function app listening (address unknown)"),
    }
    let _watch = config
        .reload_interval
        .map(|interval| AbortOnDrop(catalog.watch(interval)));
    let _rebuild = match config.reload_interval {
        Some(interval) if config.watch => Some(AbortOnDrop(rebuild::watch_sources(
            catalog.clone(),
            interval,
        ))),
        _ => None,
    };
    let registries = vec![catalog.host().metrics().clone()];
    let app = routes::app(catalog, config.body_timeout);
    service_kit::metrics::serve_app(listeners, app, registries, config.max_connections, shutdown)
        .await;
}

/// Stops the reload (and rebuild) task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
