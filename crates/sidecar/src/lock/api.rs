//! The lock API over HTTP, as daprd serves it:
//!
//! - `POST /v1.0-alpha1/lock/{store}` with `{"resourceId", "lockOwner",
//!   "expiryInSeconds"}` → 200 `{"success": true|false}`;
//! - `POST /v1.0-alpha1/unlock/{store}` with `{"resourceId", "lockOwner"}`
//!   → 200 `{"status": 0|1|2}` (released, no such lock, another owner's).
//!
//! The fields may also be written as in the proto (`resource_id`, ...), as
//! protojson reads them; an empty body is a request with no fields.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use serde_json::{Value, json};

use super::LockRequest;
use crate::Sidecar;
use crate::error::DaprError;

fn lock_request(body: &Bytes) -> Result<LockRequest, DaprError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(LockRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| DaprError::MalformedRequest(e.to_string()))
}

/// `POST /v1.0-alpha1/lock/{store}`
pub(crate) async fn try_lock(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, DaprError> {
    let success = sidecar.try_lock(&store, &lock_request(&body)?).await?;
    Ok(Json(json!({ "success": success })))
}

/// `POST /v1.0-alpha1/unlock/{store}`
pub(crate) async fn unlock(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, DaprError> {
    let status = sidecar.unlock(&store, &lock_request(&body)?).await?;
    Ok(Json(json!({ "status": status as i32 })))
}
