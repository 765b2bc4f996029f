//! The component as an app: every request, whatever its path or method,
//! goes to the component ([`router`]); [`run`] loads it and serves it with
//! the bounds, metrics and traces every dapr-wasm app has.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use service_kit::metrics::Listeners;

use crate::args::ServeConfig;
use crate::host::{ComponentHost, ServedComponent};

/// A router that hands every request to `component`.
pub fn router(component: ServedComponent) -> Router {
    Router::new().fallback(handle).with_state(component)
}

async fn handle(State(component): State<ServedComponent>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    component.handle(request, peer).await
}

/// Loads the component and serves it until `shutdown`.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let host_config = config.host.clone();
    let path = config.component.clone();
    let settings = config.settings.clone();
    let component = tokio::task::spawn_blocking(move || -> anyhow::Result<ServedComponent> {
        let host = ComponentHost::new(host_config)?;
        Ok(host.load_file(&path, settings)?)
    })
    .await
    .context("loading the component panicked")??;
    let listeners = Listeners::bind("component", config.listen, &config.metrics).await?;
    tracing::info!(
        component = %config.component.display(),
        cache = ?component.cache_outcome(),
        max_concurrent_requests = config.host.max_concurrent_requests,
        outbound = ?config.settings.outbound.allowed().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "serving the component"
    );
    service_kit::metrics::serve_app(
        listeners,
        router(component),
        Vec::new(),
        config.max_connections,
        shutdown,
    )
    .await;
    Ok(())
}
