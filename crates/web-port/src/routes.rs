//! web-port's routes.
//!
//! - `GET /`, `GET /static/{file}`: the UI, embedded in the binary.
//! - `POST /api/hello`: the upload, routed by its `api` header
//!   (`grayscale` or `classify`; the seed's `rs` and `go` too) to the image
//!   app through the sidecar; the app's answer comes back as is. A `model`
//!   query parameter goes through to the image app (`?model=NAME`).
//! - `GET /api/models`: the classify app's `GET /models`.
//! - `GET /api/invokecount`: the stats.
//! - `GET /api/events`, `GET /api/events/summary` (also without `/api`):
//!   the history, from the
//!   events service through the sidecar (each upload publishes its event
//!   to it over pub/sub).
//! - `GET /healthz`: health.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use service_kit::headers::{add_server_timing, timing_entry};
use tower_http::trace::TraceLayer;

use crate::config::WebPortConfig;
use crate::dapr::{DaprClient, DaprClientError, InvokeProtocol};
use crate::error::WebError;
use crate::metrics::WebPortMetrics;
use crate::stats::{self, Event, Stats, StatsRecorder};
use crate::system::SystemWatch;
use crate::ui;
use service_kit::trace::{KeyValue, SpanKind, TraceContext};

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    dapr: DaprClient,
    stats: StatsRecorder,
    config: Arc<WebPortConfig>,
    metrics: Arc<WebPortMetrics>,
    system: Arc<SystemWatch>,
}

/// The router, counting in `metrics`. Starts the stats recorder, so it
/// must be called on a runtime.
pub fn app(config: WebPortConfig, metrics: Arc<WebPortMetrics>) -> Router {
    let dapr = DaprClient::new(
        config.dapr_http_port,
        config.dapr_grpc_port,
        config.invoke_timeout,
    );
    let state = AppState {
        stats: StatsRecorder::start(dapr.clone(), config.state_store.clone(), metrics.clone()),
        dapr,
        system: Arc::new(SystemWatch::new(config.system_metrics.clone())),
        config: Arc::new(config),
        metrics,
    };
    Router::new()
        .route("/", get(ui_index))
        .route("/static/{*file}", get(ui_asset))
        .route("/api/limits", get(limits_get))
        .route("/api/system", get(system_get))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/api/hello", post(upload))
        .route("/api/invokecount", get(stats_get))
        .route("/api/models", get(models_get))
        .route("/api/events", get(events_list))
        .route("/api/events/summary", get(events_summary))
        .route("/events", get(events_list))
        .route("/events/summary", get(events_summary))
        .fallback(|uri: axum::http::Uri| async move { WebError::NotFound(uri.path().to_string()) })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn ui_index() -> Response {
    asset_response(ui::INDEX_HTML.as_bytes(), "text/html; charset=utf-8")
}

/// `GET /api/system`: each process's health and request rate.
async fn system_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "processes": state.system.look().await }))
}

/// `GET /api/limits`: what the page checks a photo against before it
/// uploads it.
async fn limits_get(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "maxUploadBytes": state.config.body_limits.max_bytes,
        "maxImagePixels": state.config.max_image_pixels,
    }))
}

async fn ui_asset(Path(file): Path<String>) -> Result<Response, WebError> {
    // Only the embedded files exist: no path reaches the filesystem.
    let (body, media_type) =
        ui::asset(&file).ok_or(WebError::NotFound(format!("/static/{file}")))?;
    Ok(asset_response(body, media_type))
}

fn asset_response(body: &'static [u8], media_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, media_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The image app an upload goes to.
struct ImageApp<'a> {
    /// The API's canonical name (`grayscale` or `classify`).
    api: &'static str,
    /// The app id it is invoked by.
    app_id: &'a str,
    /// Through which of the sidecar's APIs.
    protocol: InvokeProtocol,
}

/// The image app an `api` header names.
fn image_app<'a>(config: &'a WebPortConfig, api: &str) -> Option<ImageApp<'a>> {
    let (api, app_id, protocol) = match api.trim().to_ascii_lowercase().as_str() {
        "grayscale" | "rs" => (
            "grayscale",
            &config.grayscale_app_id,
            config.grayscale_protocol,
        ),
        "classify" | "go" => (
            "classify",
            &config.classify_app_id,
            config.classify_protocol,
        ),
        _ => return None,
    };
    Some(ImageApp {
        api,
        app_id,
        protocol,
    })
}

