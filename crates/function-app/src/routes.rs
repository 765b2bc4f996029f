//! A function app's routes.
//!
//! - `POST /fn/{name}`, and every alias its configuration gives (the image
//!   apps: `POST /api/image` and `POST /{name}`): runs the function on the
//!   body. For a function that uses WASI-NN, `?model=NAME` picks the model:
//!   it is passed to the function as `--model NAME` (a name the function
//!   was not given gets 400 `ERR_UNKNOWN_MODEL` without a call).
//! - A mounted wasi:http component's path and everything below it: the
//!   request, any method, goes to the component, which sees the path
//!   without the mount prefix (`component_host` answers its failures).
//! - `GET /fn`: every function with its routes, version (wasm SHA-256),
//!   load time, limits, models, and any reload that failed; and every
//!   component with its path, version, limits and reload error.
//! - `GET /models`: the first WASI-NN function's models, with their input
//!   size, file, load time, measured latency and published accuracy.
//! - `GET /`: usage text.
//! - `GET /healthz`: health, for Dapr's app health checks.
//!
//! Function routes are looked up in the catalog's current table on every
//! request (the fallback handler), so a reload that adds, removes or
//! replaces a function needs no new router.
//!
//! Success answers with the function's output and its configured
//! `Content-Type`, or one sniffed from its first bytes. Its `Server-Timing`
//! says where the time went (milliseconds): `app` (the whole request, body
//! included), `queue` (waiting for a call slot), `instantiate`, `wasm`
//! (instantiating and running the guest) and, for a WASI-NN function,
//! `inference`, described as `BACKEND/MODEL`. Errors are JSON `{errorCode,
//! message}` (see [`crate::error`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use function_host::CallOutput;
use serde_json::json;
use service_kit::body::BodyLimits;
use service_kit::headers::{add_server_timing, timing_entry};
use service_kit::metrics::RouteLabel;
use service_kit::trace::{KeyValue, TraceContext};
use tower_http::trace::TraceLayer;

use crate::catalog::{Catalog, Served};
use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    catalog: Arc<Catalog>,
    body_timeout: Duration,
    model_calls: Arc<std::sync::Mutex<HashMap<String, Arc<CallCounter>>>>,
}

/// Successful calls per model and their total wasm time, for `GET /models`.
#[derive(Default)]
struct CallCounter {
    calls: AtomicU64,
    micros: AtomicU64,
}

/// The app's router: the functions of `catalog`, each body arriving within
/// `body_timeout` and within its function's input limit.
pub fn app(catalog: Arc<Catalog>, body_timeout: Duration) -> Router {
    Router::new()
        .route("/", get(usage_get))
        .route("/healthz", get(healthz_get))
        .route("/models", get(models_get))
        .route("/fn", get(functions_get))
        .fallback(function_call)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            catalog,
            body_timeout,
            model_calls: Default::default(),
        })
}

/// Any other path: a function's route, or 404. A function's answer carries
/// its route for the HTTP metrics (routes are configured, so few).
async fn function_call(State(state): State<AppState>, request: Request) -> Response {
    let table = state.catalog.current();
    let path = request.uri().path().to_string();
    let Some(served) = table.route(&path).cloned() else {
        if let Some((mounted, inner)) = table.mount(&path) {
            let mounted = mounted.clone();
            let mut response = call_component(&mounted.component, request, &inner).await;
            response
                .extensions_mut()
                .insert(RouteLabel(mounted.config.path.clone()));
            return response;
        }
        return ApiError::NotFound(path).into_response();
    };
    let started = Instant::now();
    let trace = TraceContext::of(request.extensions(), request.headers());
    let mut response = call_function(&state, &served, request, &trace)
        .await
        .into_response();
    add_server_timing(
        response.headers_mut(),
        &[timing_entry("app", started.elapsed(), None)],
    );
    response.extensions_mut().insert(RouteLabel(path));
    response
}

/// Hands the request to a mounted component, which sees `inner` (the path
/// below its mount point) with the query string kept.
async fn call_component(
    component: &component_host::ServedComponent,
    mut request: Request,
    inner: &str,
) -> Response {
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{inner}?{query}"),
        None => inner.to_string(),
    };
    if let Ok(uri) = path_and_query.parse() {
        *request.uri_mut() = uri;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    component.handle(request, peer).await
}

