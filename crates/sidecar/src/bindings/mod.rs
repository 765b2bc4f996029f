//! Output bindings: `POST /v1.0/bindings/{name}` and gRPC `InvokeBinding`,
//! both served by [`Sidecar::invoke_binding`], which calls the binding
//! component of that name.
//!
//! A request names an operation, data and metadata; the answer is data and
//! metadata. Over HTTP the data is the body (200) and each metadata entry
//! a `metadata.<key>` header, as daprd answers (204 when the binding
//! answers nothing, as `close` does); over gRPC both are the response's
//! fields. A failure is 500 `ERR_INVOKE_OUTPUT_BINDING` (`error
//! invoking output binding {name}: {reason}`), except where `bindings.wasm`
//! answers from the function app's table. Each call is counted in daprd's
//! `dapr_component_output_binding_*`.
//!
//! A request for an operation the binding does not have is refused with
//! daprd's message (`binding x does not support operation y. supported
//! operations:...`).
//!
//! Each call carries its trace context in its metadata, as daprd's does
//! ([`traced`]): `traceparent` and `tracestate` of the sidecar's span of the
//! call, and the caller's `baggage`. The HTTP binding sends them on.
//!
//! Each backend is a module implementing [`OutputBinding`], or
//! [`InputBinding`] for those that trigger the app, or both:
//! `bindings.wasm` ([`wasm`], loaded together on one function host), and
//! `bindings.http` ([`http`]), `bindings.localstorage` ([`localstorage`]),
//! `bindings.postgresql` ([`postgres`]) and `bindings.mysql` ([`mysql`]) on
//! one SQL frame ([`sql`]),
//! `bindings.redis` ([`redis`]),
//! `bindings.rabbitmq` ([`rabbitmq`], both directions), `bindings.mqtt3`
//! ([`mqtt`], both directions) and `bindings.cron`
//! ([`crate::input_bindings::cron`], input), opened by [`open`]. Input bindings
//! are in [`crate::input_bindings`].

pub mod http;
pub mod localstorage;
pub mod mqtt;
pub mod mysql;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
pub mod sql;
pub mod wasm;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use service_kit::trace::TraceContext;

pub use wasm::{WASM_BINDING, WasmBindings, fetch_remote};

use crate::Sidecar;
use crate::components::Component;
use crate::error::DaprError;
use crate::input_bindings::InputBinding;

/// One call of an output binding, from either API.
pub struct BindingRequest {
    /// The operation (`execute`, `exec`, `query`, ...).
    pub operation: String,
    /// The data (a wasm function's stdin).
    pub data: Bytes,
    /// The request's metadata (`args`, `sql`, ...).
    pub metadata: HashMap<String, String>,
}

/// What an output binding answered.
#[derive(Debug, Default)]
pub struct BindingResponse {
    /// The data (the body over HTTP).
    pub data: Bytes,
    /// Metadata about the call (`metadata.<key>` headers over HTTP).
    pub metadata: HashMap<String, String>,
}

/// One output binding backend.
#[async_trait::async_trait]
pub trait OutputBinding: Send + Sync {
    /// The operations it has; a request for another is refused before it
    /// gets here, with daprd's message.
    fn operations(&self) -> &'static [&'static str];

    /// Runs `request`: its answer, or none (204 over HTTP, as daprd
    /// answers a binding that returns nothing).
    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError>;
}

/// The binding types opened one by one ([`open`]); `bindings.wasm`
/// components are loaded together ([`WasmBindings::load`]).
pub const BINDING_TYPES: &[&str] = &[
    "bindings.cron",
    "bindings.http",
    "bindings.localstorage",
    "bindings.mqtt3",
    "bindings.mysql",
    "bindings.postgresql",
    "bindings.rabbitmq",
    "bindings.redis",
];

/// A binding component, opened: what it serves in each direction.
pub struct OpenedBinding {
    /// Called by the app (`POST /v1.0/bindings/{name}`).
    pub output: Option<Arc<dyn OutputBinding>>,
    /// Triggering the app.
    pub input: Option<Arc<dyn InputBinding>>,
}

