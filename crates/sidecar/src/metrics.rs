//! Prometheus metrics with daprd's names and labels, so that dashboards and
//! alerts written for Dapr read a dapr-wasm sidecar unchanged.
//!
//! daprd records them with OpenCensus and exports them on its metrics port
//! (`--metrics-port`, default 9090; `--enable-metrics=false` turns the port
//! off); so does this sidecar, as `GET /metrics` in Prometheus's text
//! format ([`serve`]). The names, labels and bucket bounds are daprd's
//! (dapr/dapr `docs/development/dapr-metrics.md` and
//! `pkg/diagnostics/*_monitoring.go`), latencies in milliseconds:
//!
//! - `dapr_http_server_request_count`, `dapr_http_server_response_count`,
//!   `dapr_http_server_latency`, `dapr_http_server_request_bytes`,
//!   `dapr_http_server_response_bytes`: the HTTP API ([`record_http`]). Its
//!   `path` label is the route (`/v1.0/state/{store}`), so a key or an app
//!   id does not make a new series; requests no route matched are `other`.
//! - `dapr_grpc_io_server_completed_rpcs`, `dapr_grpc_io_server_server_latency`:
//!   the gRPC API, by method and status ([`record_grpc`]).
//! - `dapr_http_client_roundtrip_latency`, `dapr_http_client_completed_count`:
//!   calls from the sidecar to its app ([`Metrics::record_app_call`]).
//! - `dapr_runtime_component_loaded`: components loaded at start.
//! - `dapr_component_pubsub_egress_*` (publishing) and
//!   `dapr_component_pubsub_ingress_*` (each delivery to the app, by
//!   `process_status`: `success`, `retry`, `drop`).
//! - `dapr_component_output_binding_*`: `bindings.wasm` calls.
//! - `dapr_component_input_binding_*`: input binding events sent to the
//!   app, by `success`.
//! - `dapr_component_secret_*`: secret reads (`get`, `bulk_get`).
//! - `dapr_component_state_count`, `dapr_component_state_latencies`: each
//!   call of the state building block, from either API
//!   ([`Metrics::record_state`]).
//! - `dapr_runtime_actor_*`: actors deactivated (and failed), rebalanced,
//!   calls waiting for an actor's turn, reminders and timers fired, by
//!   `actor_type` ([`ActorMetrics`]).
//! - `dapr_runtime_workflow_*`: operations on workflow instances, runs
//!   that ended and activity results, with their latencies
//!   ([`WorkflowMetrics`]).
//!
//! Recording costs a few atomic adds per request; with the metrics off
//! (`--enable-metrics=false`) nothing is recorded, as in daprd.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use service_kit::headers::content_length;
use service_kit::metrics::{
    HistogramVec, IntCounterVec, IntGaugeVec, Registry, counter, gauge, histogram,
};
use tokio::net::TcpListener;

use crate::Sidecar;

/// Errors building the metric families (a name or label set refused).
pub use service_kit::metrics::MetricsError;

/// daprd's latency buckets, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 34] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 50000.0, 100000.0,
];

/// daprd's size buckets, in bytes.
const SIZE_BUCKETS: [f64; 13] = [
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// One sidecar's metrics.
pub struct Metrics {
    registry: Registry,
    /// Whether anything is recorded.
    enabled: bool,
    app_id: String,
    http_server_request_count: IntCounterVec,
    http_server_response_count: IntCounterVec,
    http_server_latency: HistogramVec,
    http_server_request_bytes: HistogramVec,
    http_server_response_bytes: HistogramVec,
    http_client_roundtrip_latency: HistogramVec,
    http_client_completed_count: IntCounterVec,
    grpc_server_completed_rpcs: IntCounterVec,
    grpc_server_latency: HistogramVec,
    component_loaded: IntCounterVec,
    state: Timed,
    pubsub_egress: Timed,
    pubsub_ingress: Timed,
    output_binding: Timed,
    input_binding: Timed,
    secret: Timed,
    configuration: Timed,
    /// The actor runtime's.
    pub actors: ActorMetrics,
    /// The workflow engine's.
    pub workflows: WorkflowMetrics,
}

/// daprd's workflow metrics (`pkg/diagnostics/workflow_monitoring.go`),
/// by `app_id` and `namespace`; latencies in milliseconds.
pub struct WorkflowMetrics {
    enabled: bool,
    app_id: String,
    operation_count: IntCounterVec,
    operation_latency: HistogramVec,
    execution_count: IntCounterVec,
    execution_latency: HistogramVec,
    activity_count: IntCounterVec,
    activity_latency: HistogramVec,
}

/// A workflow operation's, execution's or activity's outcome, as daprd's
/// `status` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowOutcome {
    Success,
    Failed,
    Terminated,
}

