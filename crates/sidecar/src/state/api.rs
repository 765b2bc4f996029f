//! Dapr's state API over HTTP.
//!
//! - `POST   /v1.0/state/{store}`: save `[{key, value, etag?, metadata?, options?}]` → 204
//! - `GET    /v1.0/state/{store}/{key}`: 200 with the value and `ETag`, or 204 when missing
//! - `DELETE /v1.0/state/{store}/{key}`: honours `If-Match` → 204
//! - `POST   /v1.0/state/{store}/bulk`: `{keys}` → `[{key, data?, etag?}]` (daprd's
//!   `parallelism` is accepted and ignored: keys are read one after another)
//! - `POST   /v1.0/state/{store}/transaction`: `{operations: [{operation, request}]}` → 204
//!
//! Each handler only translates JSON to and from the calls of
//! [`super::ops`], which the gRPC API shares.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ops::{parse_concurrency, parse_ttl};
use super::{DeleteRequest, Operation, SetRequest};
use crate::Sidecar;
use crate::error::DaprError;

#[derive(Debug, Deserialize)]
struct SaveItem {
    key: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, Value>,
    #[serde(default)]
    options: SaveOptions,
}

#[derive(Debug, Default, Deserialize)]
struct SaveOptions {
    #[serde(default)]
    concurrency: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BulkRequest {
    keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TransactionRequest {
    operations: Vec<TransactionOperation>,
}

#[derive(Debug, Deserialize)]
struct TransactionOperation {
    operation: String,
    request: SaveItem,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DaprError> {
    serde_json::from_slice(body).map_err(|e| DaprError::MalformedRequest(e.to_string()))
}

/// `ttlInSeconds` from JSON metadata, a string or a number.
fn ttl_seconds(metadata: &HashMap<String, Value>) -> Result<Option<u64>, DaprError> {
    match metadata.get("ttlInSeconds") {
        None => Ok(None),
        Some(Value::String(text)) => parse_ttl(text),
        Some(other) => parse_ttl(&other.to_string()),
    }
}

impl SaveItem {
    fn into_write(self) -> Result<SetRequest, DaprError> {
        Ok(SetRequest {
            value: serde_json::to_vec(&self.value)
                .map_err(|e| DaprError::MalformedRequest(e.to_string()))?,
            concurrency: parse_concurrency(self.options.concurrency.as_deref())?,
            ttl_seconds: ttl_seconds(&self.metadata)?,
            key: self.key,
            etag: self.etag,
        })
    }

    fn into_removal(self) -> Result<DeleteRequest, DaprError> {
        Ok(DeleteRequest {
            concurrency: parse_concurrency(self.options.concurrency.as_deref())?,
            key: self.key,
            etag: self.etag,
        })
    }
}

pub(crate) async fn state_save(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let items: Vec<SaveItem> = parse(&body)?;
    let writes = items
        .into_iter()
        .map(SaveItem::into_write)
        .collect::<Result<Vec<_>, _>>()?;
    sidecar.write_state(&store_name, writes).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn state_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store_name, key)): Path<(String, String)>,
) -> Result<Response, DaprError> {
    let Some(item) = sidecar.read_state(&store_name, &key).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let metadata = item.metadata();
    let mut response = (StatusCode::OK, item.value).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(etag) = HeaderValue::from_str(&item.etag) {
        headers.insert(header::ETAG, etag);
    }
    for (name, value) in metadata {
        let name = axum::http::HeaderName::try_from(format!("metadata.{name}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

pub(crate) async fn state_delete(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store_name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, DaprError> {
    let etag = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_matches('"').to_string());
    let removal = DeleteRequest {
        key,
        etag,
        concurrency: Default::default(),
    };
    sidecar.remove_state(&store_name, removal).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn state_bulk_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, DaprError> {
    let request: BulkRequest = parse(&body)?;
    let entries = sidecar.read_state_bulk(&store_name, request.keys).await?;
    let items = entries
        .into_iter()
        .map(|entry| match entry.outcome {
            Ok(Some(item)) => {
                let data: Value = serde_json::from_slice(&item.value)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&item.value).into()));
                let mut found = json!({ "key": entry.key, "data": data, "etag": item.etag });
                let metadata = item.metadata();
                if !metadata.is_empty() {
                    found["metadata"] = json!(metadata);
                }
                found
            }
            Ok(None) => json!({ "key": entry.key }),
            Err(error) => json!({ "key": entry.key, "error": error }),
        })
        .collect();
    Ok(Json(Value::Array(items)))
}

pub(crate) async fn state_transaction(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let request: TransactionRequest = parse(&body)?;
    let steps = request
        .operations
        .into_iter()
        .map(|op| match op.operation.as_str() {
            "upsert" => op.request.into_write().map(Operation::Upsert),
            "delete" => op.request.into_removal().map(Operation::Delete),
            other => Err(DaprError::MalformedRequest(format!(
                "operation type {other} not supported"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    sidecar.transact_state(&store_name, steps).await?;
    Ok(StatusCode::NO_CONTENT)
}
