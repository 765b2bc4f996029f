//! Dapr's error response, `{"errorCode": "...", "message": "..."}`, which
//! every dapr-wasm service answers with. Each service keeps its own error
//! table (status and code per variant) and turns an error into a response
//! here, so the body's shape and the logging rule live in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The JSON error response. Server errors are logged as warnings (the
/// operator must look); client errors only at debug level.
pub fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    if status.is_server_error() {
        tracing::warn!(error_code = code, error = %message, "request failed");
    } else {
        tracing::debug!(error_code = code, error = %message, "request rejected");
    }
    (
        status,
        Json(json!({ "errorCode": code, "message": message })),
    )
        .into_response()
}
