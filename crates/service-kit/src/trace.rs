//! Distributed tracing: the W3C trace context carried through every hop,
//! and the spans each process records, exported with OpenTelemetry as Dapr
//! configures it.
//!
//! - [`TracingConfig`] says whether and where spans go. The sidecar reads
//!   it from a Dapr `Configuration` file (`--config`, its `spec.tracing`:
//!   `samplingRate`, `otel.endpointAddress`/`isSecure`/`protocol`,
//!   `zipkin.endpointAddress`); the apps read it from OpenTelemetry's own
//!   environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT` and friends),
//!   which `dapr-wasm up` derives from that same file.
//! - [`Tracer`] is a process's span recorder: [`Tracer::off`] records
//!   nothing but still propagates the trace (every outgoing call carries a
//!   child `traceparent`, as before tracing existed).
//! - [`trace_request`] is the middleware that gives each request a server
//!   span (its parent from the request's `traceparent`), and puts the
//!   request's [`TraceContext`] in its extensions for the handlers: they
//!   [`TraceContext::inject`] it into the calls they make, and record child
//!   spans under it.
//!
//! Spans are batched and exported from OpenTelemetry's own thread, so a
//! slow or absent collector costs a request nothing; the batching delay is
//! OpenTelemetry's `OTEL_BSP_SCHEDULE_DELAY` (5 s by default).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::Context;
pub use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Span as _, SpanContext, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};
use serde::Deserialize;

use crate::metrics::{RouteLabel, UNMATCHED_ROUTE};

mod zipkin;

/// Dapr's sampling rate when a `Configuration` names none (daprd's
/// default: one trace in ten thousand).
pub const DAPR_DEFAULT_SAMPLING_RATE: f64 = 0.0001;

/// A tracing configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TracingConfigError {
    /// The configuration file cannot be read.
    #[error("cannot read the Dapr configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a Dapr `Configuration` resource.
    #[error("{path} is not a Dapr Configuration: {reason}")]
    NotConfiguration {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is out of range or unknown.
    #[error("{0}")]
    Invalid(String),
    /// The exporter cannot be built from it.
    #[error("cannot set up the span exporter: {0}")]
    Exporter(String),
}

/// How OTLP spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (`POST {endpoint}/v1/traces`).
    HttpProtobuf,
    /// gRPC (`TraceService/Export`).
    Grpc,
}

/// Where recorded spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanExport {
    /// An OpenTelemetry collector. `endpoint` is the full URL spans are
    /// sent to: for HTTP with its `/v1/traces` path.
    Otlp {
        /// The URL.
        endpoint: String,
        /// The transport.
        protocol: OtlpProtocol,
    },
    /// A Zipkin server (`endpoint`: its `/api/v2/spans` URL).
    Zipkin {
        /// The URL.
        endpoint: String,
    },
}

/// Whether spans are recorded, how many, and where they go.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TracingConfig {
    /// The share of new traces recorded, 0 to 1. A trace that arrives
    /// keeps its caller's decision (the `traceparent` sampled flag).
    pub sampling_rate: f64,
    /// The exporter; none records nothing.
    pub export: Option<SpanExport>,
}

/// The parts of a Dapr `Configuration` resource that tracing reads.
#[derive(Deserialize)]
struct ConfigurationResource {
    kind: Option<String>,
    #[serde(default)]
    spec: ConfigurationSpec,
}

