//! Dapr's error response, `{"errorCode": "...", "message": "..."}`, which
//! every dapr-wasm service answers with. Each service keeps its own error
//! table (status and code per variant) and turns an error into a response
//! here, so the body's shape and the logging rule live in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The codes every service shares, for errors that are not any one
/// service's own (each service's table names the rest).
pub const NOT_FOUND: &str = "ERR_NOT_FOUND";
/// The route exists for another method.
pub const METHOD_NOT_ALLOWED: &str = "ERR_METHOD_NOT_ALLOWED";
/// A request body over the limit.
pub const BODY_TOO_LARGE: &str = "ERR_BODY_TOO_LARGE";
/// Any other client error.
pub const BAD_REQUEST: &str = "ERR_BAD_REQUEST";

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

/// Marks a response that carries another service's answer unchanged (an
/// invoked app's), which [`json_errors`] must leave alone.
#[derive(Debug, Clone, Copy)]
pub struct PassedThrough;

/// Middleware: an error response the service made without a JSON body
/// (axum's own rejections, such as 405, or 413 from a body limit) becomes
/// Dapr's JSON error with the same status, its text as the message.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error())
        || is_json
        || response.extensions().get::<PassedThrough>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let code = match status {
        StatusCode::NOT_FOUND => NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => BODY_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "ERR_UNSUPPORTED_MEDIA_TYPE",
        status if status.is_client_error() => BAD_REQUEST,
        _ => "ERR_INTERNAL",
    };
    let mut response = error_response(status, code, message);
    // Keep headers such as `Allow`, but not the old body's framing.
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in parts.headers.drain().filter_map(|(n, v)| Some((n?, v))) {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn answer(
        app: Router,
        request: Request<Body>,
    ) -> (StatusCode, String, serde_json::Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            allow,
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn axum_rejections_become_json_errors_and_passed_through_answers_do_not() {
        let app = Router::new()
            .route("/only-get", get(|| async { "ok" }))
            .route(
                "/app-said-no",
                get(|| async {
                    let mut response =
                        (StatusCode::IM_A_TEAPOT, "plain text from the app").into_response();
                    response.extensions_mut().insert(PassedThrough);
                    response
                }),
            )
            .layer(axum::middleware::from_fn(json_errors));
        let post = Request::post("/only-get").body(Body::empty()).unwrap();
        let (status, allow, body) = answer(app.clone(), post).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(allow.contains("GET"), "{allow}");
        assert_eq!(body["errorCode"], "ERR_METHOD_NOT_ALLOWED", "{body}");
        assert_eq!(body["message"], "method not allowed");

        let missing = Request::get("/nothing").body(Body::empty()).unwrap();
        let (status, _, body) = answer(app.clone(), missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errorCode"], "ERR_NOT_FOUND", "{body}");

        let passed = Request::get("/app-said-no").body(Body::empty()).unwrap();
        let response = app.oneshot(passed).await.unwrap();
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], b"plain text from the app");
    }
}