impl WorkflowOutcome {
    fn label(self) -> &'static str {
        match self {
            WorkflowOutcome::Success => "success",
            WorkflowOutcome::Failed => "failed",
            WorkflowOutcome::Terminated => "terminated",
        }
    }
}

impl WorkflowMetrics {
    fn new(
        registry: &Registry,
        app_id: &str,
        enabled: bool,
    ) -> Result<WorkflowMetrics, MetricsError> {
        let operation = ["app_id", "namespace", "operation", "status"];
        let execution = ["app_id", "namespace", "status", "workflow_name"];
        let activity = ["activity_name", "app_id", "namespace", "status"];
        Ok(WorkflowMetrics {
            enabled,
            app_id: app_id.to_string(),
            operation_count: counter(
                registry,
                "dapr_runtime_workflow_operation_count",
                "The number of successful/failed workflow operation requests.",
                &operation,
            )?,
            operation_latency: histogram(
                registry,
                "dapr_runtime_workflow_operation_latency",
                "The latencies of responses for workflow operation requests.",
                &operation,
                &LATENCY_BUCKETS_MS,
            )?,
            execution_count: counter(
                registry,
                "dapr_runtime_workflow_execution_count",
                "The number of successful/failed/terminated/recoverable workflow executions.",
                &execution,
            )?,
            execution_latency: histogram(
                registry,
                "dapr_runtime_workflow_execution_latency",
                "The total time taken to run a workflow to completion.",
                &execution,
                &LATENCY_BUCKETS_MS,
            )?,
            activity_count: counter(
                registry,
                "dapr_runtime_workflow_activity_execution_count",
                "The number of successful/failed activity executions.",
                &activity,
            )?,
            activity_latency: histogram(
                registry,
                "dapr_runtime_workflow_activity_execution_latency",
                "The total time taken to run an activity to completion.",
                &activity,
                &LATENCY_BUCKETS_MS,
            )?,
        })
    }

    /// An operation on instances (`create_workflow`, `get_workflow`,
    /// `add_event`, `purge_workflow`) ended.
    pub fn operation(&self, operation: &str, outcome: WorkflowOutcome, elapsed: Duration) {
        if self.enabled {
            let labels = [self.app_id.as_str(), NAMESPACE, operation, outcome.label()];
            self.operation_count.with_label_values(&labels).inc();
            self.operation_latency
                .with_label_values(&labels)
                .observe(millis(elapsed));
        }
    }

    /// A workflow run ended, `elapsed` after it was created.
    pub fn execution(&self, workflow: &str, outcome: WorkflowOutcome, elapsed: Duration) {
        if self.enabled {
            let labels = [self.app_id.as_str(), NAMESPACE, outcome.label(), workflow];
            self.execution_count.with_label_values(&labels).inc();
            self.execution_latency
                .with_label_values(&labels)
                .observe(millis(elapsed));
        }
    }

    /// An activity's result came back, `elapsed` after it was sent.
    pub fn activity(&self, activity: &str, outcome: WorkflowOutcome, elapsed: Duration) {
        if self.enabled {
            let labels = [activity, self.app_id.as_str(), NAMESPACE, outcome.label()];
            self.activity_count.with_label_values(&labels).inc();
            self.activity_latency
                .with_label_values(&labels)
                .observe(millis(elapsed));
        }
    }
}

