//! Dapr's workflow API, for apps that manage workflows without a workflow
//! SDK's client: over HTTP under `/v1.0/workflows/dapr/` (and the
//! `v1.0-beta1` and `v1.0-alpha1` paths), over gRPC as
//! `StartWorkflowBeta1` and its kin (and their `Alpha1` names). Both call
//! the functions here, which take and give daprd's protobuf messages and
//! check requests as daprd does:
//!
//! | HTTP | gRPC | answers |
//! |---|---|---|
//! | `POST {name}/start?instanceID=` (body: the input) | `StartWorkflowBeta1` | 202 `{"instanceID"}` |
//! | `GET {instanceID}` | `GetWorkflowBeta1` | 200 `{"instanceID", "workflowName", "createdAt", "lastUpdatedAt", "runtimeStatus", "properties"}` |
//! | `POST {instanceID}/raiseEvent/{eventName}` (body: the data) | `RaiseEventWorkflowBeta1` | 202 |
//! | `POST {instanceID}/pause`, `.../resume` | `PauseWorkflowBeta1`, `ResumeWorkflowBeta1` | 202 |
//! | `POST {instanceID}/terminate` | `TerminateWorkflowBeta1` | 202 (its children too) |
//! | `POST {instanceID}/purge` | `PurgeWorkflowBeta1` | 202 (an instance that has ended, and its children) |
//!
//! The component segment (`dapr`) is taken as daprd takes it: any name.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dapr::dapr::proto::runtime::v1 as pb;
use serde_json::json;

use super::WorkflowError;
use super::engine::PurgeTarget;
use super::instance::{NewInstance, status_name};
use crate::Sidecar;
use crate::error::DaprError;

/// daprd's bound on a new instance id's length.
const MAX_INSTANCE_ID: usize = 64;

/// Checks an instance id as daprd does: present, and for a new instance
/// at most 64 letters, digits, `-` and `_`.
fn check_instance_id(id: &str, creating: bool) -> Result<(), DaprError> {
    if id.is_empty() {
        return Err(DaprError::WorkflowInstanceIdMissing);
    }
    if creating {
        if id.len() > MAX_INSTANCE_ID {
            return Err(DaprError::WorkflowInstanceIdTooLong(MAX_INSTANCE_ID));
        }
        if !id
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return Err(DaprError::WorkflowInstanceIdInvalid(id.to_string()));
        }
    }
    Ok(())
}

/// An engine error as the operation's Dapr error (`failed` builds it from
/// the reason); a missing actor state store is daprd's
/// `ERR_ACTOR_RUNTIME_NOT_FOUND`, a store's own error passes as it is.
fn dapr_error(error: WorkflowError, failed: impl FnOnce(String) -> DaprError) -> DaprError {
    match error {
        WorkflowError::NoStateStore => DaprError::ActorRuntimeNotFound,
        other => failed(other.to_string()),
    }
}

/// Like [`dapr_error`], but a missing instance is `ERR_INSTANCE_ID_NOT_FOUND`.
fn dapr_error_or_missing(
    error: WorkflowError,
    failed: impl FnOnce(String) -> DaprError,
) -> DaprError {
    match error {
        WorkflowError::NotFound(id) => DaprError::WorkflowNotFound(id),
        other => dapr_error(other, failed),
    }
}

