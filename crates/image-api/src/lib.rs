//! The image microservice: a Dapr app that serves one WebAssembly function.
//!
//! `dapr-wasm image-api --function grayscale=build/functions/grayscale.wasm`
//! listens on `APP_PORT` (default 9004; 9003 for `classify`) and runs the
//! function on every `POST /api/image`. The same binary serves `classify`:
//! a function that imports WASI-NN gets the configured models, preloaded
//! once (see [`function_host::nn`]). Under Dapr, other apps reach it through their sidecar at
//! `/v1.0/invoke/<app-id>/method/api/image`.
//!
//! # How a request moves through the service
//!
//! [`routes::app`] reads the body (bounded by `--max-body-size`), hands it to
//! [`function_host::Function::call`], and answers with the function's stdout
//! or with an [`error::ApiError`] as JSON `{errorCode, message}`.
//!
//! # Layout
//!
//! - [`args`]: flags and env vars, validated into an [`ImageApiConfig`].
//! - [`routes`]: the router and its handlers.
//! - [`error`]: the one table of status codes and `errorCode`s.
//! - [`serve`] and [`run`]: the server loop, testable on any listener.

pub mod args;
pub mod error;
pub mod routes;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use function_host::{Function, FunctionHost};
use service_kit::serve::ConnectionLimit;
use tokio::net::TcpListener;

pub use args::{ImageApiArgs, ImageApiConfig};

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

/// Creates the function host and loads the configured function (compiling it
/// or loading it from the cache) off the async threads. A function that
/// imports WASI-NN also gets its models, loaded and optimised here, once.
pub async fn load_function(config: &ImageApiConfig) -> anyhow::Result<Function> {
    let host_config = config.host.clone();
    let name = config.function_name.clone();
    let path = config.function_path.clone();
    let nn = config.nn.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Function> {
        let host = FunctionHost::new(host_config)?;
        let function = host
            .load_file(&name, &path)
            .context("cannot load the function")?;
        Ok(function_host::nn::load_models_for(function, &nn)?)
    })
    .await
    .context("loading the function panicked")?
}

/// Runs the image service described by `config` until `shutdown`.
pub async fn run(
    config: ImageApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let function = load_function(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        function = function.name(),
        dapr_http_port = config.dapr_http_port,
        "image-api listening on http://{local}"
    );
    let body_limits = service_kit::body::BodyLimits {
        max_bytes: config.host.limits.max_input_bytes,
        timeout: config.body_timeout,
    };
    let app = routes::app(function, body_limits);
    serve(listener, app, config.max_connections, shutdown).await;
    Ok(())
}