/// daprd's actor metrics (`pkg/diagnostics/service_monitoring.go`), by
/// `app_id` and `actor_type`.
pub struct ActorMetrics {
    enabled: bool,
    app_id: String,
    deactivated: IntCounterVec,
    deactivated_failed: IntCounterVec,
    rebalanced: IntCounterVec,
    pending_calls: IntGaugeVec,
    reminders_fired: IntCounterVec,
    timers_fired: IntCounterVec,
}

/// A call counted in `dapr_runtime_actor_pending_actor_calls` until it is
/// dropped (it has the actor's turn, or gave up).
pub struct PendingCall(Option<service_kit::metrics::IntGauge>);

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

impl ActorMetrics {
    fn new(registry: &Registry, app_id: &str, enabled: bool) -> Result<ActorMetrics, MetricsError> {
        let by_type = ["app_id", "actor_type"];
        let by_success = ["app_id", "actor_type", "success"];
        Ok(ActorMetrics {
            enabled,
            app_id: app_id.to_string(),
            deactivated: counter(
                registry,
                "dapr_runtime_actor_deactivated_total",
                "The number of the successful actor deactivation.",
                &by_type,
            )?,
            deactivated_failed: counter(
                registry,
                "dapr_runtime_actor_deactivated_failed_total",
                "The number of the failed actor deactivation.",
                &["app_id", "actor_type", "reason"],
            )?,
            rebalanced: counter(
                registry,
                "dapr_runtime_actor_rebalanced_total",
                "The number of the actor rebalance requests.",
                &by_type,
            )?,
            pending_calls: gauge(
                registry,
                "dapr_runtime_actor_pending_actor_calls",
                "The number of pending actor calls waiting to acquire the per-actor lock.",
                &by_type,
            )?,
            reminders_fired: counter(
                registry,
                "dapr_runtime_actor_reminders_fired_total",
                "The number of actor reminders fired requests.",
                &by_success,
            )?,
            timers_fired: counter(
                registry,
                "dapr_runtime_actor_timers_fired_total",
                "The number of actor timers fired requests.",
                &by_success,
            )?,
        })
    }

    /// The app was told an actor is deactivated: `Ok`, or why it failed
    /// (daprd's `reason`: `invoke`, `status_code_500`, ...).
    pub fn deactivated(&self, actor_type: &str, outcome: Result<(), String>) {
        if !self.enabled {
            return;
        }
        match outcome {
            Ok(()) => self
                .deactivated
                .with_label_values(&[self.app_id.as_str(), actor_type])
                .inc(),
            Err(reason) => self
                .deactivated_failed
                .with_label_values(&[self.app_id.as_str(), actor_type, reason.as_str()])
                .inc(),
        }
    }

    /// An actor left because placement moved it.
    pub fn rebalanced(&self, actor_type: &str) {
        if self.enabled {
            self.rebalanced
                .with_label_values(&[self.app_id.as_str(), actor_type])
                .inc();
        }
    }

    /// A call starts waiting for an actor's turn.
    pub fn pending_call(&self, actor_type: &str) -> PendingCall {
        if !self.enabled {
            return PendingCall(None);
        }
        let gauge = self
            .pending_calls
            .with_label_values(&[self.app_id.as_str(), actor_type]);
        gauge.inc();
        PendingCall(Some(gauge))
    }

    /// A reminder fired (`success`: the actor took it).
    pub fn reminder_fired(&self, actor_type: &str, success: bool) {
        if self.enabled {
            self.reminders_fired
                .with_label_values(&[self.app_id.as_str(), actor_type, success_label(success)])
                .inc();
        }
    }

    /// A timer fired (`success`: the actor took it).
    pub fn timer_fired(&self, actor_type: &str, success: bool) {
        if self.enabled {
            self.timers_fired
                .with_label_values(&[self.app_id.as_str(), actor_type, success_label(success)])
                .inc();
        }
    }
}

