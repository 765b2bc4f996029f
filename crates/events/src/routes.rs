//! The events service's routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_http::trace::TraceLayer;

use crate::ImageEvent;
use crate::config::EventsConfig;
use crate::store::EventStore;

/// Most events one page holds.
pub const MAX_PAGE: u32 = 100;
/// Events per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 20;

#[derive(Clone)]
struct AppState {
    config: Arc<EventsConfig>,
    store: Arc<dyn EventStore>,
}

/// The router.
pub fn app(config: EventsConfig, store: Box<dyn EventStore>) -> Router {
    let state = AppState {
        config: Arc::new(config),
        store: Arc::from(store),
    };
    Router::new()
        .route("/dapr/subscribe", get(subscriptions))
        .route("/image-events", post(take_event))
        .route("/events", get(list))
        .route("/events/summary", get(summary))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .layer(axum::middleware::from_fn(
            service_kit::error_body::json_errors,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /dapr/subscribe`: the image events, to `/image-events`.
async fn subscriptions(State(state): State<AppState>) -> Json<Value> {
    Json(json!([{
        "pubsubname": state.config.pubsub,
        "topic": state.config.topic,
        "route": "/image-events",
    }]))
}

/// `POST /image-events`: one CloudEvent. Stored (once per id): SUCCESS; a
/// database failure: 500, so Dapr retries; an event that can never be
/// stored (no id, no image event in it): DROP.
async fn take_event(State(state): State<AppState>, body: Bytes) -> Response {
    let event: Option<(String, ImageEvent)> =
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|cloud_event| {
                let id = cloud_event.get("id")?.as_str()?.to_string();
                let data = serde_json::from_value(cloud_event.get("data")?.clone()).ok()?;
                (!id.is_empty()).then_some((id, data))
            });
    let Some((id, event)) = event else {
        tracing::warn!("an event without an id or an image event in it; dropped");
        return Json(json!({"status": "DROP"})).into_response();
    };
    match state.store.insert(&id, &event).await {
        Ok(inserted) => {
            if !inserted {
                tracing::debug!(%id, "event delivered again; stored once");
            }
            Json(json!({"status": "SUCCESS"})).into_response()
        }
        Err(err) => {
            tracing::error!(%id, error = %err, "cannot store an event; Dapr will retry");
            database_error(err)
        }
    }
}

fn database_error(err: crate::store::StoreError) -> Response {
    service_kit::error_body::error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_EVENTS_DATABASE",
        format!("the events database failed: {err}"),
    )
}

/// A query number, or why it is not one.
fn number(query: &HashMap<String, String>, name: &str, default: u32) -> Result<u32, String> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name} must be a whole number, not {text:?}")),
    }
}

/// `GET /events?limit=&offset=`: newest first.
async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (limit, offset) = match (
        number(&query, "limit", DEFAULT_PAGE),
        number(&query, "offset", 0),
    ) {
        (Ok(limit), Ok(offset)) => (limit.clamp(1, MAX_PAGE), offset),
        (Err(reason), _) | (_, Err(reason)) => {
            return service_kit::error_body::error_response(
                StatusCode::BAD_REQUEST,
                service_kit::error_body::BAD_REQUEST,
                reason,
            );
        }
    };
    match state.store.page(limit, offset).await {
        Ok((events, total)) => Json(json!({
            "events": events,
            "total": total,
            "limit": limit,
            "offset": offset,
        }))
        .into_response(),
        Err(err) => database_error(err),
    }
}

/// `GET /events/summary`: counts per API and status.
async fn summary(State(state): State<AppState>) -> Response {
    match state.store.summary().await {
        Ok(counts) => {
            let total: u64 = counts.iter().map(|c| c.count).sum();
            Json(json!({"total": total, "counts": counts})).into_response()
        }
        Err(err) => database_error(err),
    }
}