/// Runs `served` on the request's body.
async fn call_function(
    state: &AppState,
    served: &Served,
    request: Request,
    trace: &TraceContext,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let query = Query::<HashMap<String, String>>::try_from_uri(request.uri())
        .map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let model = chosen_model(served, query.get("model").map(String::as_str))?;
    let limits = BodyLimits {
        max_bytes: served.function.limits().max_input_bytes,
        timeout: state.body_timeout,
    };
    let config = &served.config;
    let input = if config.refuse_empty_input {
        service_kit::body::read_limited(request, limits).await?
    } else {
        service_kit::body::read_to_limit(request, limits).await?
    };
    let mut args: Vec<&str> = config.args.iter().map(String::as_str).collect();
    if let Some(model) = model {
        args.extend(["--model", model]);
    }
    let output = served
        .function
        .call(input, &args)
        .await
        .map_err(|e| ApiError::from_call(&config.name, &config.exit_codes, e))?;
    let backend = served.function.models().map(|models| models.backend());
    record_call_spans(trace, &config.name, model.zip(backend), &output);
    if let Some(model) = model {
        let counter = state
            .model_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(model.to_string())
            .or_default()
            .clone();
        counter.calls.fetch_add(1, Ordering::Relaxed);
        counter
            .micros
            .fetch_add(output.elapsed.as_micros() as u64, Ordering::Relaxed);
    }
    let mut timing = vec![
        timing_entry("queue", output.queue_wait, None),
        timing_entry("instantiate", output.instantiate, None),
        timing_entry("wasm", output.elapsed, None),
    ];
    if let (Some(model), Some(models)) = (model, served.function.models()) {
        let desc = format!("{}/{model}", models.backend());
        timing.push(timing_entry("inference", output.inference, Some(&desc)));
    }
    let content_type = match &config.content_type {
        Some(configured) => HeaderValue::from_str(configured)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        None => HeaderValue::from_static(media_type(&output.stdout)),
    };
    let mut response = Body::from(output.stdout).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    add_server_timing(response.headers_mut(), &timing);
    Ok(response)
}

/// The spans of a finished call, under the request's: the call, and in it
/// the wait for a slot, instantiation, and the guest's run, with the
/// inferences in that (their total, from the first one's start). The
/// host measured the durations; the call ended now.
fn record_call_spans(
    trace: &TraceContext,
    function: &str,
    model: Option<(&str, impl std::fmt::Display)>,
    output: &CallOutput,
) {
    if !trace.is_recording() {
        return;
    }
    let ended = SystemTime::now();
    let started = ended
        .checked_sub(output.queue_wait + output.elapsed)
        .unwrap_or(ended);
    let call = trace.record_child(
        format!("function {function}"),
        started,
        ended,
        vec![KeyValue::new("dapr_wasm.function", function.to_string())],
    );
    let slot = started + output.queue_wait;
    call.record_child("queue", started, slot, Vec::new());
    let instantiated = slot + output.instantiate;
    call.record_child("instantiate", slot, instantiated, Vec::new());
    let wasm_end = slot + output.elapsed;
    let wasm = call.record_child("wasm", instantiated, wasm_end, Vec::new());
    let inference_from = output.inference_started.map(|first| slot + first);
    record_guest_stages(
        &wasm,
        &output.stderr,
        instantiated..wasm_end,
        inference_from,
    );
    if let (Some((model, backend)), Some(from)) = (model, inference_from) {
        wasm.record_child(
            "inference",
            from,
            from + output.inference,
            vec![
                KeyValue::new("dapr_wasm.model", model.to_string()),
                KeyValue::new("dapr_wasm.nn_backend", backend.to_string()),
            ],
        );
    }
}

/// The stages a guest timed itself, as spans in its run (`wasm`): a
/// successful guest may end its stderr with a line `timings NAME_ms=MS ...`,
/// its stages in order, back to back (classify writes one with
/// `--timings`). Guest clocks say how long, not when: the stages are
/// placed so that a stage named `inference` starts when the host saw the
/// first inference start (that stage itself is the host's `inference`
/// span), or else so that they end with the run.
fn record_guest_stages(
    wasm: &TraceContext,
    stderr: &[u8],
    run: std::ops::Range<SystemTime>,
    inference_from: Option<SystemTime>,
) {
    let stages = guest_stages(stderr);
    if stages.is_empty() {
        return;
    }
    let before_inference = stages.iter().position(|(name, _)| name == "inference");
    let total: Duration = stages.iter().map(|(_, took)| *took).sum();
    let start = match (before_inference, inference_from) {
        (Some(i), Some(inference)) => {
            let leading: Duration = stages[..i].iter().map(|(_, took)| *took).sum();
            inference.checked_sub(leading)
        }
        _ => run.end.checked_sub(total),
    }
    .map_or(run.start, |start| start.max(run.start));
    let mut at = start;
    for (name, took) in stages {
        let end = (at + took).min(run.end);
        if name != "inference" || inference_from.is_none() {
            wasm.record_child(
                name,
                at,
                end,
                vec![KeyValue::new("dapr_wasm.timed_by", "guest")],
            );
        }
        at = end;
    }
}