/// A payload as the engine keeps it: text, `None` when empty.
fn payload(bytes: Vec<u8>) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// `StartWorkflow`: a new instance (a random id when none is given);
/// `dapr.workflow.start_time` (RFC 3339) in the options schedules it.
pub(crate) async fn start(
    sidecar: &Arc<Sidecar>,
    request: pb::StartWorkflowRequest,
) -> Result<pb::StartWorkflowResponse, DaprError> {
    let instance_id = if request.instance_id.is_empty() {
        crate::ids::new_uuid()
    } else {
        request.instance_id
    };
    check_instance_id(&instance_id, true)?;
    if request.workflow_name.is_empty() {
        return Err(DaprError::WorkflowNameMissing);
    }
    let name = request.workflow_name;
    let failed = |reason| DaprError::WorkflowStart {
        name: name.clone(),
        reason,
    };
    let scheduled_start = match request.options.get("dapr.workflow.start_time") {
        Some(at) => Some(
            chrono::DateTime::parse_from_rfc3339(at)
                .map(|at| prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
                })
                .map_err(|_| {
                    failed(
                        r#"start times must be in RFC3339 format (e.g. "2009-11-10T23:00:00Z")"#
                            .into(),
                    )
                })?,
        ),
        None => None,
    };
    let instance_id = sidecar
        .start_workflow(NewInstance {
            instance_id,
            name: name.clone(),
            input: Some(String::from_utf8_lossy(&request.input).into_owned()),
            scheduled_start,
            parent: None,
        })
        .await
        .map_err(|e| dapr_error(e, failed))?;
    Ok(pb::StartWorkflowResponse { instance_id })
}

/// `GetWorkflow`: the instance's status and, as `properties`, its input,
/// output, custom status or failure. For an id with no instance, daprd
/// answers gRPC with only the id, and HTTP with `ERR_INSTANCE_ID_NOT_FOUND`.
pub(crate) async fn get(
    sidecar: &Arc<Sidecar>,
    request: pb::GetWorkflowRequest,
) -> Result<pb::GetWorkflowResponse, DaprError> {
    let id = request.instance_id;
    check_instance_id(&id, false)?;
    let instance = sidecar.workflow_instance(&id).await.map_err(|e| {
        dapr_error(e, |reason| DaprError::WorkflowGet {
            id: id.clone(),
            reason,
        })
    })?;
    let Some(instance) = instance else {
        return Ok(pb::GetWorkflowResponse {
            instance_id: id,
            ..Default::default()
        });
    };
    let mut properties = HashMap::new();
    if let Some(status) = instance.custom_status {
        properties.insert("dapr.workflow.custom_status".to_string(), status);
    }
    if let Some(input) = instance.input {
        properties.insert("dapr.workflow.input".to_string(), input);
    }
    match instance.failure {
        Some(failure) => {
            properties.insert(
                "dapr.workflow.failure.error_type".to_string(),
                failure.error_type,
            );
            properties.insert(
                "dapr.workflow.failure.error_message".to_string(),
                failure.error_message,
            );
            if let Some(trace) = failure.stack_trace {
                properties.insert("dapr.workflow.failure.stack_trace".to_string(), trace);
            }
        }
        None => {
            if let Some(output) = instance.output {
                properties.insert("dapr.workflow.output".to_string(), output);
            }
        }
    }
    Ok(pb::GetWorkflowResponse {
        instance_id: id,
        workflow_name: instance.name,
        created_at: instance.created,
        last_updated_at: instance.last_updated,
        runtime_status: status_name(instance.status).to_string(),
        properties,
    })
}

/// `TerminateWorkflow`: the instance and its children.
pub(crate) async fn terminate(sidecar: &Arc<Sidecar>, id: String) -> Result<(), DaprError> {
    check_instance_id(&id, false)?;
    sidecar
        .terminate_workflow(&id, None, true)
        .await
        .map_err(|e| {
            dapr_error_or_missing(e, |reason| DaprError::WorkflowTerminate {
                id: id.clone(),
                reason,
            })
        })
}

/// `RaiseEventWorkflow`.
pub(crate) async fn raise_event(
    sidecar: &Arc<Sidecar>,
    request: pb::RaiseEventWorkflowRequest,
) -> Result<(), DaprError> {
    let id = request.instance_id;
    check_instance_id(&id, false)?;
    if request.event_name.is_empty() {
        return Err(DaprError::WorkflowEventNameMissing);
    }
    sidecar
        .raise_workflow_event(&id, &request.event_name, payload(request.event_data))
        .await
        .map_err(|e| {
            dapr_error(e, |reason| DaprError::WorkflowRaiseEvent {
                id: id.clone(),
                reason,
            })
        })
}

