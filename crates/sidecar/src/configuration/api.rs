//! The configuration API over HTTP, as daprd serves it (under `/v1.0` and
//! `/v1.0-alpha1` alike):
//!
//! - `GET /configuration/{store}?key=a&key=b` → 200 `{"a": {"value",
//!   "version", "metadata"}, ...}`, or 204 when no key has an item; no
//!   `key` gets every item;
//! - `GET /configuration/{store}/subscribe?key=a` → 200 `{"id": "..."}`;
//!   each change is then `POST`ed to the app on
//!   `/configuration/{store}/{key}`;
//! - `GET /configuration/{store}/{id}/unsubscribe` → 200 `{"ok": true}`.
//!
//! `metadata.X=Y` query parameters are passed to the store.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Subscriber;
use crate::error::DaprError;
use crate::{Sidecar, query_metadata};

/// The query's `key`s, in order.
fn keys(query: &[(String, String)]) -> Vec<String> {
    query
        .iter()
        .filter(|(name, _)| name == "key")
        .map(|(_, key)| key.clone())
        .collect()
}

/// `GET /v1.0/configuration/{store}`
pub(crate) async fn get_configuration(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, DaprError> {
    let items = sidecar
        .get_configuration(&store, &keys(&query), &query_metadata(query))
        .await?;
    if items.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(items).into_response())
}

/// `GET /v1.0/configuration/{store}/subscribe`
pub(crate) async fn subscribe_configuration(
    State(sidecar): State<Arc<Sidecar>>,
    Path(store): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, DaprError> {
    let id = sidecar
        .subscribe_configuration(
            &store,
            &keys(&query),
            &query_metadata(query),
            Subscriber::App,
        )
        .await?;
    Ok(Json(json!({ "id": id })).into_response())
}

/// `GET /v1.0/configuration/{store}/{id}/unsubscribe`
pub(crate) async fn unsubscribe_configuration(
    State(sidecar): State<Arc<Sidecar>>,
    Path((store, id)): Path<(String, String)>,
) -> Result<Response, DaprError> {
    sidecar.unsubscribe_configuration(&store, &id)?;
    Ok(Json(json!({ "ok": true })).into_response())
}
