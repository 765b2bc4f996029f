//! Prometheus metrics, as every dapr-wasm process serves them: the metric
//! families' constructors, the text rendering of one or more registries,
//! the `GET /metrics` server, and the HTTP server metrics the apps share.
//!
//! Each process keeps its own [`Registry`] (never a global one, so two
//! servers in one test process count apart) and serves it on a port of its
//! own: the sidecar on daprd's `--metrics-port`, the apps on the
//! `--metrics-port` of [`MetricsArgs`] (`APP_METRICS_PORT`, which
//! `dapr-wasm up` sets for every app). Loopback unless told otherwise.
//!
//! Names follow Prometheus's conventions (seconds, `_total` counters),
//! except the sidecar's, which are daprd's own.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use prometheus::{HistogramOpts, Opts};
use tokio::net::TcpListener;

use crate::trace::Tracer;

/// Errors building a metric family (a name or label set refused).
pub type MetricsError = prometheus::Error;

/// Bounds, in seconds, for durations from half a millisecond to a minute.
pub const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// `count` bucket bounds from `start`, each `factor` times the last.
pub fn prometheus_buckets(start: f64, factor: f64, count: usize) -> Result<Vec<f64>, MetricsError> {
    prometheus::exponential_buckets(start, factor, count)
}

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "other";

/// `metric`, registered in `registry`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, MetricsError> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A counter family registered in `registry`.
pub fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// A gauge family registered in `registry`.
pub fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

/// A histogram family with these bucket bounds, registered in `registry`.
pub fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(registry, HistogramVec::new(opts, labels)?)
}

/// Every metric of these registries, in Prometheus's text format.
pub fn render(registries: &[&Registry]) -> String {
    let mut families = Vec::new();
    for registry in registries {
        families.extend(registry.gather());
    }
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut text)
        .unwrap_or_else(|err| tracing::warn!(error = %err, "cannot encode the metrics"));
    text
}

/// Serves `GET /metrics` on `listener`, answering with what `render`
/// returns at each scrape, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router =
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], render()).into_response()
                }
            }),
        );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The metrics flags of an app (the sidecar has daprd's own).
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at GET /metrics on this port (0: any free
    /// port); none without it.
    #[arg(long, env = "APP_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// The address the metrics port listens on.
    #[arg(long, env = "APP_METRICS_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub metrics_bind: IpAddr,
}

impl Default for MetricsArgs {
    /// No metrics port.
    fn default() -> MetricsArgs {
        MetricsArgs {
            metrics_port: None,
            metrics_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl MetricsArgs {
    /// Where to serve the metrics, if anywhere.
    pub fn address(&self) -> Option<SocketAddr> {
        self.metrics_port
            .map(|port| SocketAddr::new(self.metrics_bind, port))
    }

    /// Binds the metrics port, if one was asked for, and logs where it is.
    pub async fn bind(&self, app: &str) -> std::io::Result<Option<TcpListener>> {
        let Some(address) = self.address() else {
            return Ok(None);
        };
        let listener = TcpListener::bind(address).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("cannot listen for metrics on {address}: {err}"),
            )
        })?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!("{app} metrics on http://{local}/metrics");
        }
        Ok(Some(listener))
    }
}

/// An HTTP server's requests, by route, method and status, with
/// OpenTelemetry's names for them (`http.server.request.duration`).
pub struct HttpServerMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpServerMetrics {
    /// `http_server_requests_total` and `http_server_request_duration_seconds`,
    /// registered in `registry`.
    pub fn new(registry: &Registry) -> Result<HttpServerMetrics, MetricsError> {
        let labels = [
            "http_request_method",
            "http_route",
            "http_response_status_code",
        ];
        Ok(HttpServerMetrics {
            requests: counter(
                registry,
                "http_server_requests_total",
                "HTTP requests answered, by route (the path template) and status.",
                &labels,
            )?,
            duration: histogram(
                registry,
                "http_server_request_duration_seconds",
                "Time from a request's arrival to its response's head, by route and status.",
                &labels,
                &SECONDS_BUCKETS,
            )?,
        })
    }

    /// One request answered.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The `http_route` of a response whose handler knows its route better
/// than the router (a fallback serving configured routes): put in the
/// response's extensions.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Middleware (`axum::middleware::from_fn_with_state`, added with
/// `Router::layer` so the route is known): records each request in
/// `metrics`, by its route template, so path parameters make no new series
/// (or by the response's [`RouteLabel`]).
pub async fn record_http_request(
    State(metrics): State<Arc<HttpServerMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(route.as_str(), |label| label.0.as_str());
    metrics.record(
        method.as_str(),
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// An app's bound ports: where it serves, and where its metrics are, if
/// anywhere. A bare listener converts into one with no metrics port.
pub struct Listeners {
    /// The app's own port.
    pub app: TcpListener,
    /// Its metrics port.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(app: TcpListener) -> Listeners {
        Listeners { app, metrics: None }
    }
}

impl Listeners {
    /// Binds `app` (logging it as `name`'s address) and the metrics port
    /// `metrics` asks for.
    pub async fn bind(
        name: &str,
        app: SocketAddr,
        metrics: &MetricsArgs,
    ) -> std::io::Result<Listeners> {
        let listener = TcpListener::bind(app).await.map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot listen on {app}: {err}"))
        })?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!("{name} listening on http://{local}");
        }
        Ok(Listeners {
            app: listener,
            metrics: metrics.bind(name).await?,
        })
    }
}

/// Serves an app's `router` on `listeners.app` with its requests counted
/// ([`HttpServerMetrics`]) and traced (a server span each, recorded as
/// OpenTelemetry's environment says: [`Tracer::from_env`]), and, on `listeners.metrics`, those counts with
/// every metric of `registries`; both until `shutdown`, as
/// [`crate::serve::serve`] does.
pub async fn serve_app(
    listeners: impl Into<Listeners>,
    router: axum::Router,
    registries: Vec<Registry>,
    connections: crate::serve::ConnectionLimit,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let listeners = listeners.into();
    // Apps take OpenTelemetry's environment (`dapr-wasm up` sets it from
    // the sidecar's Dapr Configuration); the CLI refuses a bad one before
    // any app starts, so the fallback here is for embedders.
    let tracer = Tracer::from_env(DEFAULT_APP_SERVICE_NAME).unwrap_or_else(|err| {
        tracing::error!(error = %err, "tracing is off");
        Tracer::off()
    });
    let router = router.layer(axum::middleware::from_fn_with_state(
        tracer.clone(),
        crate::trace::trace_request,
    ));
    let http_registry = Registry::new();
    let router = match HttpServerMetrics::new(&http_registry) {
        Ok(http) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(http),
            record_http_request,
        )),
        Err(err) => {
            tracing::warn!(error = %err, "cannot count HTTP requests");
            router
        }
    };
    let metrics_server = listeners.metrics.map(|listener| {
        let mut all = vec![http_registry];
        all.extend(registries);
        let render = move || render(&all.iter().collect::<Vec<_>>());
        AbortOnDrop(tokio::spawn(async move {
            if let Err(err) = serve(listener, render, std::future::pending()).await {
                tracing::warn!(error = %err, "the metrics server stopped");
            }
        }))
    });
    crate::serve::serve(listeners.app, router, connections, shutdown).await;
    drop(metrics_server);
    // Sending the last spans blocks.
    let _ = tokio::task::spawn_blocking(move || drop(tracer)).await;
}

/// The `service.name` of an app's spans when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_APP_SERVICE_NAME: &str = "dapr-wasm-app";

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