/// `POST /api/hello`
async fn upload(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    trace: TraceContext,
    request: Request,
) -> Response {
    let started = Instant::now();
    let api_header = header_str(request.headers(), "api").unwrap_or_default();
    let Some(ImageApp {
        api,
        app_id,
        protocol,
    }) = image_app(&state.config, &api_header)
    else {
        return WebError::UnknownApi(api_header).into_response();
    };
    let content_type = header_str(request.headers(), "content-type");
    let input = match service_kit::body::read_limited(request, state.config.body_limits).await {
        Ok(input) => input,
        Err(body) => return WebError::Body(body).into_response(),
    };
    let input_bytes = input.len();
    let method = match query.get("model") {
        Some(model) => format!("api/image?model={}", query_escape(model)),
        None => "api/image".to_string(),
    };
    let call = trace.child(
        format!("invoke {app_id}"),
        SpanKind::Client,
        vec![
            KeyValue::new("dapr_wasm.api", api.to_string()),
            KeyValue::new("dapr_wasm.app_id", app_id.to_string()),
        ],
    );
    let invoked = state
        .dapr
        .invoke_with(
            protocol,
            app_id,
            &method,
            input,
            content_type.as_deref(),
            &call,
        )
        .await;
    call.end(match &invoked {
        Ok(invoked) if invoked.status.is_server_error() => Some(invoked.status.to_string()),
        Ok(_) => None,
        Err(err) => Some(err.to_string()),
    });
    let response = match invoked {
        Ok(invoked) if sidecar_could_not_reach_app(&invoked) => WebError::ImageAppUnavailable {
            api: api.to_string(),
            reason: dapr_message(&invoked.body),
        }
        .into_response(),
        Ok(invoked) => {
            let mut response = Response::new(Body::from(invoked.body));
            *response.status_mut() = invoked.status;
            for (name, value) in [
                (header::CONTENT_TYPE, invoked.content_type),
                (header::RETRY_AFTER, invoked.retry_after),
            ] {
                if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    response.headers_mut().insert(name, value);
                }
            }
            add_server_timing(response.headers_mut(), &invoked.server_timing);
            response
        }
        Err(err @ DaprClientError::Unreachable { .. }) => WebError::Sidecar(err).into_response(),
        Err(err) => WebError::ImageAppUnavailable {
            api: api.to_string(),
            reason: err.to_string(),
        }
        .into_response(),
    };
    let elapsed = started.elapsed();
    state
        .metrics
        .record_upload(api, response.status().as_u16(), elapsed);
    let output_bytes = response_len(&response);
    let event = Event {
        time: stats::now_rfc3339(),
        api: api.to_string(),
        input_bytes,
        output_bytes,
        milliseconds: (elapsed.as_secs_f64() * 1e5).round() / 100.0,
        status: response.status().as_u16(),
        client: Some(peer.ip().to_string()),
    };
    // The events service's copy, over pub/sub: the broker keeps it while
    // that service is down. A failure is logged; the upload stands.
    let config = &state.config;
    if let Err(err) = state
        .dapr
        .publish(&config.pubsub, &config.events_topic, &event, &trace)
        .await
    {
        tracing::warn!(error = %err, "cannot publish the upload's event");
    }
    // The upload's answer waits for the stats write (so a count the
    // client can read afterwards includes it) but never fails with it.
    let recording = Instant::now();
    let stats_span = trace.child("stats", SpanKind::Internal, Vec::new());
    let recorded = state.stats.record(event, stats_span.clone()).await;
    stats_span.end(recorded.as_ref().err().map(|err| err.to_string()));
    if let Err(err) = recorded {
        tracing::warn!(error = %err, "cannot record the call in the state store");
    }
    let mut response = response;
    let timing = [
        timing_entry("stats", recording.elapsed(), None),
        timing_entry("web-port", started.elapsed(), None),
    ];
    add_server_timing(response.headers_mut(), &timing);
    response
}

/// `GET /api/invokecount`
async fn stats_get(
    State(state): State<AppState>,
    trace: TraceContext,
) -> Result<Json<Stats>, WebError> {
    stats::read(&state.dapr, &state.config.state_store, &trace)
        .await
        .map(Json)
        .map_err(WebError::Stats)
}

/// `GET /api/models`: the classify app's models, as it lists them.
async fn models_get(State(state): State<AppState>, trace: TraceContext) -> Response {
    let app_id = state.config.classify_app_id.clone();
    match state.dapr.invoke_get(&app_id, "models", &trace).await {
        Ok(invoked) if sidecar_could_not_reach_app(&invoked) => WebError::ImageAppUnavailable {
            api: "classify".into(),
            reason: dapr_message(&invoked.body),
        }
        .into_response(),
        Ok(invoked) => passed_through(invoked),
        Err(err) => WebError::ImageAppUnavailable {
            api: "classify".into(),
            reason: err.to_string(),
        }
        .into_response(),
    }
}

/// `value` percent-encoded for a query string.
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/events`: the events service's `GET /events`, query and all.
async fn events_list(
    State(state): State<AppState>,
    trace: TraceContext,
    uri: axum::http::Uri,
) -> Response {
    let method = match uri.query() {
        Some(query) => format!("events?{query}"),
        None => "events".to_string(),
    };
    from_events_service(&state, &method, &trace).await
}

/// `GET /api/events/summary`
async fn events_summary(State(state): State<AppState>, trace: TraceContext) -> Response {
    from_events_service(&state, "events/summary", &trace).await
}

/// The events service's answer to `GET method`, as it came, or a 503 when
/// the sidecar cannot reach it.
async fn from_events_service(state: &AppState, method: &str, trace: &TraceContext) -> Response {
    match state
        .dapr
        .invoke_get(&state.config.events_app_id, method, trace)
        .await
    {
        Ok(invoked) if sidecar_could_not_reach_app(&invoked) => {
            WebError::EventsUnavailable(dapr_message(&invoked.body)).into_response()
        }
        Ok(invoked) => passed_through(invoked),
        Err(err) => WebError::EventsUnavailable(err.to_string()).into_response(),
    }
}

/// An app's answer, status, body and content type, as it came.
fn passed_through(invoked: crate::dapr::Invoked) -> Response {
    let mut response = Response::new(Body::from(invoked.body));
    *response.status_mut() = invoked.status;
    if let Some(value) = invoked
        .content_type
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Dapr answers a call it could not deliver with `ERR_DIRECT_INVOKE`: 500
/// when the app or its sidecar does not answer, 404 when no sidecar has
/// the app id.
fn sidecar_could_not_reach_app(invoked: &crate::dapr::Invoked) -> bool {
    (invoked.status == StatusCode::INTERNAL_SERVER_ERROR || invoked.status == StatusCode::NOT_FOUND)
        && serde_json::from_slice::<serde_json::Value>(&invoked.body)
            .is_ok_and(|v| v["errorCode"] == "ERR_DIRECT_INVOKE")
}

fn dapr_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

fn response_len(response: &Response) -> usize {
    use axum::body::HttpBody;
    response.body().size_hint().exact().unwrap_or(0) as usize
}