#[derive(Deserialize, Default)]
struct ConfigurationSpec {
    tracing: Option<TracingSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TracingSpec {
    sampling_rate: Option<serde_yaml::Value>,
    otel: Option<OtelSpec>,
    zipkin: Option<ZipkinSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OtelSpec {
    endpoint_address: Option<String>,
    #[serde(default)]
    is_secure: bool,
    protocol: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpec {
    endpoint_address: Option<String>,
}

impl TracingConfig {
    /// Records nothing.
    pub fn off() -> TracingConfig {
        TracingConfig::default()
    }

    /// Whether any span can be recorded.
    pub fn records(&self) -> bool {
        self.export.is_some() && self.sampling_rate > 0.0
    }

    /// `spec.tracing` of the Dapr `Configuration` in `path`.
    pub fn from_dapr_configuration_file(path: &Path) -> Result<TracingConfig, TracingConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TracingConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        TracingConfig::from_dapr_configuration(&text).map_err(|err| match err {
            TracingConfigError::NotConfiguration { reason, .. } => {
                TracingConfigError::NotConfiguration {
                    path: shown,
                    reason,
                }
            }
            other => other,
        })
    }

    /// `spec.tracing` of a Dapr `Configuration` resource, as daprd reads
    /// it: `samplingRate` a string from "0" (off) to "1" (every trace),
    /// [`DAPR_DEFAULT_SAMPLING_RATE`] when missing; `otel` (an
    /// `endpointAddress` of `host:port` or a URL, `isSecure`, `protocol`
    /// `http` or `grpc`) or `zipkin` (`endpointAddress`, a URL).
    pub fn from_dapr_configuration(yaml: &str) -> Result<TracingConfig, TracingConfigError> {
        let not_configuration = |reason: String| TracingConfigError::NotConfiguration {
            path: "the configuration".into(),
            reason,
        };
        let resource: ConfigurationResource =
            serde_yaml::from_str(yaml).map_err(|e| not_configuration(e.to_string()))?;
        match resource.kind.as_deref() {
            Some("Configuration") => {}
            other => {
                return Err(not_configuration(format!(
                    "its kind is {}, not Configuration",
                    other.unwrap_or("missing")
                )));
            }
        }
        let Some(tracing) = resource.spec.tracing else {
            return Ok(TracingConfig::off());
        };
        let sampling_rate = match tracing.sampling_rate {
            None => DAPR_DEFAULT_SAMPLING_RATE,
            Some(serde_yaml::Value::String(s)) if s.trim().is_empty() => DAPR_DEFAULT_SAMPLING_RATE,
            Some(serde_yaml::Value::String(s)) => parse_rate(&s)?,
            Some(serde_yaml::Value::Number(n)) => parse_rate(&n.to_string())?,
            Some(other) => {
                return Err(TracingConfigError::Invalid(format!(
                    "spec.tracing.samplingRate must be a number from 0 to 1, not {other:?}"
                )));
            }
        };
        let otel = tracing
            .otel
            .filter(|o| o.endpoint_address.as_deref().is_some_and(|a| !a.is_empty()));
        let zipkin = tracing
            .zipkin
            .and_then(|z| z.endpoint_address)
            .filter(|a| !a.is_empty());
        let export = match (otel, zipkin) {
            (Some(otel), _) => {
                let protocol = match otel.protocol.as_deref().unwrap_or("grpc") {
                    "http" | "http/protobuf" => OtlpProtocol::HttpProtobuf,
                    "grpc" => OtlpProtocol::Grpc,
                    other => {
                        return Err(TracingConfigError::Invalid(format!(
                            "spec.tracing.otel.protocol must be http or grpc, not {other}"
                        )));
                    }
                };
                let address = otel.endpoint_address.unwrap_or_default();
                Some(SpanExport::Otlp {
                    endpoint: otlp_endpoint(&address, otel.is_secure, protocol),
                    protocol,
                })
            }
            (None, Some(endpoint)) => Some(SpanExport::Zipkin { endpoint }),
            (None, None) => None,
        };
        Ok(TracingConfig {
            sampling_rate,
            export,
        })
    }

    /// OpenTelemetry's environment variables, as its SDKs read them:
    /// `OTEL_TRACES_EXPORTER` (`otlp`, the default, `zipkin` or `none`),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (a full URL) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL), `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (`http/protobuf`, the default, or `grpc`), `OTEL_EXPORTER_ZIPKIN_ENDPOINT`,
    /// and `OTEL_TRACES_SAMPLER_ARG` (the ratio of new traces, 1 by default).
    /// Without an endpoint, tracing is off.
    pub fn from_env() -> Result<TracingConfig, TracingConfigError> {
        TracingConfig::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<TracingConfig, TracingConfigError> {
        let sampling_rate = match var("OTEL_TRACES_SAMPLER_ARG") {
            Some(rate) => parse_rate(&rate)?,
            None => 1.0,
        };
        let export = match var("OTEL_TRACES_EXPORTER").as_deref().unwrap_or("otlp") {
            "none" => None,
            "zipkin" => {
                var("OTEL_EXPORTER_ZIPKIN_ENDPOINT").map(|endpoint| SpanExport::Zipkin { endpoint })
            }
            "otlp" => {
                let protocol = match var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
                    None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
                    Some("grpc") => OtlpProtocol::Grpc,
                    Some(other) => {
                        return Err(TracingConfigError::Invalid(format!(
                            "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not {other}"
                        )));
                    }
                };
                var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .or_else(|| {
                        var("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
                            OtlpProtocol::HttpProtobuf => {
                                format!("{}/v1/traces", base.trim_end_matches('/'))
                            }
                            OtlpProtocol::Grpc => base,
                        })
                    })
                    .map(|endpoint| SpanExport::Otlp { endpoint, protocol })
            }
            other => {
                return Err(TracingConfigError::Invalid(format!(
                    "OTEL_TRACES_EXPORTER must be otlp, zipkin or none, not {other}"
                )));
            }
        };
        Ok(TracingConfig {
            sampling_rate,
            export,
        })
    }

    /// The environment variables that give an app this configuration
    /// through [`TracingConfig::from_env`] (empty when it records nothing).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let Some(export) = self.export.as_ref().filter(|_| self.records()) else {
            return Vec::new();
        };
        let mut env = vec![("OTEL_TRACES_SAMPLER_ARG", self.sampling_rate.to_string())];
        match export {
            SpanExport::Otlp { endpoint, protocol } => {
                env.push(("OTEL_TRACES_EXPORTER", "otlp".into()));
                env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.clone()));
                let protocol = match protocol {
                    OtlpProtocol::HttpProtobuf => "http/protobuf",
                    OtlpProtocol::Grpc => "grpc",
                };
                env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()));
            }
            SpanExport::Zipkin { endpoint } => {
                env.push(("OTEL_TRACES_EXPORTER", "zipkin".into()));
                env.push(("OTEL_EXPORTER_ZIPKIN_ENDPOINT", endpoint.clone()));
            }
        }
        env
    }
}

