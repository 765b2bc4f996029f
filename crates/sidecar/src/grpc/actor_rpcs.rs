//! The actors' and the jobs' RPCs that are more than one call: protobuf in
//! and out of [`crate::actors`] and [`crate::jobs`], as daprd's gRPC API
//! gives them.

use dapr::dapr::proto::runtime::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{DaprApi, grpc_trace};
use crate::actors::{ActorCall, ActorStateOperation, ReminderRequest, TimerRequest};

/// `google.protobuf.BytesValue`'s type URL: a reminder's data, as daprd
/// gives it back.
const BYTES_VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.BytesValue";

/// Bytes an SDK sent as data: their JSON, or (not JSON) a JSON string of
/// them; `None` when empty.
fn data_json(data: &[u8]) -> Option<serde_json::Value> {
    if data.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(data).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(data).into_owned())
        }),
    )
}

/// JSON data as a `BytesValue` `Any`.
fn data_any(data: &serde_json::Value) -> prost_types::Any {
    prost_types::Any {
        type_url: BYTES_VALUE_TYPE_URL.into(),
        value: data.to_string().into_bytes().encode_to_vec(),
    }
}

/// A stored reminder as the protos write one.
fn reminder_pb(reminder: crate::actors::StoredReminder) -> pb::ActorReminder {
    let some = |s: String| (!s.is_empty()).then_some(s);
    pb::ActorReminder {
        data: reminder.data.as_ref().map(data_any),
        actor_type: reminder.actor_type,
        actor_id: reminder.actor_id,
        due_time: some(reminder.due_time),
        period: some(reminder.period),
        ttl: some(reminder.ttl),
    }
}

pub(super) async fn invoke_actor(
    api: &DaprApi,
    request: Request<pb::InvokeActorRequest>,
) -> Result<Response<pb::InvokeActorResponse>, Status> {
    let trace = grpc_trace(request.metadata().as_ref(), request.extensions());
    let request = request.into_inner();
    let mut call = ActorCall::new(
        &request.actor_type,
        &request.actor_id,
        &request.method,
        request.data.into(),
        trace,
    )?;
    for (name, value) in &request.metadata {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            axum::http::HeaderValue::try_from(value.as_str()),
        ) {
            call.headers.insert(name, value);
        }
    }
    // An actor's error (the app's error header) is data too, as daprd
    // gives it.
    let answer = api.sidecar.call_actor(call).await?;
    Ok(Response::new(pb::InvokeActorResponse {
        data: answer.body.to_vec(),
    }))
}

pub(super) async fn get_actor_state(
    api: &DaprApi,
    request: Request<pb::GetActorStateRequest>,
) -> Result<Response<pb::GetActorStateResponse>, Status> {
    let request = request.into_inner();
    let item = api
        .sidecar
        .get_actor_state(&request.actor_type, &request.actor_id, &request.key)
        .await?;
    Ok(Response::new(match item {
        Some(item) => pb::GetActorStateResponse {
            metadata: item.metadata(),
            data: item.value,
        },
        None => pb::GetActorStateResponse::default(),
    }))
}

pub(super) async fn execute_actor_state_transaction(
    api: &DaprApi,
    request: Request<pb::ExecuteActorStateTransactionRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let mut operations = Vec::with_capacity(request.operations.len());
    for operation in request.operations {
        operations.push(match operation.operation_type.as_str() {
            "upsert" => ActorStateOperation::Upsert {
                key: operation.key,
                value: operation.value.map(|v| v.value).unwrap_or_default(),
                metadata: operation.metadata,
            },
            "delete" => ActorStateOperation::Delete { key: operation.key },
            other => {
                return Err(Status::unimplemented(format!(
                    "operation type {other} not supported"
                )));
            }
        });
    }
    api.sidecar
        .transact_actor_state(&request.actor_type, &request.actor_id, operations)
        .await?;
    Ok(Response::new(()))
}

pub(super) async fn register_actor_timer(
    api: &DaprApi,
    request: Request<pb::RegisterActorTimerRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    api.sidecar.register_actor_timer(TimerRequest {
        actor_type: request.actor_type,
        actor_id: request.actor_id,
        name: request.name,
        due_time: request.due_time,
        period: request.period,
        ttl: request.ttl,
        callback: request.callback,
        data: data_json(&request.data),
    })?;
    Ok(Response::new(()))
}

pub(super) async fn unregister_actor_timer(
    api: &DaprApi,
    request: Request<pb::UnregisterActorTimerRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    api.sidecar
        .unregister_actor_timer(&request.actor_type, &request.actor_id, &request.name);
    Ok(Response::new(()))
}

