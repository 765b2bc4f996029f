//! The image service's routes.
//!
//! - `POST /api/image`: runs the function on the body (the seed's path).
//!   For a function that uses WASI-NN, `?model=NAME` picks the model: it is
//!   passed to the function as `--model NAME` (a name the host has not
//!   loaded gets 400 `ERR_UNKNOWN_MODEL` without a call).
//! - `POST /<function name>`: the same, e.g. `POST /grayscale`.
//! - `GET /models`: the loaded models, with their input size, file, load
//!   time, measured latency and published accuracy.
//! - `GET /`: usage text.
//! - `GET /healthz`: health, for Dapr's app health checks.
//!
//! Success answers with the function's output and a `Content-Type` sniffed
//! from its first bytes; a `Server-Timing` header says how long the wasm call
//! took. Errors are JSON `{errorCode, message}` (see [`crate::error`]).

use axum::body::Body;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, Request, State};
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
    model_calls: Arc<HashMap<String, CallCounter>>,
}

/// Successful calls per model and their total wasm time, for `GET /models`.
#[derive(Default)]
struct CallCounter {
    calls: AtomicU64,
    micros: AtomicU64,
}

/// The service's router for `function`, accepting bodies within
/// `body_limits`.
pub fn app(function: Function, body_limits: BodyLimits) -> Router {
    let alias = format!("/{}", function.name());
    let model_calls = function
        .models()
        .map(|models| {
            models
                .loaded()
                .iter()
                .map(|m| (m.name.clone(), CallCounter::default()))
                .collect()
        })
        .unwrap_or_default();
    Router::new()
        .route("/", get(usage_get))
        .route("/healthz", get(healthz_get))
        .route("/models", get(models_get))
        .route("/api/image", post(image_post))
        .route(&alias, post(image_post))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            function,
            body_limits,
            model_calls: Arc::new(model_calls),
        })
}

async fn image_post(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let model = chosen_model(&state, query.get("model").map(String::as_str))?;
    let input = read_body(request, state.body_limits).await?;
    let output = match model {
        Some(model) => state.function.call(input, &["--model", model]).await?,
        None => state.function.call(input, &[]).await?,
    };
    if let Some(counter) = model.and_then(|m| state.model_calls.get(m)) {
        counter.calls.fetch_add(1, Ordering::Relaxed);
        counter
            .micros
            .fetch_add(output.elapsed.as_micros() as u64, Ordering::Relaxed);
    }
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

/// The model a call asked for: checked against the models the host
/// loaded, and the first of them (the default) when the function uses
/// WASI-NN and the call names none.
fn chosen_model<'a>(state: &'a AppState, asked: Option<&str>) -> Result<Option<&'a str>, ApiError> {
    let Some(models) = state.function.models() else {
        return match asked {
            Some(_) => Err(ApiError::BadQuery(format!(
                "`model` is for functions that use WASI-NN; `{}` uses none",
                state.function.name()
            ))),
            None => Ok(None),
        };
    };
    let loaded = models.loaded();
    let Some(asked) = asked else {
        return Ok(loaded.first().map(|m| m.name.as_str()));
    };
    loaded
        .iter()
        .find(|m| m.name == asked)
        .map(|m| Some(m.name.as_str()))
        .ok_or_else(|| {
            let names: Vec<&str> = loaded.iter().map(|m| m.name.as_str()).collect();
            ApiError::UnknownModel(format!(
                "unknown model `{asked}`; the models are: {}",
                names.join(", ")
            ))
        })
}

/// `GET /models`: each loaded model with its input size, file, load time,
/// latency (one inference at start-up; the mean call since) and published
/// accuracy.
async fn models_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let Some(models) = state.function.models() else {
        return Json(json!({ "function": state.function.name(), "backend": null, "models": [] }));
    };
    let list: Vec<serde_json::Value> = models
        .loaded()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let counter = state.model_calls.get(&m.name);
            let calls = counter.map_or(0, |c| c.calls.load(Ordering::Relaxed));
            let micros = counter.map_or(0, |c| c.micros.load(Ordering::Relaxed));
            let published = model_files::classifier(&m.name);
            json!({
                "name": m.name,
                "default": i == 0,
                "inputSize": m.input_shape.last(),
                "inputShape": m.input_shape,
                "file": m.path.display().to_string(),
                "loadMs": ms(m.load_time),
                "inferenceMs": ms(m.inference_time),
                "calls": calls,
                "meanCallMs": (calls > 0).then(|| (micros as f64 / calls as f64 / 10.0).round() / 100.0),
                "top1Accuracy": published.map(|p| p.top1_accuracy),
            })
        })
        .collect();
    Json(json!({
        "function": state.function.name(),
        "backend": models.backend().to_string(),
        "models": list,
    }))
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
