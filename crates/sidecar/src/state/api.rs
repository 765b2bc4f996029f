//! Dapr's state API over HTTP.
//!
//! - `POST   /v1.0/state/{store}`: save `[{key, value, etag?, metadata?, options?}]` → 204
//! - `GET    /v1.0/state/{store}/{key}`: 200 with the value and `ETag`, or 204 when missing
//! - `DELETE /v1.0/state/{store}/{key}`: honours `If-Match` → 204
//! - `POST   /v1.0/state/{store}/bulk`: `{keys}` → `[{key, data?, etag?}]` (daprd's
//!   `parallelism` is accepted and ignored: keys are read one after another)
//! - `POST   /v1.0/state/{store}/transaction`: `{operations: [{operation, request}]}` → 204
//!
//! Keys are stored as `<appId>||<key>`, as daprd does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Concurrency, DeleteRequest, Operation, SetRequest, StateStore, StoreError};
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

fn concurrency(options: &SaveOptions) -> Result<Concurrency, DaprError> {
    match options.concurrency.as_deref() {
        None | Some("") | Some("last-write") => Ok(Concurrency::LastWrite),
        Some("first-write") => Ok(Concurrency::FirstWrite),
        Some(other) => Err(DaprError::MalformedRequest(format!(
            "unknown concurrency `{other}`; use first-write or last-write"
        ))),
    }
}

fn ttl_seconds(metadata: &HashMap<String, Value>) -> Result<Option<u64>, DaprError> {
    let Some(ttl) = metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    let seconds = match ttl {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| DaprError::MalformedRequest(format!("ttlInSeconds `{ttl}` is not a number")))?;
    // Dapr: -1 means "never expires".
    Ok(u64::try_from(seconds).ok())
}

impl Sidecar {
    fn store(&self, name: &str) -> Result<Arc<dyn StateStore>, DaprError> {
        if self.stores.is_empty() {
            return Err(DaprError::StateStoresNotConfigured);
        }
        self.stores
            .get(name)
            .cloned()
            .ok_or_else(|| DaprError::StateStoreNotFound(name.to_string()))
    }

    fn state_key(&self, key: &str) -> String {
        format!("{}||{key}", self.config.app_id)
    }

    fn set_request(&self, item: SaveItem) -> Result<SetRequest, DaprError> {
        if item.key.is_empty() {
            return Err(DaprError::MalformedRequest("a key is empty".into()));
        }
        Ok(SetRequest {
            key: self.state_key(&item.key),
            value: serde_json::to_vec(&item.value)
                .map_err(|e| DaprError::MalformedRequest(e.to_string()))?,
            etag: item.etag.filter(|e| !e.is_empty()),
            concurrency: concurrency(&item.options)?,
            ttl_seconds: ttl_seconds(&item.metadata)?,
        })
    }
}

/// Maps a store error on a write to Dapr's error.
fn write_error(store: &str, err: StoreError) -> DaprError {
    match err {
        StoreError::EtagMismatch(m) => DaprError::EtagMismatch(m),
        StoreError::EtagInvalid(m) => DaprError::EtagInvalid(m),
        StoreError::Backend(reason) => DaprError::StateSave {
            store: store.to_string(),
            reason,
        },
    }
}

pub(crate) async fn state_save(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let store = sidecar.store(&store_name)?;
    let items: Vec<SaveItem> = parse(&body)?;
    let requests = items
        .into_iter()
        .map(|item| sidecar.set_request(item))
        .collect::<Result<Vec<_>, _>>()?;
    store
        .transact(requests.into_iter().map(Operation::Upsert).collect())
        .await
        .map_err(|e| write_error(&store_name, e))?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn state_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store_name, key)): Path<(String, String)>,
) -> Result<Response, DaprError> {
    let store = sidecar.store(&store_name)?;
    let item = store
        .get(&sidecar.state_key(&key))
        .await
        .map_err(|e| DaprError::StateGet {
            key: key.clone(),
            store: store_name.clone(),
            reason: e.to_string(),
        })?;
    let Some(item) = item else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = (StatusCode::OK, item.value).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(etag) = HeaderValue::from_str(&item.etag) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

pub(crate) async fn state_delete(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store_name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, DaprError> {
    let store = sidecar.store(&store_name)?;
    let etag = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_matches('"').to_string());
    let request = DeleteRequest {
        key: sidecar.state_key(&key),
        etag,
        concurrency: Concurrency::LastWrite,
    };
    store.delete(request).await.map_err(|e| match e {
        StoreError::Backend(reason) => DaprError::StateDelete { key, reason },
        other => write_error(&store_name, other),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn state_bulk_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, DaprError> {
    let store = sidecar.store(&store_name)?;
    let request: BulkRequest = parse(&body)?;
    let mut items = Vec::with_capacity(request.keys.len());
    for key in request.keys {
        match store.get(&sidecar.state_key(&key)).await {
            Ok(Some(item)) => {
                let data: Value = serde_json::from_slice(&item.value)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&item.value).into()));
                items.push(json!({ "key": key, "data": data, "etag": item.etag }));
            }
            Ok(None) => items.push(json!({ "key": key })),
            Err(err) => items.push(json!({ "key": key, "error": err.to_string() })),
        }
    }
    Ok(Json(Value::Array(items)))
}

pub(crate) async fn state_transaction(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store_name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let store = sidecar.store(&store_name)?;
    let request: TransactionRequest = parse(&body)?;
    let mut operations = Vec::with_capacity(request.operations.len());
    for op in request.operations {
        operations.push(match op.operation.as_str() {
            "upsert" => Operation::Upsert(sidecar.set_request(op.request)?),
            "delete" => Operation::Delete(DeleteRequest {
                key: sidecar.state_key(&op.request.key),
                etag: op.request.etag.filter(|e| !e.is_empty()),
                concurrency: concurrency(&op.request.options)?,
            }),
            other => {
                return Err(DaprError::MalformedRequest(format!(
                    "operation type {other} not supported"
                )));
            }
        });
    }
    store.transact(operations).await.map_err(|e| match e {
        StoreError::Backend(reason) => DaprError::StateTransaction(reason),
        other => write_error(&store_name, other),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
