//! Spans to a Zipkin server, in its JSON v2 format (`POST /api/v2/spans`).
//!
//! Our own, small exporter rather than `opentelemetry-zipkin`: its 0.31
//! release sends no `localEndpoint.serviceName`, so every span showed as an
//! unknown service in Zipkin. It runs on OpenTelemetry's batch thread, so
//! its HTTP call may block.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value, json};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends batches of spans to `endpoint`.
pub(super) struct ZipkinExporter {
    endpoint: String,
    service: String,
    /// Made on the batch thread at the first export: a blocking client
    /// cannot be made (or dropped) on an async runtime.
    client: std::sync::OnceLock<reqwest::blocking::Client>,
}

impl std::fmt::Debug for ZipkinExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipkinExporter")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl ZipkinExporter {
    /// An exporter to `endpoint` (the `/api/v2/spans` URL).
    pub(super) fn new(endpoint: String) -> ZipkinExporter {
        ZipkinExporter {
            endpoint,
            service: String::new(),
            client: std::sync::OnceLock::new(),
        }
    }

    fn send(&self, batch: &[SpanData]) -> OTelSdkResult {
        let spans: Vec<Value> = batch
            .iter()
            .map(|span| zipkin_span(span, &self.service))
            .collect();
        let client = self.client.get_or_init(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .unwrap_or_default()
        });
        let response = client
            .post(&self.endpoint)
            .json(&spans)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(format!("{}: {e}", self.endpoint)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "{} answered {}",
                self.endpoint,
                response.status()
            )))
        }
    }
}

impl SpanExporter for ZipkinExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(self.send(&batch))
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::new("service.name")) {
            self.service = name.to_string();
        }
    }
}

/// Microseconds since the Unix epoch.
fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One span in Zipkin's JSON v2: ids in hex, times in microseconds, the
/// attributes as string tags, a failure as the `error` tag.
fn zipkin_span(span: &SpanData, service: &str) -> Value {
    let mut tags: Map<String, Value> = span
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), Value::from(kv.value.to_string())))
        .collect();
    if let Status::Error { description } = &span.status {
        tags.insert("error".into(), Value::from(description.to_string()));
    }
    let start = micros(span.start_time);
    let mut out = json!({
        "traceId": span.span_context.trace_id().to_string(),
        "id": span.span_context.span_id().to_string(),
        "name": span.name,
        "timestamp": start,
        "duration": micros(span.end_time).saturating_sub(start).max(1),
        "localEndpoint": { "serviceName": service },
        "tags": tags,
    });
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        out["parentId"] = Value::from(span.parent_span_id.to_string());
    }
    let kind = match span.span_kind {
        SpanKind::Server => Some("SERVER"),
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal => None,
    };
    if let Some(kind) = kind {
        out["kind"] = Value::from(kind);
    }
    out
}
