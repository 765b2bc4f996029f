//! An OpenTelemetry collector for tests ([`SpanReceiver`]), keeping every
//! span it is sent, decoded, for the test to check. It takes the three
//! ways a Dapr `Configuration` can send them: OTLP over HTTP (`POST
//! /v1/traces`, protobuf) and Zipkin (`POST /api/v2/spans`, JSON) on
//! [`SpanReceiver::address`], and OTLP over gRPC (`TraceService/Export`)
//! on [`SpanReceiver::grpc_address`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use futures_util::FutureExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// One span, as a collector received it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the process that recorded it.
    pub service: String,
    /// Its name.
    pub name: String,
    /// Hex, as in `traceparent`.
    pub trace_id: String,
    /// Hex.
    pub span_id: String,
    /// Hex; empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind` number (1 internal, 2 server, 3 client).
    pub kind: i32,
    /// Nanoseconds since the Unix epoch.
    pub start: u64,
    /// Nanoseconds since the Unix epoch.
    pub end: u64,
    /// Its attributes, as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How long it took.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end.saturating_sub(self.start))
    }

    /// Whether it ran within `outer`'s time.
    pub fn within(&self, outer: &ReceivedSpan) -> bool {
        outer.start <= self.start && self.end <= outer.end
    }
}

/// The collector, serving until dropped.
pub struct SpanReceiver {
    address: SocketAddr,
    grpc_address: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    servers: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for SpanReceiver {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// OTLP's gRPC service, keeping what it is sent.
struct GrpcCollector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for GrpcCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .unwrap()
            .extend(spans_of(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl SpanReceiver {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> SpanReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let router = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest")
                            .into_response();
                    };
                    kept.lock().unwrap().extend(spans_of(request));
                    (
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                        .into_response()
                }
            }),
        );
        let kept = spans.clone();
        let router = router.route(
            "/api/v2/spans",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    match serde_json::from_slice::<Vec<serde_json::Value>>(&body) {
                        Ok(zipkin) => {
                            kept.lock().unwrap().extend(zipkin.iter().map(zipkin_span));
                            StatusCode::ACCEPTED
                        }
                        Err(_) => StatusCode::BAD_REQUEST,
                    }
                }
            }),
        );
        let http = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_address = grpc_listener.local_addr().unwrap();
        let grpc = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(GrpcCollector(spans.clone())))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener))
                .map(|served| served.unwrap()),
        );
        SpanReceiver {
            address,
            grpc_address,
            spans,
            servers: [http, grpc],
        }
    }

    /// Where its OTLP/gRPC service listens.
    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc_address
    }

    /// Its `host:port`, as a Dapr `Configuration`'s `otel.endpointAddress`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of trace `trace_id`, once `complete` says they are all
    /// there; panics, naming `what`, with those that came, after `within`.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        what: &str,
        within: Duration,
        complete: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let of_trace = || -> Vec<ReceivedSpan> {
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect()
        };
        let deadline = std::time::Instant::now() + within;
        loop {
            let spans = of_trace();
            if complete(&spans) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {within:?}; the trace has {:#?}",
                spans
                    .iter()
                    .map(|s| format!(
                        "{} {} ({} <- {})",
                        s.service, s.name, s.span_id, s.parent_span_id
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The spans of one export, with their services' names.
fn spans_of(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(text_of)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text_of(kv)))
                        .collect(),
                });
            }
        }
    }
    spans
}

/// A span of Zipkin's JSON (v2).
fn zipkin_span(span: &serde_json::Value) -> ReceivedSpan {
    let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
    let micros = |key: &str| span[key].as_u64().unwrap_or_default();
    let kind = match span["kind"].as_str() {
        Some("SERVER") => 2,
        Some("CLIENT") => 3,
        _ => 1,
    };
    ReceivedSpan {
        service: span["localEndpoint"]["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        name: text("name"),
        trace_id: text("traceId"),
        span_id: text("id"),
        parent_span_id: text("parentId"),
        kind,
        start: micros("timestamp") * 1000,
        end: (micros("timestamp") + micros("duration")) * 1000,
        attributes: span["tags"]
            .as_object()
            .map(|tags| {
                tags.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// An attribute's value as text.
fn text_of(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