/// The component's `direction` metadata (`input`, `output` or both, comma
/// separated), split and lowercased, the key's case aside, as daprd reads
/// it; `None` when it has none.
pub fn directions(component: &Component) -> Option<Vec<String>> {
    component
        .properties()
        .into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("direction"))
        .map(|(_, value)| {
            value
                .split(',')
                .map(|d| d.trim().to_ascii_lowercase())
                .collect()
        })
}

/// A component's metadata item `key`, its name in any case (as daprd
/// matches them), trimmed; `None` when missing or empty.
pub(crate) fn property<'a>(properties: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A binding that serves both directions.
fn both_ways<B: OutputBinding + InputBinding + 'static>(binding: B) -> OpenedBinding {
    let both = Arc::new(binding);
    OpenedBinding {
        output: Some(both.clone()),
        input: Some(both),
    }
}

/// Opens the binding `component` (of a type in [`BINDING_TYPES`]) in the
/// directions it has, less those its `direction` metadata leaves out.
pub async fn open(component: &Component) -> Result<OpenedBinding, String> {
    let properties = component.properties();
    let name = component.metadata.name.clone();
    let mut opened = match component.spec.component_type.as_str() {
        "bindings.cron" => OpenedBinding {
            output: None,
            input: Some(Arc::new(crate::input_bindings::cron::CronBinding::open(
                &properties,
            )?)),
        },
        "bindings.http" => OpenedBinding {
            output: Some(Arc::new(http::HttpBinding::open(name, &properties).await?)),
            input: None,
        },
        "bindings.localstorage" => OpenedBinding {
            output: Some(Arc::new(
                localstorage::LocalStorageBinding::open(name, &properties).await?,
            )),
            input: None,
        },
        "bindings.mqtt3" => both_ways(mqtt::MqttBinding::open(name, &properties).await?),
        "bindings.mysql" => OpenedBinding {
            output: Some(Arc::new(mysql::open(name, &properties).await?)),
            input: None,
        },
        "bindings.postgresql" => OpenedBinding {
            output: Some(Arc::new(postgres::open(name, &properties).await?)),
            input: None,
        },
        "bindings.rabbitmq" => both_ways(rabbitmq::RabbitBinding::open(name, &properties).await?),
        "bindings.redis" => OpenedBinding {
            output: Some(Arc::new(
                redis::RedisBinding::open(name, &properties).await?,
            )),
            input: None,
        },
        other => {
            return Err(format!(
                "unsupported type `{other}`; supported: {}, {WASM_BINDING}",
                BINDING_TYPES.join(", ")
            ));
        }
    };
    if let Some(directions) = directions(component) {
        let named = |direction: &str| directions.iter().any(|d| d == direction);
        if !named("output") {
            opened.output = None;
        }
        if !named("input") {
            opened.input = None;
        }
    }
    Ok(opened)
}

/// daprd's error for a binding that fails: `error invoking output binding
/// {name}: {reason}`.
pub(crate) fn invoke_failed(name: &str, reason: impl std::fmt::Display) -> DaprError {
    invoke_failed_answering(name, reason, HashMap::new())
}

/// [`invoke_failed`], with what the binding answered all the same (the
/// HTTP binding's status and headers), which goes back with the error.
pub(crate) fn invoke_failed_answering(
    name: &str,
    reason: impl std::fmt::Display,
    metadata: HashMap<String, String>,
) -> DaprError {
    DaprError::BindingInvoke {
        name: name.to_string(),
        reason: reason.to_string(),
        metadata,
    }
}