/// A sampling rate: a number from 0 to 1.
fn parse_rate(text: &str) -> Result<f64, TracingConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| (0.0..=1.0).contains(rate))
        .ok_or_else(|| {
            TracingConfigError::Invalid(format!(
                "a sampling rate is a number from 0 to 1, not {text:?}"
            ))
        })
}

/// The URL for Dapr's `otel.endpointAddress`: `host:port` gets the scheme
/// `isSecure` says, and for HTTP the `/v1/traces` path; a URL keeps its
/// own scheme (and, for HTTP, a path it names).
fn otlp_endpoint(address: &str, secure: bool, protocol: OtlpProtocol) -> String {
    let address = address.trim().trim_end_matches('/');
    let with_scheme = if address.contains("://") {
        address.to_string()
    } else {
        let scheme = if secure { "https" } else { "http" };
        format!("{scheme}://{address}")
    };
    let has_path = with_scheme
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    match protocol {
        OtlpProtocol::HttpProtobuf if !has_path => format!("{with_scheme}/v1/traces"),
        _ => with_scheme,
    }
}

/// A process's span recorder. Cheap to clone. [`Tracer::off`] records
/// nothing (and costs a few random bytes per request, for propagation).
#[derive(Clone, Default)]
pub struct Tracer {
    recording: Option<Arc<Recording>>,
}

struct Recording {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Drop for Recording {
    /// Sends the spans still batched.
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::debug!(error = %err, "the span exporter did not shut down cleanly");
        }
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("recording", &self.recording.is_some())
            .finish()
    }
}

impl Tracer {
    /// Records nothing; still propagates traces.
    pub fn off() -> Tracer {
        Tracer::default()
    }

