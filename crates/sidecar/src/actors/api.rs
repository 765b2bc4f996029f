//! The actors API over HTTP, as daprd serves it under
//! `/v1.0/actors/{type}/{id}/`:
//!
//! - `method/{method}` (any verb): calls the actor; its answer comes back
//!   with the app's status, headers and body;
//! - `state` (`POST`/`PUT`): a transaction, `[{"operation": "upsert",
//!   "request": {"key", "value", "metadata": {"ttlInSeconds"}}},
//!   {"operation": "delete", "request": {"key"}}]`; 204;
//! - `state/{key}` (`GET`): the value (204 when there is none);
//! - `reminders/{name}` (`POST`/`PUT` creates from `{dueTime, period, ttl,
//!   data, overwrite, failure_policy}`, `GET`, `DELETE`);
//! - `timers/{name}` (`POST`/`PUT` from `{dueTime, period, ttl, callback,
//!   data}`, `DELETE`).
//!
//! Peer sidecars hand calls for the actors this one hosts to
//! `PUT /_dapr-wasm/internal/actors/{type}/{id}/method/{method}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use service_kit::trace::TraceContext;

use super::{ActorCall, ActorStateOperation, ReminderRequest, TimerRequest};
use crate::Sidecar;
use crate::error::DaprError;
use crate::jobs::api::FailurePolicyBody;

/// Reads a request's whole body, within `--max-body-size`.
async fn whole_body(sidecar: &Sidecar, body: Body) -> Result<Bytes, DaprError> {
    axum::body::to_bytes(body, sidecar.config.max_body_size)
        .await
        .map_err(|_| DaprError::BodyTooLarge(sidecar.config.max_body_size))
}

/// The call a request makes: its method, body, headers and trace context.
async fn actor_call(
    sidecar: &Sidecar,
    (actor_type, actor_id, method): (String, String, String),
    request: Request,
) -> Result<ActorCall, DaprError> {
    let (parts, body) = request.into_parts();
    let body = whole_body(sidecar, body).await?;
    let mut call = ActorCall::new(
        &actor_type,
        &actor_id,
        &method,
        body,
        TraceContext::of(&parts.extensions, &parts.headers),
    )?;
    call.headers = crate::invoke::forwardable(&parts.headers);
    Ok(call)
}

/// `ANY /v1.0/actors/{type}/{id}/method/{*method}`
pub(crate) async fn invoke(
    State(sidecar): State<Arc<Sidecar>>,
    Path(path): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, DaprError> {
    let call = actor_call(&sidecar, path, request).await?;
    Ok(sidecar.call_actor(call).await?.into_response())
}

/// `PUT /_dapr-wasm/internal/actors/{type}/{id}/method/{*method}`: a call
/// from a peer sidecar for an actor this one hosts.
pub(crate) async fn invoke_from_peer(
    State(sidecar): State<Arc<Sidecar>>,
    Path(path): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let answer = match actor_call(&sidecar, path, request).await {
        Ok(call) => sidecar.call_local_actor(call).await,
        Err(err) => Err(err),
    };
    super::peer_answer(answer)
}

/// One operation of `POST /v1.0/actors/{type}/{id}/state`.
#[derive(Deserialize)]
struct OperationBody {
    operation: String,
    request: Option<OperationRequestBody>,
}

#[derive(Deserialize)]
struct OperationRequestBody {
    #[serde(default)]
    key: String,
    value: Option<Value>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// `POST`/`PUT /v1.0/actors/{type}/{id}/state`
pub(crate) async fn state_transaction(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let operations: Vec<OperationBody> =
        serde_json::from_slice(&body).map_err(|e| DaprError::MalformedRequest(e.to_string()))?;
    let mut parsed = Vec::with_capacity(operations.len());
    for operation in operations {
        let request = operation
            .request
            .ok_or_else(|| DaprError::ActorStateTransaction("request data is empty".into()))?;
        parsed.push(match operation.operation.as_str() {
            "upsert" => ActorStateOperation::Upsert {
                key: request.key,
                value: request
                    .value
                    .unwrap_or(Value::Null)
                    .to_string()
                    .into_bytes(),
                metadata: request.metadata,
            },
            "delete" => ActorStateOperation::Delete { key: request.key },
            "" => {
                return Err(DaprError::ActorStateTransaction(
                    "operation is empty".into(),
                ));
            }
            other => {
                return Err(DaprError::ActorStateTransaction(format!(
                    "operation type {other} not supported"
                )));
            }
        });
    }
    sidecar
        .transact_actor_state(&actor_type, &actor_id, parsed)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/actors/{type}/{id}/state/{key}`
pub(crate) async fn state_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, key)): Path<(String, String, String)>,
) -> Result<Response, DaprError> {
    let item = sidecar
        .get_actor_state(&actor_type, &actor_id, &key)
        .await?;
    let Some(item) = item.filter(|item| !item.value.is_empty()) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = Response::new(Body::from(item.value.clone()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in item.metadata() {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(format!("metadata.{name}")),
            HeaderValue::try_from(value),
        ) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

/// The body of `POST /v1.0/actors/{type}/{id}/reminders/{name}` and
/// `…/timers/{name}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ScheduleBody {
    // Options: the SDKs send `null` for what is not set.
    due_time: Option<String>,
    period: Option<String>,
    ttl: Option<String>,
    callback: Option<String>,
    data: Option<Value>,
    overwrite: Option<bool>,
    #[serde(alias = "failure_policy")]
    failure_policy: Option<FailurePolicyBody>,
}

fn schedule_body(body: &[u8]) -> Result<ScheduleBody, DaprError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DaprError::MalformedRequest("EOF".into()));
    }
    serde_json::from_slice(body).map_err(|e| DaprError::MalformedRequest(e.to_string()))
}

