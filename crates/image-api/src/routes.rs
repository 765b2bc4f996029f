//! The image service's routes.
//!
//! - `POST /api/image`: runs the function on the body (the seed's path).
//! - `POST /<function name>`: the same, e.g. `POST /grayscale`.
//! - `GET /`: usage text.
//! - `GET /healthz`: health, for Dapr's app health checks.
//!
//! Success answers with the function's output and a `Content-Type` sniffed
//! from its first bytes; a `Server-Timing` header says how long the wasm call
//! took. Errors are JSON `{errorCode, message}` (see [`crate::error`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use function_host::Function;
use serde_json::json;
use service_kit::body::BodyLimits;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    function: Function,
    body_limits: BodyLimits,
}

/// The service's router for `function`, accepting bodies within
/// `body_limits`.
pub fn app(function: Function, body_limits: BodyLimits) -> Router {
    let alias = format!("/{}", function.name());
    Router::new()
        .route("/", get(usage_get))
        .route("/healthz", get(healthz_get))
        .route("/api/image", post(image_post))
        .route(&alias, post(image_post))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            function,
            body_limits,
        })
}

async fn image_post(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let input = read_body(request, state.body_limits).await?;
    let output = state.function.call(input, &[]).await?;
    let timing = format!("wasm;dur={:.2}", output.elapsed.as_secs_f64() * 1e3);
    let mut response = Body::from(output.stdout.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_type(&output.stdout)),
    );
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", value);
    }
    Ok(response)
}

/// Reads the whole body (see [`service_kit::body`]).
async fn read_body(request: Request, limits: BodyLimits) -> Result<Bytes, ApiError> {
    Ok(service_kit::body::read_limited(request, limits).await?)
}

/// The media type of a function's output, from its leading bytes.
pub fn media_type(output: &[u8]) -> &'static str {
    match output {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        [b'B', b'M', ..] => "image/bmp",
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(output).is_ok() => "application/json",
        _ => "application/octet-stream",
    }
}

async fn usage_get(State(state): State<AppState>) -> String {
    let name = state.function.name();
    let limits = state.function.limits();
    format!(
        "dapr-wasm image-api serving the `{name}` WebAssembly function\n\
         \n\
         POST /api/image     run `{name}` on the request body (an image)\n\
         POST /{name:<14}run `{name}` (alias)\n\
         GET  /healthz       health\n\
         \n\
         Example:\n  curl --data-binary @photo.jpg http://HOST:PORT/api/image > out.png\n\
         \n\
         Limits: body {} bytes, output {} bytes, memory {} bytes, deadline {:?} per call.\n\
         Errors are JSON: {{\"errorCode\": \"...\", \"message\": \"...\"}}\n",
        limits.max_input_bytes, limits.max_output_bytes, limits.max_memory_bytes, limits.deadline,
    )
}

async fn healthz_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "function": state.function.name() }))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