    /// A tracer recording spans of `service_name` as `config` says, or
    /// [`Tracer::off`] when it records nothing. Called within a Tokio
    /// runtime (the gRPC exporter's connection lives on it).
    pub fn start(config: &TracingConfig, service_name: &str) -> Result<Tracer, TracingConfigError> {
        let Some(export) = config.export.as_ref().filter(|_| config.records()) else {
            return Ok(Tracer::off());
        };
        let exporter_error =
            |e: &dyn std::fmt::Display| TracingConfigError::Exporter(e.to_string());
        let builder = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_rate,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            );
        let builder = match export {
            SpanExport::Otlp { endpoint, protocol } => {
                use opentelemetry_otlp::WithExportConfig;
                let exporter = match protocol {
                    OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(endpoint.clone())
                        .build(),
                    OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint.clone())
                        .build(),
                }
                .map_err(|e| exporter_error(&e))?;
                builder.with_batch_exporter(exporter)
            }
            SpanExport::Zipkin { endpoint } => {
                builder.with_batch_exporter(zipkin::ZipkinExporter::new(endpoint.clone()))
            }
        };
        let provider = builder.build();
        let tracer = provider.tracer("dapr-wasm");
        tracing::info!(
            service = service_name,
            export = ?export,
            sampling_rate = config.sampling_rate,
            "recording traces"
        );
        Ok(Tracer {
            recording: Some(Arc::new(Recording { provider, tracer })),
        })
    }

    /// A tracer as OpenTelemetry's environment says ([`TracingConfig::from_env`]),
    /// its spans from `OTEL_SERVICE_NAME` or else `default_service_name`.
    pub fn from_env(default_service_name: &str) -> Result<Tracer, TracingConfigError> {
        let name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| default_service_name.to_string());
        Tracer::start(&TracingConfig::from_env()?, &name)
    }

    /// Whether this tracer records spans.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Starts the span of a request this process serves: a child of the
    /// `traceparent` in `headers` (or the root of a new trace), of `kind`,
    /// named `name`. End it with [`TraceContext::end`].
    pub fn start_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        headers: &HeaderMap,
        attributes: Vec<KeyValue>,
    ) -> TraceContext {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        TraceContext::starting(self, name.into(), kind, &parent, attributes)
    }

    /// Sends every finished span now (it blocks: call it from a blocking
    /// thread or at exit).
    pub fn flush(&self) {
        if let Some(recording) = &self.recording
            && let Err(err) = recording.provider.force_flush()
        {
            tracing::warn!(error = %err, "cannot export the spans");
        }
    }
}