/// `POST`/`PUT /v1.0/actors/{type}/{id}/reminders/{name}`
pub(crate) async fn reminder_create(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let body = schedule_body(&body)?;
    let reminder = ReminderRequest {
        actor_type,
        actor_id,
        name,
        due_time: body.due_time.unwrap_or_default(),
        period: body.period.unwrap_or_default(),
        ttl: body.ttl.unwrap_or_default(),
        data: body.data,
        overwrite: body.overwrite,
        failure_policy: body
            .failure_policy
            .map(FailurePolicyBody::policy)
            .transpose()?,
    };
    sidecar.register_actor_reminder(reminder).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/actors/{type}/{id}/reminders/{name}`
pub(crate) async fn reminder_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, DaprError> {
    let reminder = sidecar
        .get_actor_reminder(&actor_type, &actor_id, &name)
        .await?;
    let mut out = json!({ "actorID": reminder.actor_id, "actorType": reminder.actor_type });
    if let Some(data) = reminder.data {
        out["data"] = data;
    }
    for (field, value) in [
        ("dueTime", reminder.due_time),
        ("period", reminder.period),
        ("ttl", reminder.ttl),
    ] {
        if !value.is_empty() {
            out[field] = json!(value);
        }
    }
    Ok(Json(out))
}

/// `DELETE /v1.0/actors/{type}/{id}/reminders/{name}`
pub(crate) async fn reminder_delete(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> Result<StatusCode, DaprError> {
    sidecar
        .unregister_actor_reminders(&actor_type, Some(&actor_id), Some(&name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST`/`PUT /v1.0/actors/{type}/{id}/timers/{name}`
pub(crate) async fn timer_create(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, DaprError> {
    let body = schedule_body(&body)?;
    sidecar.register_actor_timer(TimerRequest {
        actor_type,
        actor_id,
        name,
        due_time: body.due_time.unwrap_or_default(),
        period: body.period.unwrap_or_default(),
        ttl: body.ttl.unwrap_or_default(),
        callback: body.callback.unwrap_or_default(),
        data: body.data,
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1.0/actors/{type}/{id}/timers/{name}`
pub(crate) async fn timer_delete(
    State(sidecar): State<Arc<Sidecar>>,
    Path((actor_type, actor_id, name)): Path<(String, String, String)>,
) -> StatusCode {
    sidecar.unregister_actor_timer(&actor_type, &actor_id, &name);
    StatusCode::NO_CONTENT
}
