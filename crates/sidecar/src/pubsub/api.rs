//! The pub/sub HTTP API.
//!
//! - `POST /v1.0/publish/{pubsub}/{topic}`: the body is the event, its
//!   `Content-Type` the CloudEvent's `datacontenttype`; query
//!   `metadata.rawPayload=true` and `metadata.ttlInSeconds=N`. 204, or
//!   404 `ERR_PUBSUB_NOT_FOUND`, 403 `ERR_PUBSUB_FORBIDDEN`, 400
//!   `ERR_PUBSUB_NOT_CONFIGURED`/`ERR_PUBSUB_CLOUD_EVENTS_SER`, 500
//!   `ERR_PUBSUB_PUBLISH_MESSAGE`.
//! - `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`: a JSON array of
//!   `{entryId, event, contentType, metadata}`. 204 when every entry was
//!   published, else 500 with `failedEntries: [{entryId, error}]`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use service_kit::trace::TraceContext;

use super::ops::{BulkEntry, Publication};
use crate::error::DaprError;
use crate::{Sidecar, query_metadata};

/// The `traceparent` an event carries: this sidecar's span of the publish.
fn traceparent(trace: Option<Extension<TraceContext>>, headers: &HeaderMap) -> Option<String> {
    let trace = match trace {
        Some(Extension(trace)) => trace,
        None => TraceContext::unrecorded_from(headers),
    };
    Some(trace.traceparent())
}

/// `POST /v1.0/publish/{pubsub}/{topic}`
pub(crate) async fn publish(
    State(sidecar): State<Arc<Sidecar>>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    trace: Option<Extension<TraceContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let publication = Publication {
        data: body.to_vec(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        metadata: query_metadata(query),
        traceparent: traceparent(trace, &headers),
    };
    sidecar.publish_event(&pubsub, &topic, publication).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of a bulk publish body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntryBody {
    entry_id: String,
    event: Box<RawValue>,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`
pub(crate) async fn publish_bulk(
    State(sidecar): State<Arc<Sidecar>>,
    Path((pubsub, topic)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    trace: Option<Extension<TraceContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DaprError> {
    let traceparent = traceparent(trace, &headers);
    let entries: Vec<BulkEntryBody> = serde_json::from_slice(&body)
        .map_err(|e| DaprError::MalformedRequest(format!("bulk publish body: {e}")))?;
    let shared = query_metadata(query);
    let entries = entries
        .into_iter()
        .map(|entry| {
            // A string event is the event's text; anything else its JSON,
            // as written.
            let raw = entry.event.get();
            let data = match serde_json::from_str::<String>(raw) {
                Ok(text) if raw.starts_with('"') => text.into_bytes(),
                _ => raw.as_bytes().to_vec(),
            };
            let mut metadata = shared.clone();
            metadata.extend(entry.metadata);
            BulkEntry {
                entry_id: entry.entry_id,
                publication: Publication {
                    data,
                    content_type: entry.content_type,
                    metadata,
                    traceparent: traceparent.clone(),
                },
            }
        })
        .collect();
    let failed = sidecar.publish_events(&pubsub, &topic, entries).await?;
    if failed.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let failed: Vec<Value> = failed
        .into_iter()
        .map(|(entry_id, error)| json!({"entryId": entry_id, "error": error}))
        .collect();
    Ok((
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({
            "failedEntries": failed,
            "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
        })),
    )
        .into_response())
}