/// A component metric pair as daprd has them: `<name>_count` and
/// `<name>_latencies` (ms), with the same labels; it records nothing
/// unless the metrics are enabled.
struct Timed {
    count: IntCounterVec,
    latencies: HistogramVec,
    enabled: bool,
}

impl Timed {
    /// `dapr_component_<what>_count` and `_latencies`.
    fn new(
        registry: &Registry,
        what: &str,
        count_help: &str,
        latency_help: &str,
        labels: &[&str],
        enabled: bool,
    ) -> Result<Timed, MetricsError> {
        Ok(Timed {
            enabled,
            count: counter(
                registry,
                &format!("dapr_component_{what}_count"),
                count_help,
                labels,
            )?,
            latencies: histogram(
                registry,
                &format!("dapr_component_{what}_latencies"),
                latency_help,
                labels,
                &LATENCY_BUCKETS_MS,
            )?,
        })
    }

    fn record(&self, labels: &[&str], elapsed: Duration) {
        self.record_times(labels, elapsed, 1);
    }

    /// `times` operations with the same labels, each of which took
    /// `elapsed` (the entries of one bulk call): the labels are looked up
    /// once.
    fn record_times(&self, labels: &[&str], elapsed: Duration, times: u64) {
        if !self.enabled || times == 0 {
            return;
        }
        self.count.with_label_values(labels).inc_by(times);
        let latencies = self.latencies.with_label_values(labels);
        for _ in 0..times {
            latencies.observe(millis(elapsed));
        }
    }
}

/// The `namespace` label: daprd's is empty outside Kubernetes.
const NAMESPACE: &str = "";

fn success_label(success: bool) -> &'static str {
    if success { "true" } else { "false" }
}

/// Milliseconds, as daprd's latencies are.
fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