/// The `timings NAME_ms=MS ...` line of a guest's stderr, if it wrote one.
fn guest_stages(stderr: &[u8]) -> Vec<(String, Duration)> {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix("timings ")) else {
        return Vec::new();
    };
    line.split_whitespace()
        .filter_map(|field| {
            let (name, ms) = field.split_once('=')?;
            let name = name.strip_suffix("_ms")?;
            let ms = ms
                .parse::<f64>()
                .ok()
                .filter(|ms| ms.is_finite() && *ms >= 0.0)?;
            Some((name.to_string(), Duration::from_secs_f64(ms / 1e3)))
        })
        .collect()
}

/// `GET /fn`: see [`Catalog::listing`].
async fn functions_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.catalog.listing())
}

/// The model a call asked for: checked against the models the host
/// loaded, and the first of them (the default) when the function uses
/// WASI-NN and the call names none.
fn chosen_model<'a>(served: &'a Served, asked: Option<&str>) -> Result<Option<&'a str>, ApiError> {
    let Some(models) = served.function.models() else {
        return match asked {
            Some(_) => Err(ApiError::BadQuery(format!(
                "`model` is for functions that use WASI-NN; `{}` uses none",
                served.config.name
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
    let table = state.catalog.current();
    let with_models = table
        .functions()
        .iter()
        .find_map(|served| Some((served, served.function.models()?)));
    let Some((served, models)) = with_models else {
        let first = table.functions().first().map(|s| s.config.name.clone());
        return Json(json!({ "function": first, "backend": null, "models": [] }));
    };
    let model_calls = state
        .model_calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let list: Vec<serde_json::Value> = models
        .loaded()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let counter = model_calls.get(&m.name);
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
        "function": served.config.name,
        "backend": models.backend().to_string(),
        "models": list,
    }))
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
    let table = state.catalog.current();
    let mut text = String::from("dapr-wasm function app\n\n");
    for served in table.functions() {
        let limits = served.function.limits();
        text.push_str(&format!(
            "`{}` ({}): POST {}\n  limits: input {} bytes, output {} bytes, memory {} bytes, deadline {:?} per call\n",
            served.config.name,
            served.version,
            served.config.routes.join(", POST "),
            limits.max_input_bytes,
            limits.max_output_bytes,
            limits.max_memory_bytes,
            limits.deadline,
        ));
    }
    text.push_str(
        "\nGET  /fn        the functions, their versions and any reload error\n\
         GET  /healthz   health\n\
         \n\
         Example:\n  curl --data-binary @input http://HOST:PORT/fn/NAME\n\
         \n\
         Errors are JSON: {\"errorCode\": \"...\", \"message\": \"...\"}\n",
    );
    text
}

async fn healthz_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    let table = state.catalog.current();
    let names: Vec<&str> = table
        .functions()
        .iter()
        .map(|s| s.config.name.as_str())
        .collect();
    // `function`: the first (for the image apps, the only) function.
    Json(json!({ "status": "ok", "function": names.first(), "functions": names }))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guests_timings_line_gives_its_stages_in_order() {
        let stderr = b"a warning\ntimings decode_ms=1.500 preprocess_ms=0.250 inference_ms=3 answer_ms=0.010\n";
        let stages = guest_stages(stderr);
        let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["decode", "preprocess", "inference", "answer"]);
        assert_eq!(stages[0].1, Duration::from_micros(1500));
        assert_eq!(stages[2].1, Duration::from_millis(3));
        for garbage in [
            &b"no timings here"[..],
            b"timings decode=1 x_ms=-2 y_ms=NaN z_ms=inf",
        ] {
            assert!(
                guest_stages(garbage).is_empty(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