/// Where a request stands in its trace: the span this process is in (a
/// recorded one, or just a fresh span id when tracing is off), for the
/// calls it makes and the child spans it records.
#[derive(Clone)]
pub struct TraceContext {
    context: Context,
    tracer: Option<SdkTracer>,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl TraceContext {
    /// A child of `parent` named `name`: recorded when `tracer` records,
    /// else only a new span id in the parent's trace (or a new sampled
    /// trace, when there is no valid parent).
    fn starting(
        tracer: &Tracer,
        name: Cow<'static, str>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> TraceContext {
        match &tracer.recording {
            Some(recording) => {
                let span = recording
                    .tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .with_attributes(attributes)
                    .start_with_context(&recording.tracer, parent);
                TraceContext {
                    context: parent.with_span(span),
                    tracer: Some(recording.tracer.clone()),
                }
            }
            None => TraceContext::unrecorded_child(parent),
        }
    }

    /// A new span id under `parent`'s trace, recording nothing.
    fn unrecorded_child(parent: &Context) -> TraceContext {
        let ids = RandomIdGenerator::default();
        let parent_span = parent.span();
        let parent = parent_span.span_context();
        let span_context = if parent.is_valid() {
            SpanContext::new(
                parent.trace_id(),
                ids.new_span_id(),
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            )
        } else {
            SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        TraceContext {
            context: Context::new().with_remote_span_context(span_context),
            tracer: None,
        }
    }

    /// The root of a new trace, recording nothing (for an event published
    /// without a trace).
    pub fn new_root() -> TraceContext {
        TraceContext::unrecorded_child(&Context::new())
    }

    /// The context of a request handled without [`trace_request`]: a
    /// child of the `traceparent` in `headers`, recording nothing.
    pub fn unrecorded_from(headers: &HeaderMap) -> TraceContext {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        TraceContext::unrecorded_child(&parent)
    }

    /// The request's context, put there by [`trace_request`]; without
    /// one, an unrecorded child of its `traceparent`.
    pub fn of(extensions: &axum::http::Extensions, headers: &HeaderMap) -> TraceContext {
        extensions
            .get::<TraceContext>()
            .cloned()
            .unwrap_or_else(|| TraceContext::unrecorded_from(headers))
    }

    /// This span's W3C `traceparent`.
    pub fn traceparent(&self) -> String {
        self.headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// `traceparent` (and `tracestate`) for a call made within this span.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.inject(&mut headers);
        headers
    }

    /// Sets `traceparent` (and `tracestate`, when there is one) in
    /// `headers` for a call made within this span.
    pub fn inject(&self, headers: &mut HeaderMap) {
        // W3C's format, written directly: the propagator's way (a string,
        // then a header name parsed from it) was a measurable share of a
        // traced hop.
        let span = self.context.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        if let Ok(value) = HeaderValue::from_str(&traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        let state = context.trace_state().header();
        if !state.is_empty()
            && let Ok(value) = HeaderValue::from_str(&state)
        {
            headers.insert(TRACESTATE, value);
        }
    }

    /// Whether this span, and so its children, are recorded (it may have
    /// ended already: [`TraceContext::record_child`]).
    pub fn is_recording(&self) -> bool {
        self.tracer.is_some() && self.context.span().span_context().is_sampled()
    }

    /// Starts a child span (end it with [`TraceContext::end`]).
    pub fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> TraceContext {
        match &self.tracer {
            Some(tracer) if self.is_recording() => {
                let span = tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &self.context);
                TraceContext {
                    context: self.context.with_span(span),
                    tracer: Some(tracer.clone()),
                }
            }
            _ => TraceContext::unrecorded_child(&self.context),
        }
    }

    /// Records a finished child span that ran from `start` to `end` (from
    /// timings measured elsewhere); returns it, for children of its own.
    pub fn record_child(
        &self,
        name: impl Into<Cow<'static, str>>,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
    ) -> TraceContext {
        match &self.tracer {
            Some(tracer) if self.is_recording() => {
                let mut span = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Internal)
                    .with_start_time(start)
                    .with_attributes(attributes)
                    .start_with_context(tracer, &self.context);
                span.end_with_timestamp(end);
                TraceContext {
                    context: self.context.with_span(span),
                    tracer: Some(tracer.clone()),
                }
            }
            _ => TraceContext::unrecorded_child(&self.context),
        }
    }

    /// Adds attributes to this span.
    pub fn set_attributes(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.context.span().set_attributes(attributes);
    }

    /// Renames this span.
    pub fn rename(&self, name: impl Into<Cow<'static, str>>) {
        self.context.span().update_name(name.into());
    }

    /// Ends this span, as failed with `error` if there is one.
    pub fn end(&self, error: Option<String>) {
        let span = self.context.span();
        if let Some(message) = error {
            span.set_status(Status::error(message));
        }
        span.end();
    }
}

/// A handler's argument: the request's [`TraceContext`] ([`TraceContext::of`]).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<TraceContext, Self::Rejection> {
        Ok(TraceContext::of(&parts.extensions, &parts.headers))
    }
}

/// Middleware (`axum::middleware::from_fn_with_state` with the process's
/// [`Tracer`], added with `Router::layer` so the route is known): a
/// server span per request, named `METHOD /route/{template}` (a gRPC
/// call: its `/package.Service/Method` path), whose [`TraceContext`] the
/// handlers find in the request's extensions. A 5xx answer marks it failed.
pub async fn trace_request(
    State(tracer): State<Tracer>,
    mut request: Request,
    next: Next,
) -> Response {
    if !tracer.is_recording() {
        // Only propagation: no name or attributes to build.
        let trace = TraceContext::unrecorded_from(request.headers());
        request.extensions_mut().insert(trace);
        return next.run(request).await;
    }
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = request.uri().path().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_string();
    let method = request.method().to_string();
    let (name, attributes) = if grpc {
        (
            path.clone(),
            vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("url.path", path),
            ],
        )
    } else {
        (
            format!("{method} {route}"),
            vec![
                KeyValue::new("http.request.method", method.clone()),
                KeyValue::new("http.route", route),
                KeyValue::new("url.path", path),
            ],
        )
    };
    let trace = tracer.start_span(name, SpanKind::Server, request.headers(), attributes);
    request.extensions_mut().insert(trace.clone());
    let response = next.run(request).await;
    if trace.is_recording() {
        if let Some(RouteLabel(route)) = response.extensions().get::<RouteLabel>() {
            trace.rename(format!("{method} {route}"));
            trace.set_attributes([KeyValue::new("http.route", route.clone())]);
        }
        let status = response.status();
        trace.set_attributes([KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        )]);
        trace.end(status.is_server_error().then(|| status.to_string()));
    }
    response
}