impl Metrics {
    /// The metric families of the sidecar of `app_id`, all at zero; they
    /// record nothing unless `enabled`.
    pub fn new(app_id: &str, enabled: bool) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let http = ["app_id", "method", "path", "status"];
        let component = ["app_id", "component", "namespace", "operation", "success"];
        let egress = ["app_id", "component", "namespace", "success", "topic"];
        let input = ["app_id", "component", "namespace", "success"];
        let ingress = [
            "app_id",
            "component",
            "namespace",
            "process_status",
            "status",
            "topic",
        ];
        Ok(Metrics {
            http_server_request_count: counter(
                r,
                "dapr_http_server_request_count",
                "Number of HTTP requests started in server.",
                &http[..3],
            )?,
            http_server_response_count: counter(
                r,
                "dapr_http_server_response_count",
                "The number of HTTP responses",
                &http,
            )?,
            http_server_latency: histogram(
                r,
                "dapr_http_server_latency",
                "HTTP request end to end latency in server (ms).",
                &http,
                &LATENCY_BUCKETS_MS,
            )?,
            http_server_request_bytes: histogram(
                r,
                "dapr_http_server_request_bytes",
                "HTTP request body size if set as ContentLength (uncompressed) in server.",
                &["app_id"],
                &SIZE_BUCKETS,
            )?,
            http_server_response_bytes: histogram(
                r,
                "dapr_http_server_response_bytes",
                "HTTP response body size (uncompressed) in server.",
                &["app_id"],
                &SIZE_BUCKETS,
            )?,
            http_client_roundtrip_latency: histogram(
                r,
                "dapr_http_client_roundtrip_latency",
                "Time between first byte of request headers sent to last byte of response received, or terminal error (ms).",
                &http,
                &LATENCY_BUCKETS_MS,
            )?,
            http_client_completed_count: counter(
                r,
                "dapr_http_client_completed_count",
                "Count of completed requests",
                &http,
            )?,
            grpc_server_completed_rpcs: counter(
                r,
                "dapr_grpc_io_server_completed_rpcs",
                "Count of RPCs by method and status.",
                &["app_id", "grpc_server_method", "grpc_server_status"],
            )?,
            grpc_server_latency: histogram(
                r,
                "dapr_grpc_io_server_server_latency",
                "Distribution of server latency in milliseconds, by method.",
                &["app_id", "grpc_server_method"],
                &LATENCY_BUCKETS_MS,
            )?,
            component_loaded: counter(
                r,
                "dapr_runtime_component_loaded",
                "The number of successfully loaded components.",
                &["app_id"],
            )?,
            state: Timed::new(
                r,
                "state",
                "The number of operations performed on the state component.",
                "The latency of the response from the state component (ms).",
                &component,
                enabled,
            )?,
            pubsub_egress: Timed::new(
                r,
                "pubsub_egress",
                "The number of outgoing messages published to the pub/sub component.",
                "The latency of the response from the pub/sub component (ms).",
                &egress,
                enabled,
            )?,
            pubsub_ingress: Timed::new(
                r,
                "pubsub_ingress",
                "The number of incoming messages arriving from the pub/sub component.",
                "The consuming app event processing latency (ms).",
                &ingress,
                enabled,
            )?,
            output_binding: Timed::new(
                r,
                "output_binding",
                "The number of operations invoked on the output binding component.",
                "The latency of the response from the output binding component (ms).",
                &component,
                enabled,
            )?,
            input_binding: Timed::new(
                r,
                "input_binding",
                "The number of events read from the input binding component.",
                "The latency of the event processing (ms).",
                &input,
                enabled,
            )?,
            secret: Timed::new(
                r,
                "secret",
                "The number of operations performed on the secret component.",
                "The latency of the response from the secret component (ms).",
                &component,
                enabled,
            )?,
            configuration: Timed::new(
                r,
                "configuration",
                "The number of operations performed on the configuration component.",
                "The latency of the response from the configuration component (ms).",
                &component,
                enabled,
            )?,
            actors: ActorMetrics::new(r, app_id, enabled)?,
            workflows: WorkflowMetrics::new(r, app_id, enabled)?,
            app_id: app_id.to_string(),
            enabled,
            registry,
        })
    }

    /// Every metric, in Prometheus's text format.
    pub fn render(&self) -> String {
        service_kit::metrics::render(&[&self.registry])
    }

    /// One component loaded at start.
    pub fn component_loaded(&self) {
        if !self.enabled {
            return;
        }
        self.component_loaded
            .with_label_values(&[self.app_id.as_str()])
            .inc();
    }

    /// One call from the sidecar to its app over HTTP: `path` is the
    /// method invoked, `status` the app's answer (`0` when it gave none).
    pub fn record_app_call(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let status = status.to_string();
        let labels = [self.app_id.as_str(), method, path, status.as_str()];
        self.http_client_completed_count
            .with_label_values(&labels)
            .inc();
        self.http_client_roundtrip_latency
            .with_label_values(&labels)
            .observe(millis(elapsed));
    }

    /// One `operation` of `component` in `timed` (the labels `app_id`,
    /// `component`, `namespace`, `operation`, `success`).
    fn record_operation(
        &self,
        timed: &Timed,
        component: &str,
        operation: &str,
        success: bool,
        elapsed: Duration,
    ) {
        let labels = [
            self.app_id.as_str(),
            component,
            NAMESPACE,
            operation,
            success_label(success),
        ];
        timed.record(&labels, elapsed);
    }

    /// One operation on the state store `component`, as daprd names the
    /// building block's calls (`get`, `bulk_get`, `set`, `delete`,
    /// `bulk_delete`, `transaction`), and whether it succeeded.
    pub fn record_state(&self, component: &str, operation: &str, success: bool, elapsed: Duration) {
        self.record_operation(&self.state, component, operation, success, elapsed);
    }

    /// One event published to the broker of `component`.
    pub fn record_pubsub_egress(
        &self,
        component: &str,
        topic: &str,
        success: bool,
        elapsed: Duration,
        events: u64,
    ) {
        let labels = [
            self.app_id.as_str(),
            component,
            NAMESPACE,
            success_label(success),
            topic,
        ];
        self.pubsub_egress.record_times(&labels, elapsed, events);
    }

    /// One delivery of an event to the app: daprd's `process_status`
    /// (`success`, `retry`, `drop`), also its `status` label.
    pub fn record_pubsub_ingress(
        &self,
        component: &str,
        topic: &str,
        process_status: &str,
        elapsed: Duration,
        events: u64,
    ) {
        let labels = [
            self.app_id.as_str(),
            component,
            NAMESPACE,
            process_status,
            process_status,
            topic,
        ];
        self.pubsub_ingress.record_times(&labels, elapsed, events);
    }

    /// One read of the secret store `component` (`get` or `bulk_get`).
    pub fn record_secret(
        &self,
        component: &str,
        operation: &str,
        success: bool,
        elapsed: Duration,
    ) {
        self.record_operation(&self.secret, component, operation, success, elapsed);
    }

    /// One operation on the configuration store `component`, as daprd
    /// names them (`get`, `subscribe`, `unsubscribe`).
    pub fn record_configuration(
        &self,
        component: &str,
        operation: &str,
        success: bool,
        elapsed: Duration,
    ) {
        self.record_operation(&self.configuration, component, operation, success, elapsed);
    }

    /// One event of the input binding `component` sent to the app, and
    /// whether the app took it.
    pub fn record_input_binding(&self, component: &str, success: bool, elapsed: Duration) {
        let labels = [
            self.app_id.as_str(),
            component,
            NAMESPACE,
            success_label(success),
        ];
        self.input_binding.record(&labels, elapsed);
    }

    /// One call of the output binding `component`.
    pub fn record_output_binding(
        &self,
        component: &str,
        operation: &str,
        success: bool,
        elapsed: Duration,
    ) {
        self.record_operation(&self.output_binding, component, operation, success, elapsed);
    }
}