/// `PauseWorkflow` (`pause`) or `ResumeWorkflow`.
pub(crate) async fn pause(
    sidecar: &Arc<Sidecar>,
    id: String,
    pause: bool,
) -> Result<(), DaprError> {
    check_instance_id(&id, false)?;
    sidecar
        .suspend_workflow(&id, pause, None)
        .await
        .map_err(|e| {
            dapr_error(e, |reason| {
                let id = id.clone();
                if pause {
                    DaprError::WorkflowPause { id, reason }
                } else {
                    DaprError::WorkflowResume { id, reason }
                }
            })
        })
}

/// `PurgeWorkflow`: an instance that has ended, and its children.
pub(crate) async fn purge(sidecar: &Arc<Sidecar>, id: String) -> Result<(), DaprError> {
    check_instance_id(&id, false)?;
    sidecar
        .purge_workflows(PurgeTarget::One(id.clone()), true, false)
        .await
        .map(|_| ())
        .map_err(|e| {
            dapr_error_or_missing(e, |reason| DaprError::WorkflowPurge {
                id: id.clone(),
                reason,
            })
        })
}

/// `POST /v1.0/workflows/{component}/{name}/start?instanceID=`
pub(crate) async fn http_start(
    State(sidecar): State<Arc<Sidecar>>,
    Path((component, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    input: Bytes,
) -> Result<Response, DaprError> {
    let started = start(
        &sidecar,
        pb::StartWorkflowRequest {
            instance_id: query.get("instanceID").cloned().unwrap_or_default(),
            workflow_component: component,
            workflow_name: name,
            options: HashMap::new(),
            input: input.to_vec(),
        },
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "instanceID": started.instance_id })),
    )
        .into_response())
}

/// `GET /v1.0/workflows/{component}/{instanceID}`
pub(crate) async fn http_get(
    State(sidecar): State<Arc<Sidecar>>,
    Path((component, id)): Path<(String, String)>,
) -> Result<Response, DaprError> {
    let found = get(
        &sidecar,
        pb::GetWorkflowRequest {
            instance_id: id.clone(),
            workflow_component: component,
        },
    )
    .await?;
    if found.workflow_name.is_empty() {
        return Err(DaprError::WorkflowNotFound(id));
    }
    let time = |at: Option<prost_types::Timestamp>| {
        at.and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    };
    Ok(Json(json!({
        "instanceID": found.instance_id,
        "workflowName": found.workflow_name,
        "createdAt": time(found.created_at),
        "lastUpdatedAt": time(found.last_updated_at),
        "runtimeStatus": found.runtime_status,
        "properties": found.properties,
    }))
    .into_response())
}

/// `POST /v1.0/workflows/{component}/{instanceID}/raiseEvent/{eventName}`
pub(crate) async fn http_raise_event(
    State(sidecar): State<Arc<Sidecar>>,
    Path((component, id, event)): Path<(String, String, String)>,
    data: Bytes,
) -> Result<StatusCode, DaprError> {
    raise_event(
        &sidecar,
        pb::RaiseEventWorkflowRequest {
            instance_id: id,
            workflow_component: component,
            event_name: event,
            event_data: data.to_vec(),
        },
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1.0/workflows/{component}/{instanceID}/{operation}`: `pause`,
/// `resume`, `terminate` or `purge`.
pub(crate) async fn http_operation(
    State(sidecar): State<Arc<Sidecar>>,
    Path((_component, id, operation)): Path<(String, String, String)>,
) -> Result<StatusCode, DaprError> {
    match operation.as_str() {
        "pause" => pause(&sidecar, id, true).await?,
        "resume" => pause(&sidecar, id, false).await?,
        "terminate" => terminate(&sidecar, id).await?,
        "purge" => purge(&sidecar, id).await?,
        _ => {
            return Err(DaprError::NotFound(format!(
                "workflow operation {operation}"
            )));
        }
    }
    Ok(StatusCode::ACCEPTED)
}