pub(super) async fn register_actor_reminder(
    api: &DaprApi,
    request: Request<pb::RegisterActorReminderRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    api.sidecar
        .register_actor_reminder(ReminderRequest {
            actor_type: request.actor_type,
            actor_id: request.actor_id,
            name: request.name,
            due_time: request.due_time,
            period: request.period,
            ttl: request.ttl,
            data: data_json(&request.data),
            overwrite: request.overwrite,
            failure_policy: request.failure_policy,
        })
        .await?;
    Ok(Response::new(()))
}

pub(super) async fn unregister_actor_reminder(
    api: &DaprApi,
    request: Request<pb::UnregisterActorReminderRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    api.sidecar
        .unregister_actor_reminders(
            &request.actor_type,
            Some(&request.actor_id),
            Some(&request.name),
        )
        .await?;
    Ok(Response::new(()))
}

pub(super) async fn unregister_actor_reminders_by_type(
    api: &DaprApi,
    request: Request<pb::UnregisterActorRemindersByTypeRequest>,
) -> Result<Response<pb::UnregisterActorRemindersByTypeResponse>, Status> {
    let request = request.into_inner();
    api.sidecar
        .unregister_actor_reminders(&request.actor_type, request.actor_id.as_deref(), None)
        .await?;
    Ok(Response::new(pb::UnregisterActorRemindersByTypeResponse {}))
}

pub(super) async fn get_actor_reminder(
    api: &DaprApi,
    request: Request<pb::GetActorReminderRequest>,
) -> Result<Response<pb::GetActorReminderResponse>, Status> {
    let request = request.into_inner();
    let reminder = api
        .sidecar
        .get_actor_reminder(&request.actor_type, &request.actor_id, &request.name)
        .await?;
    let reminder = reminder_pb(reminder);
    Ok(Response::new(pb::GetActorReminderResponse {
        actor_type: reminder.actor_type,
        actor_id: reminder.actor_id,
        due_time: reminder.due_time,
        period: reminder.period,
        data: reminder.data,
        ttl: reminder.ttl,
    }))
}

pub(super) async fn list_actor_reminders(
    api: &DaprApi,
    request: Request<pb::ListActorRemindersRequest>,
) -> Result<Response<pb::ListActorRemindersResponse>, Status> {
    let request = request.into_inner();
    let reminders = api
        .sidecar
        .list_actor_reminders(&request.actor_type, request.actor_id.as_deref())
        .await?;
    let reminders = reminders
        .into_iter()
        .map(|reminder| pb::NamedActorReminder {
            name: reminder.name.clone(),
            reminder: Some(reminder_pb(reminder)),
        })
        .collect();
    Ok(Response::new(pb::ListActorRemindersResponse { reminders }))
}

pub(super) async fn delete_jobs_by_prefix(
    api: &DaprApi,
    request: Request<pb::DeleteJobsByPrefixRequest>,
) -> Result<Response<pb::DeleteJobsByPrefixResponse>, Status> {
    let prefix = request.into_inner().name_prefix.unwrap_or_default();
    api.sidecar.delete_jobs(&prefix, true).await?;
    Ok(Response::new(pb::DeleteJobsByPrefixResponse {}))
}

pub(super) async fn delete_jobs_by_prefix_alpha1(
    api: &DaprApi,
    request: Request<pb::DeleteJobsByPrefixRequestAlpha1>,
) -> Result<Response<pb::DeleteJobsByPrefixResponseAlpha1>, Status> {
    let prefix = request.into_inner().name_prefix.unwrap_or_default();
    api.sidecar.delete_jobs(&prefix, true).await?;
    Ok(Response::new(pb::DeleteJobsByPrefixResponseAlpha1 {}))
}

pub(super) async fn list_jobs(
    api: &DaprApi,
    _request: Request<pb::ListJobsRequest>,
) -> Result<Response<pb::ListJobsResponse>, Status> {
    let jobs = api.sidecar.list_jobs().await?;
    Ok(Response::new(pb::ListJobsResponse { jobs }))
}

pub(super) async fn list_jobs_alpha1(
    api: &DaprApi,
    _request: Request<pb::ListJobsRequestAlpha1>,
) -> Result<Response<pb::ListJobsResponseAlpha1>, Status> {
    let jobs = api.sidecar.list_jobs().await?;
    Ok(Response::new(pb::ListJobsResponseAlpha1 { jobs }))
}