/// HTTP API middleware: counts and times each request by route.
pub async fn record_http(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
    next: Next,
) -> Response {
    if !sidecar.metrics.enabled {
        return next.run(request).await;
    }
    let metrics = &sidecar.metrics;
    let method = request.method().as_str().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(service_kit::metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let app_id = metrics.app_id.as_str();
    metrics
        .http_server_request_count
        .with_label_values(&[app_id, &method, &path])
        .inc();
    metrics
        .http_server_request_bytes
        .with_label_values(&[app_id])
        .observe(content_length(request.headers()).unwrap_or(0) as f64);
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [app_id, method.as_str(), path.as_str(), status.as_str()];
    metrics
        .http_server_response_count
        .with_label_values(&labels)
        .inc();
    metrics
        .http_server_latency
        .with_label_values(&labels)
        .observe(millis(started.elapsed()));
    let response_bytes = content_length(response.headers())
        .or_else(|| http_body::Body::size_hint(response.body()).exact())
        .unwrap_or(0);
    metrics
        .http_server_response_bytes
        .with_label_values(&[app_id])
        .observe(response_bytes as f64);
    response
}

/// gRPC API middleware: counts each call by method and status, and times
/// it to the response's head (a unary call's answer, or its error).
pub async fn record_grpc(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
    next: Next,
) -> Response {
    if !sidecar.metrics.enabled {
        return next.run(request).await;
    }
    let method = request.uri().path().trim_start_matches('/').to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    // An error is a trailers-only answer, its status in the head; a
    // success's status comes in the trailers, always OK for a unary call.
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from);
    let metrics = &sidecar.metrics;
    let app_id = metrics.app_id.as_str();
    metrics
        .grpc_server_completed_rpcs
        .with_label_values(&[app_id, method.as_str(), grpc_status_name(code)])
        .inc();
    metrics
        .grpc_server_latency
        .with_label_values(&[app_id, method.as_str()])
        .observe(millis(started.elapsed()));
    response
}

/// A status as OpenCensus's gRPC plugin names it.
fn grpc_status_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`: the sidecar's
/// own, and those of `others` (the `bindings.wasm` function host's).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    others: Vec<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let render = move || {
        let mut all = vec![&metrics.registry];
        all.extend(&others);
        service_kit::metrics::render(&all)
    };
    service_kit::metrics::serve(listener, render, shutdown).await
}