/// Puts the call's trace context in a binding request's `metadata`, as
/// daprd puts it there for every output binding: `traceparent` and
/// `tracestate` of `trace`, the sidecar's span of the call (in place of the
/// request's own), and the `baggage` of the call's `headers`, joined.
pub(crate) fn traced(
    metadata: &mut HashMap<String, String>,
    trace: &TraceContext,
    headers: &HeaderMap,
) {
    for (name, value) in trace.headers().iter() {
        if let Ok(value) = value.to_str() {
            metadata.insert(name.as_str().to_string(), value.to_string());
        }
    }
    let baggage: Vec<&str> = headers
        .get_all("baggage")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if !baggage.is_empty() {
        metadata.insert("baggage".to_string(), baggage.join(","));
    }
}

/// A binding's answer metadata as HTTP headers, `metadata.<key>`, as daprd
/// writes them (an entry that cannot be a header is left out).
pub(crate) fn metadata_to_headers(metadata: HashMap<String, String>, headers: &mut HeaderMap) {
    for (key, value) in metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("metadata.{key}")),
            HeaderValue::try_from(value),
        ) {
            headers.append(name, value);
        }
    }
}

/// A binding's answer metadata as gRPC response metadata, `metadata.<key>`,
/// as daprd sets it (an entry that cannot be ASCII metadata is left out).
pub(crate) fn metadata_to_grpc(
    metadata: &HashMap<String, String>,
    grpc: &mut tonic::metadata::MetadataMap,
) {
    for (key, value) in metadata {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(format!("metadata.{key}").as_bytes()),
            tonic::metadata::AsciiMetadataValue::try_from(value.as_str()),
        ) {
            grpc.append(name, value);
        }
    }
}

fn not_found(name: &str) -> DaprError {
    invoke_failed(name, format!("couldn't find output binding {name}"))
}

impl Sidecar {
    /// Runs the output binding `name` (the HTTP and gRPC APIs both call this).
    pub async fn invoke_binding(
        &self,
        name: &str,
        request: BindingRequest,
    ) -> Result<Option<BindingResponse>, DaprError> {
        let binding = self
            .output_bindings
            .get(name)
            .ok_or_else(|| not_found(name))?;
        let operation = request.operation.clone();
        let started = std::time::Instant::now();
        let operations = binding.operations();
        let result = if operation.is_empty() {
            Err(invoke_failed(
                name,
                "operation field is missing from request",
            ))
        } else if !operations.contains(&operation.as_str()) {
            Err(invoke_failed(
                name,
                format!(
                    "binding {name} does not support operation {operation}. supported operations:{}",
                    operations.join(" ")
                ),
            ))
        } else {
            binding.invoke(request).await
        };
        self.metrics
            .record_output_binding(name, &operation, result.is_ok(), started.elapsed());
        result
    }
}

/// The body of `POST /v1.0/bindings/{name}`.
#[derive(serde::Deserialize)]
pub struct BindingBody {
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    operation: String,
}

/// `POST /v1.0/bindings/{name}`. The body is read as JSON whatever its
/// `Content-Type` says, as daprd reads it (`curl -d` sends a form type).
pub async fn invoke_http(
    State(sidecar): State<Arc<Sidecar>>,
    Path(name): Path<String>,
    trace: Option<Extension<TraceContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DaprError> {
    let mut body: BindingBody =
        serde_json::from_slice(&body).map_err(|e| DaprError::MalformedRequest(e.to_string()))?;
    let trace = match trace {
        Some(Extension(trace)) => trace,
        None => TraceContext::unrecorded_from(&headers),
    };
    traced(&mut body.metadata, &trace, &headers);
    let data =
        serde_json::to_vec(&body.data).map_err(|e| DaprError::MalformedRequest(e.to_string()))?;
    let answer = sidecar
        .invoke_binding(
            &name,
            BindingRequest {
                operation: body.operation,
                data: Bytes::from(data),
                metadata: body.metadata,
            },
        )
        .await?;
    let Some(answer) = answer else {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    };
    let media_type = function_app::routes::media_type(&answer.data);
    let mut response = Body::from(answer.data).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    metadata_to_headers(answer.metadata, headers);
    Ok(response)
}