/// Reads trace headers from an HTTP header map.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURATION: &str = "apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: tracing
spec:
  tracing:
    samplingRate: \"1\"
    otel:
      endpointAddress: \"localhost:4318\"
      isSecure: false
      protocol: http
";

    #[test]
    fn a_dapr_configuration_gives_the_rate_and_the_collector_url() {
        let config = TracingConfig::from_dapr_configuration(CONFIGURATION).unwrap();
        assert_eq!(config.sampling_rate, 1.0);
        assert_eq!(
            config.export,
            Some(SpanExport::Otlp {
                endpoint: "http://localhost:4318/v1/traces".into(),
                protocol: OtlpProtocol::HttpProtobuf,
            })
        );
        let grpc = CONFIGURATION
            .replace("protocol: http", "protocol: grpc")
            .replace("isSecure: false", "isSecure: true");
        let config = TracingConfig::from_dapr_configuration(&grpc).unwrap();
        assert_eq!(
            config.export,
            Some(SpanExport::Otlp {
                endpoint: "https://localhost:4318".into(),
                protocol: OtlpProtocol::Grpc,
            })
        );
    }

    #[test]
    fn the_shipped_example_configuration_reads() {
        let shipped = include_str!("../../../deploy/tracing.yaml");
        let config = TracingConfig::from_dapr_configuration(shipped).unwrap();
        assert!(config.records());
        assert_eq!(
            config.export,
            Some(SpanExport::Otlp {
                endpoint: "http://127.0.0.1:4318/v1/traces".into(),
                protocol: OtlpProtocol::HttpProtobuf,
            })
        );
    }

    #[test]
    fn daprds_defaults_and_refusals() {
        let no_rate = CONFIGURATION.replace("    samplingRate: \"1\"\n", "");
        let config = TracingConfig::from_dapr_configuration(&no_rate).unwrap();
        assert_eq!(config.sampling_rate, DAPR_DEFAULT_SAMPLING_RATE);
        let zero = CONFIGURATION.replace("\"1\"", "\"0\"");
        assert!(
            !TracingConfig::from_dapr_configuration(&zero)
                .unwrap()
                .records()
        );
        for bad in ["\"2\"", "\"often\""] {
            let text = CONFIGURATION.replace("\"1\"", bad);
            let err = TracingConfig::from_dapr_configuration(&text).unwrap_err();
            assert!(err.to_string().contains("from 0 to 1"), "{err}");
        }
        let ftp = CONFIGURATION.replace("protocol: http", "protocol: ftp");
        let err = TracingConfig::from_dapr_configuration(&ftp).unwrap_err();
        assert!(err.to_string().contains("http or grpc"), "{err}");
        let component = CONFIGURATION.replace("kind: Configuration", "kind: Component");
        let err = TracingConfig::from_dapr_configuration(&component).unwrap_err();
        assert!(
            err.to_string().contains("Component, not Configuration"),
            "{err}"
        );
    }

    #[test]
    fn the_env_an_app_gets_reads_back_as_the_same_configuration() {
        let config = TracingConfig::from_dapr_configuration(CONFIGURATION).unwrap();
        let env = config.to_env();
        let read = TracingConfig::from_vars(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
        })
        .unwrap();
        assert_eq!(read, config);
        let nothing = TracingConfig::from_vars(|_| None).unwrap();
        assert!(!nothing.records());
        assert!(TracingConfig::off().to_env().is_empty());
    }

    #[test]
    fn an_unrecorded_hop_keeps_the_trace_and_makes_a_new_span() {
        let mut headers = HeaderMap::new();
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.insert("traceparent", HeaderValue::from_static(incoming));
        let trace = Tracer::off().start_span("hop", SpanKind::Server, &headers, vec![]);
        let child = trace.traceparent();
        assert!(
            child.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{child}"
        );
        assert!(child.ends_with("-01"));
        assert_ne!(child, incoming);
        assert!(!trace.is_recording());
        let root = TraceContext::unrecorded_from(&HeaderMap::new()).traceparent();
        assert_eq!(root.len(), 55, "{root}");
        assert!(root.ends_with("-01"));
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-zz-b7ad6b7169203331-01"),
        );
        let fresh = TraceContext::unrecorded_from(&headers).traceparent();
        assert!(!fresh.contains("zz") && fresh.len() == 55, "{fresh}");
    }
}
