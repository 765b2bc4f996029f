//! Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`), the transport the
//! official SDKs use by default, on `--dapr-grpc-port` (50001).
//!
//! Each RPC below only translates protobuf to and from the building blocks
//! the HTTP API uses too ([`crate::state::ops`], the secrets, metadata and
//! invocation methods of [`Sidecar`]); errors are the same
//! [`DaprError`]s, as gRPC statuses with an `ErrorInfo`
//! ([`DaprError::to_status`]).
//!
//! | RPC | building block |
//! |---|---|
//! | `InvokeService` | service invocation of an HTTP app (verb, querystring, content type, data; metadata as headers and back, [`headers`]) or a gRPC app (its failure as its own status, its trailers as trailers: [`app_status`]) |
//! | `GetState`, `GetBulkState`, `SaveState`, `DeleteState`, `DeleteBulkState`, `ExecuteStateTransaction` | state (etags, concurrency, `ttlInSeconds`) |
//! | `GetSecret`, `GetBulkSecret` | secrets |
//! | `GetMetadata`, `SetMetadata` | metadata |
//! | `Shutdown` | stops the sidecar |
//! | `TryLockAlpha1`, `UnlockAlpha1` | distributed lock ([`crate::lock`]) |
//! | `GetConfiguration`, `SubscribeConfiguration`, `UnsubscribeConfiguration` (and their `Alpha1` names) | configuration ([`crate::configuration`]) |
//! | `PublishEvent`, `BulkPublishEvent` (and its `Alpha1` name), `SubscribeTopicEventsAlpha1` | pub/sub ([`crate::pubsub::streaming`] for the streaming subscription) |
//! | `InvokeBinding` | output bindings ([`crate::bindings`]) |
//! | `ScheduleJob`, `GetJob`, `DeleteJob`, `DeleteJobsByPrefix`, `ListJobs` (and their `Alpha1` names) | jobs ([`crate::jobs`]) |
//! | `StartWorkflowBeta1`, `GetWorkflowBeta1`, `RaiseEventWorkflowBeta1`, `PauseWorkflowBeta1`, `ResumeWorkflowBeta1`, `TerminateWorkflowBeta1`, `PurgeWorkflowBeta1` (and their `Alpha1` names) | workflows ([`crate::workflows::api`], [`workflow_rpcs`]) |
//! | `InvokeActor`, `GetActorState`, `ExecuteActorStateTransaction`, `RegisterActorTimer`, `UnregisterActorTimer`, `RegisterActorReminder`, `UnregisterActorReminder`, `UnregisterActorRemindersByType`, `GetActorReminder`, `ListActorReminders` | actors ([`crate::actors`], [`actor_rpcs`]) |
//!
//! Every other RPC answers `UNIMPLEMENTED` naming itself ([`rpcs`], generated
//! from the `dapr` crate's server trait by `scripts/gen-grpc-rpcs.py`).
//!
//! tonic's generated server serves every RPC but one: `InvokeService`, the
//! hot path of service invocation, is routed to [`unary`], which reads and
//! answers its one message without tonic's streams. Both call the same
//! [`invoke_app`], and give the same statuses for bad input.
//!
//! Beside it, on the same port, `TaskHubSidecarService`: the Durable Task
//! protocol the workflow SDKs' workers and clients speak
//! ([`crate::workflows::taskhub`]).
//!
//! Calls for any other gRPC service that carry `dapr-app-id` metadata are
//! proxied to that app ([`proxy`]).
//!
//! The listener's connections send what the server writes in one turn of
//! a connection as one segment ([`coalesce`]), so that a unary answer's
//! HEADERS, DATA and trailers go out in one write.
//!
//! With `DAPR_API_TOKEN` set, every call needs the `dapr-api-token`
//! metadata ([`check_grpc_api_token`]: tonic's interceptor, and the first
//! step of the fast path), else `UNAUTHENTICATED`. Messages over
//! `--max-body-size` (plus [`MESSAGE_OVERHEAD`] for the framing) get
//! `RESOURCE_EXHAUSTED` before they reach an RPC.

mod actor_rpcs;
pub(crate) mod app_status;
pub mod coalesce;
pub(crate) mod headers;
mod proxy;
mod rpcs;
mod status_json;
mod unary;
mod workflow_rpcs;

use actor_rpcs::{
    delete_jobs_by_prefix, delete_jobs_by_prefix_alpha1, execute_actor_state_transaction,
    get_actor_reminder, get_actor_state, invoke_actor, list_actor_reminders, list_jobs,
    list_jobs_alpha1, register_actor_reminder, register_actor_timer, unregister_actor_reminder,
    unregister_actor_reminders_by_type, unregister_actor_timer,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use workflow_rpcs::{
    get_workflow_beta1, pause_workflow_beta1, purge_workflow_beta1, raise_event_workflow_beta1,
    resume_workflow_beta1, start_workflow_beta1, terminate_workflow_beta1,
};

use axum::body::Body;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::common::v1::state_options::StateConcurrency;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_server::DaprServer;
use service_kit::trace::{TraceContext, trace_request};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::Sidecar;
use crate::configuration::{Items, Subscriber};
use crate::error::DaprError;
use crate::invoke::Origin;
use crate::lock::LockRequest;
use crate::pubsub::ops::{BulkEntry, Publication};
use crate::state::Concurrency;
use crate::state::ops::parse_ttl;
use crate::state::{DeleteRequest, Operation, SetRequest};

/// What a gRPC message may carry beyond `--max-body-size`: its protobuf
/// framing (keys, content type, method), so that a body the HTTP API
/// accepts is accepted over gRPC too.
pub const MESSAGE_OVERHEAD: usize = 64 << 10;

/// The path of `InvokeService`, which [`unary`] serves rather than tonic.
const INVOKE_SERVICE_PATH: &str = "/dapr.proto.runtime.v1.Dapr/InvokeService";

/// The stream type of the streaming RPCs this sidecar does not serve.
type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// The `Dapr` gRPC service over one sidecar.
pub struct DaprApi {
    sidecar: Arc<Sidecar>,
}

/// The status of an RPC this sidecar does not serve.
fn unimplemented(rpc: &'static str) -> Status {
    DaprError::Unimplemented(rpc).to_status()
}

/// Serves the gRPC API of `sidecar` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    sidecar: Arc<Sidecar>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let max_message = sidecar
        .config
        .max_body_size
        .saturating_add(MESSAGE_OVERHEAD);
    let token = sidecar.config.api_token.clone();
    let service = DaprServer::new(DaprApi {
        sidecar: sidecar.clone(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    let checks_token = move |request: Request<()>| {
        check_grpc_api_token(token.as_deref(), request.metadata().as_ref()).map(|()| request)
    };
    let service =
        tonic::service::interceptor::InterceptedService::new(service, checks_token.clone());
    // The Durable Task protocol of the workflow SDKs, beside it, as daprd
    // serves it.
    let workflows = crate::workflows::taskhub::TaskHub::server(sidecar.clone())
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let workflows = tonic::service::interceptor::InterceptedService::new(workflows, checks_token);
    // Dapr's own service, the workflows', and every other path to the proxy.
    let mut routes = tonic::service::Routes::new(service).add_service(workflows);
    let router = std::mem::take(routes.axum_router_mut());
    let measured = sidecar.clone();
    let tracer = sidecar.tracer().clone();
    let invoking = sidecar.clone();
    *routes.axum_router_mut() = router
        // Service invocation's hot path, on the unary fast path.
        .route(
            INVOKE_SERVICE_PATH,
            axum::routing::any(move |request| invoke_service_fast(invoking.clone(), request)),
        )
        .fallback(move |request| proxy::proxy_call(sidecar, request))
        .layer(axum::middleware::from_fn_with_state(
            measured,
            crate::metrics::record_grpc,
        ))
        .layer(axum::middleware::from_fn_with_state(tracer, trace_request));
    tonic::transport::Server::builder()
        // The same bound on a request's head as the HTTP listener's.
        .http2_max_header_list_size(Some(service_kit::serve::MAX_HEADER_BYTES as u32))
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            // No Nagle delay on small answers, as on the HTTP listener, and
            // each answer's frames in one segment (see coalesce).
            tokio_stream::StreamExt::map(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                |accepted| accepted.map(coalesce::CoalescingStream::new),
            ),
            shutdown,
        )
        .await
}

/// tonic answers a message over the size limit with `OUT_OF_RANGE`; daprd
/// (grpc-go) with `RESOURCE_EXHAUSTED`, which clients treat differently.
/// This rewrites that one status, in the trailers or in a trailers-only
/// answer's headers, to daprd's.
fn oversized_is_resource_exhausted(
    response: axum::http::Response<tonic::body::Body>,
) -> axum::http::Response<tonic::body::Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    rewrite_oversized_status(&mut parts.headers);
    let body = body.map_frame(|frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            rewrite_oversized_status(&mut trailers);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    });
    axum::http::Response::from_parts(parts, tonic::body::Body::new(body))
}

fn rewrite_oversized_status(headers: &mut axum::http::HeaderMap) {
    let oversized = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // grpc-message is percent-encoded.
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if oversized {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
    }
}

/// With `DAPR_API_TOKEN` set, a call needs it as `dapr-api-token` metadata.
fn check_grpc_api_token(
    expected: Option<&str>,
    metadata: &axum::http::HeaderMap,
) -> Result<(), Status> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = metadata.get("dapr-api-token").and_then(|v| v.to_str().ok());
    if given == Some(expected) {
        Ok(())
    } else {
        Err(DaprError::Unauthorized.to_status())
    }
}

/// Dapr's gRPC concurrency: unspecified is last-write.
fn concurrency(options: Option<common::StateOptions>) -> Concurrency {
    match options.map(|o| o.concurrency()) {
        Some(StateConcurrency::ConcurrencyFirstWrite) => Concurrency::FirstWrite,
        _ => Concurrency::LastWrite,
    }
}

fn state_write(item: common::StateItem) -> Result<SetRequest, DaprError> {
    let ttl_seconds = match item.metadata.get("ttlInSeconds") {
        Some(text) => parse_ttl(text)?,
        None => None,
    };
    Ok(SetRequest {
        concurrency: concurrency(item.options),
        etag: item.etag.map(|e| e.value),
        key: item.key,
        value: item.value,
        ttl_seconds,
    })
}

fn state_removal(item: common::StateItem) -> DeleteRequest {
    DeleteRequest {
        concurrency: concurrency(item.options),
        etag: item.etag.map(|e| e.value),
        key: item.key,
    }
}

async fn invoke_service(
    api: &DaprApi,
    request: Request<pb::InvokeServiceRequest>,
) -> Result<Response<common::InvokeResponse>, Status> {
    let peer = request.remote_addr();
    let trace = grpc_trace(request.metadata().as_ref(), request.extensions());
    let metadata = request.metadata().as_ref().clone();
    // (tonic's request keeps no `:authority`: this path passes none. The
    // server routes `InvokeService` to the fast path, which does.)
    let (answer, mut metadata, trailers) = invoke_app(
        &api.sidecar,
        peer,
        trace,
        &metadata,
        None,
        request.into_inner(),
    )
    .await?;
    // (tonic sends no trailers of a handler's: they go with the metadata.)
    metadata.extend(trailers);
    let mut answer = Response::new(answer);
    *answer.metadata_mut() = tonic::metadata::MetadataMap::from_headers(metadata);
    Ok(answer)
}

/// `InvokeService` on the unary fast path ([`unary`]): the same call as
/// [`invoke_service`], and the same checks as tonic's (the API token, the
/// message's size), without tonic's generic machinery.
async fn invoke_service_fast(
    sidecar: Arc<Sidecar>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let answered = async {
        check_grpc_api_token(sidecar.config.api_token.as_deref(), &parts.headers)?;
        let limit = sidecar
            .config
            .max_body_size
            .saturating_add(MESSAGE_OVERHEAD);
        let message = unary::read_message(&parts.headers, body, limit).await?;
        let peer = parts
            .extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        let trace = grpc_trace(&parts.headers, &parts.extensions);
        let authority = parts.uri.authority().map(|a| a.as_str());
        let (answer, metadata, trailers) =
            invoke_app(&sidecar, peer, trace, &parts.headers, authority, message).await?;
        unary::answer(&answer, metadata, trailers)
    };
    answered.await.unwrap_or_else(unary::refusal)
}

/// Calls the app `request` names, as the HTTP API's invoke does, with the
/// call's `metadata` (and its `:authority`, as `dapr-authority`) as
/// headers, and gives its answer with the app's headers as the response
/// metadata ([`headers`]: as daprd passes them), and a gRPC app's answer
/// trailers as the trailers ([`app_status::GrpcAppTrailers`]).
async fn invoke_app(
    sidecar: &Sidecar,
    peer: Option<SocketAddr>,
    trace: TraceContext,
    metadata: &axum::http::HeaderMap,
    authority: Option<&str>,
    request: pb::InvokeServiceRequest,
) -> Result<
    (
        common::InvokeResponse,
        axum::http::HeaderMap,
        axum::http::HeaderMap,
    ),
    Status,
> {
    let peer = peer.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let pb::InvokeServiceRequest { id, message } = request;
    let message = message
        .ok_or_else(|| DaprError::MalformedRequest("InvokeService needs a message".into()))?;
    let extension = message.http_extension.unwrap_or_default();
    let verb = match extension.verb() {
        Verb::None => "POST",
        other => other.as_str_name(),
    };
    let query = if extension.querystring.is_empty() {
        String::new()
    } else {
        format!("?{}", extension.querystring.trim_start_matches('?'))
    };
    let method_path = format!("/{}", message.method.trim_start_matches('/'));
    let mut http = axum::http::Request::builder()
        .method(verb)
        .uri(format!("{method_path}{query}"));
    if let Some(headers) = http.headers_mut() {
        *headers = headers::metadata_to_headers(metadata);
        if let Some(value) = authority.and_then(|a| axum::http::HeaderValue::from_str(a).ok()) {
            headers.insert(headers::AUTHORITY, value);
        }
    }
    if !message.content_type.is_empty() {
        http = http.header(axum::http::header::CONTENT_TYPE, &message.content_type);
    }
    http = http.extension(trace);
    let body = message.data.map(|any| any.value).unwrap_or_default();
    let http = http
        .body(Body::from(body))
        .map_err(|e| DaprError::MalformedRequest(format!("invalid method or querystring: {e}")))?;
    let response = sidecar
        .invoke(&id, &method_path, peer, Origin::Client, http)
        .await?;
    if let Some(app_status::GrpcAppStatus(failure)) = response.extensions().get() {
        // A gRPC app's own status, as daprd passes it on, with its metadata.
        return Err(Status::with_details_and_metadata(
            failure.code(),
            failure.message(),
            failure.details().to_vec().into(),
            tonic::metadata::MetadataMap::from_headers(headers::headers_to_metadata(
                response.headers(),
            )),
        ));
    }
    let status = response.status();
    let content_type = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let metadata = headers::headers_to_metadata(response.headers());
    let trailers = response
        .extensions()
        .get::<app_status::GrpcAppTrailers>()
        .map(|app_status::GrpcAppTrailers(trailers)| trailers.clone())
        .unwrap_or_default();
    let limit = sidecar.config.max_body_size;
    let data = axum::body::to_bytes(response.into_body(), limit)
        .await
        .map_err(|e| DaprError::DirectInvoke {
            id: id.clone(),
            reason: format!("cannot read the app's answer: {e}"),
        })?;
    if !status.is_success() {
        return Err(app_error_status(status, &data, metadata));
    }
    let answer = common::InvokeResponse {
        data: Some(prost_types::Any {
            type_url: String::new(),
            value: data.to_vec(),
        }),
        content_type,
    };
    Ok((answer, metadata, trailers))
}

/// How daprd answers a gRPC invocation whose HTTP app said `status`: the
/// gRPC code of that HTTP status, its text as the message, an `ErrorInfo`
/// (reason: the status text; metadata `http.code` and `http.error_message`,
/// the body's first 63 bytes), and the `dapr-http-status` header besides
/// the app's own (`metadata`).
fn app_error_status(
    status: axum::http::StatusCode,
    body: &[u8],
    metadata: axum::http::HeaderMap,
) -> Status {
    use tonic::Code;
    use tonic_types::{ErrorDetails, StatusExt};
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 => Code::Cancelled,
        409 => Code::AlreadyExists,
        429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    };
    let text = status.canonical_reason().unwrap_or("Unknown");
    let mut detail = String::from_utf8_lossy(body).into_owned();
    if detail.len() > 63 {
        let mut end = 63;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    let details = ErrorDetails::with_error_info(
        text,
        crate::error::ERROR_DOMAIN,
        HashMap::from([
            ("http.code".to_string(), status.as_u16().to_string()),
            ("http.error_message".to_string(), detail),
        ]),
    );
    let mut metadata = tonic::metadata::MetadataMap::from_headers(metadata);
    metadata.insert("dapr-http-status", status.as_u16().into());
    Status::with_error_details_and_metadata(code, text, details, metadata)
}

async fn get_state(
    api: &DaprApi,
    request: Request<pb::GetStateRequest>,
) -> Result<Response<pb::GetStateResponse>, Status> {
    let request = request.into_inner();
    let item = api
        .sidecar
        .read_state(&request.store_name, &request.key)
        .await?;
    let Some(item) = item else {
        return Ok(Response::new(pb::GetStateResponse::default()));
    };
    Ok(Response::new(pb::GetStateResponse {
        metadata: item.metadata(),
        data: item.value,
        etag: item.etag,
    }))
}

async fn get_bulk_state(
    api: &DaprApi,
    request: Request<pb::GetBulkStateRequest>,
) -> Result<Response<pb::GetBulkStateResponse>, Status> {
    let request = request.into_inner();
    let entries = api
        .sidecar
        .read_state_bulk(&request.store_name, request.keys)
        .await?;
    let items = entries
        .into_iter()
        .map(|entry| {
            let mut item = pb::BulkStateItem {
                key: entry.key,
                ..Default::default()
            };
            match entry.outcome {
                Ok(Some(found)) => {
                    item.metadata = found.metadata();
                    item.data = found.value;
                    item.etag = found.etag;
                }
                Ok(None) => {}
                Err(error) => item.error = error,
            }
            item
        })
        .collect();
    Ok(Response::new(pb::GetBulkStateResponse { items }))
}

async fn save_state(
    api: &DaprApi,
    request: Request<pb::SaveStateRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let writes = request
        .states
        .into_iter()
        .map(state_write)
        .collect::<Result<Vec<_>, _>>()?;
    api.sidecar.write_state(&request.store_name, writes).await?;
    Ok(Response::new(()))
}

async fn delete_state(
    api: &DaprApi,
    request: Request<pb::DeleteStateRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let removal = DeleteRequest {
        concurrency: concurrency(request.options),
        etag: request.etag.map(|e| e.value),
        key: request.key,
    };
    api.sidecar
        .remove_state(&request.store_name, removal)
        .await?;
    Ok(Response::new(()))
}

async fn delete_bulk_state(
    api: &DaprApi,
    request: Request<pb::DeleteBulkStateRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let removals = request.states.into_iter().map(state_removal).collect();
    api.sidecar
        .remove_state_bulk(&request.store_name, removals)
        .await?;
    Ok(Response::new(()))
}

async fn execute_state_transaction(
    api: &DaprApi,
    request: Request<pb::ExecuteStateTransactionRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    let steps = request
        .operations
        .into_iter()
        .map(|operation| {
            let item = operation.request.ok_or_else(|| {
                DaprError::MalformedRequest("a transaction operation has no request".into())
            })?;
            match operation.operation_type.as_str() {
                "upsert" => state_write(item).map(Operation::Upsert),
                "delete" => Ok(Operation::Delete(state_removal(item))),
                other => Err(DaprError::MalformedRequest(format!(
                    "operation type {other} not supported"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    api.sidecar
        .transact_state(&request.store_name, steps)
        .await?;
    Ok(Response::new(()))
}

async fn get_secret(
    api: &DaprApi,
    request: Request<pb::GetSecretRequest>,
) -> Result<Response<pb::GetSecretResponse>, Status> {
    let request = request.into_inner();
    let value = api.sidecar.read_secret(&request.store_name, &request.key)?;
    Ok(Response::new(pb::GetSecretResponse {
        data: HashMap::from([(request.key.clone(), value.to_string())]),
    }))
}

async fn invoke_binding(
    api: &DaprApi,
    request: Request<pb::InvokeBindingRequest>,
) -> Result<Response<pb::InvokeBindingResponse>, Status> {
    let trace = grpc_trace(request.metadata().as_ref(), request.extensions());
    let headers = request.metadata().clone().into_headers();
    let request = request.into_inner();
    let mut metadata = request.metadata;
    crate::bindings::traced(&mut metadata, &trace, &headers);
    let answer = api
        .sidecar
        .invoke_binding(
            &request.name,
            crate::bindings::BindingRequest {
                operation: request.operation,
                data: request.data.into(),
                metadata,
            },
        )
        .await?
        .unwrap_or_default();
    // daprd sends the metadata as the response's metadata too.
    let mut response = Response::new(pb::InvokeBindingResponse {
        data: answer.data.to_vec(),
        metadata: HashMap::new(),
    });
    crate::bindings::metadata_to_grpc(&answer.metadata, response.metadata_mut());
    response.get_mut().metadata = answer.metadata;
    Ok(response)
}

async fn schedule_job(
    api: &DaprApi,
    request: Request<pb::ScheduleJobRequest>,
) -> Result<Response<pb::ScheduleJobResponse>, Status> {
    let request = request.into_inner();
    api.sidecar
        .schedule_job(request.job, request.overwrite)
        .await?;
    Ok(Response::new(pb::ScheduleJobResponse {}))
}

async fn get_job(
    api: &DaprApi,
    request: Request<pb::GetJobRequest>,
) -> Result<Response<pb::GetJobResponse>, Status> {
    let job = api.sidecar.get_job(&request.into_inner().name).await?;
    Ok(Response::new(pb::GetJobResponse { job: Some(job) }))
}

async fn delete_job(
    api: &DaprApi,
    request: Request<pb::DeleteJobRequest>,
) -> Result<Response<pb::DeleteJobResponse>, Status> {
    api.sidecar.delete_job(&request.into_inner().name).await?;
    Ok(Response::new(pb::DeleteJobResponse {}))
}

async fn get_bulk_secret(
    api: &DaprApi,
    request: Request<pb::GetBulkSecretRequest>,
) -> Result<Response<pb::GetBulkSecretResponse>, Status> {
    let request = request.into_inner();
    let data = api
        .sidecar
        .read_secrets(&request.store_name)?
        .iter()
        .map(|(name, value)| {
            let secrets = HashMap::from([(name.clone(), value.clone())]);
            (name.clone(), pb::SecretResponse { secrets })
        })
        .collect();
    Ok(Response::new(pb::GetBulkSecretResponse { data }))
}

async fn get_metadata(
    api: &DaprApi,
    _request: Request<pb::GetMetadataRequest>,
) -> Result<Response<pb::GetMetadataResponse>, Status> {
    let sidecar = &api.sidecar;
    let registered_components = sidecar
        .component_infos()
        .iter()
        .map(|c| pb::RegisteredComponents {
            name: c.name.clone(),
            r#type: c.component_type.clone(),
            version: c.version.clone(),
            capabilities: c.capabilities.iter().map(|c| c.to_string()).collect(),
        })
        .collect();
    let actor_runtime = sidecar.actors.runtime_metadata();
    #[allow(deprecated)] // `active_actors_count` is deprecated; daprd still fills it.
    let metadata = pb::GetMetadataResponse {
        active_actors_count: actor_runtime.active_actors.clone(),
        actor_runtime: Some(actor_runtime),
        id: sidecar.config.app_id.clone(),
        registered_components,
        extended_metadata: sidecar.extended_metadata(),
        runtime_version: crate::metadata::RUNTIME_VERSION.to_string(),
        app_connection_properties: Some(sidecar.app_connection()),
        http_endpoints: sidecar
            .http_endpoints
            .names()
            .into_iter()
            .map(|name| pb::MetadataHttpEndpoint { name })
            .collect(),
        subscriptions: sidecar
            .subscriptions()
            .into_iter()
            .map(|s| pb::PubsubSubscription {
                pubsub_name: s.pubsub_name,
                topic: s.topic,
                rules: Some(pb::PubsubSubscriptionRules {
                    rules: vec![pb::PubsubSubscriptionRule {
                        r#match: String::new(),
                        path: s.route,
                    }],
                }),
                dead_letter_topic: s.dead_letter_topic.unwrap_or_default(),
                metadata: s.metadata,
                r#type: match s.kind {
                    crate::pubsub::subscriptions::SubscriptionKind::Declarative => {
                        pb::PubsubSubscriptionType::Declarative.into()
                    }
                    crate::pubsub::subscriptions::SubscriptionKind::Programmatic => {
                        pb::PubsubSubscriptionType::Programmatic.into()
                    }
                    crate::pubsub::subscriptions::SubscriptionKind::Streaming => {
                        pb::PubsubSubscriptionType::Streaming.into()
                    }
                },
            })
            .collect(),
        workflows: Some(pb::MetadataWorkflows {
            connected_workers: sidecar.workflows.connected_workers(),
        }),
        ..Default::default()
    };
    Ok(Response::new(metadata))
}

async fn set_metadata(
    api: &DaprApi,
    request: Request<pb::SetMetadataRequest>,
) -> Result<Response<()>, Status> {
    let request = request.into_inner();
    api.sidecar
        .set_extended_metadata(request.key, request.value);
    Ok(Response::new(()))
}

async fn publish_event(
    api: &DaprApi,
    request: Request<pb::PublishEventRequest>,
) -> Result<Response<()>, Status> {
    let traceparent =
        Some(grpc_trace(request.metadata().as_ref(), request.extensions()).traceparent());
    let request = request.into_inner();
    let publication = Publication {
        data: request.data,
        content_type: request.data_content_type,
        metadata: request.metadata,
        traceparent,
    };
    api.sidecar
        .publish_event(&request.pubsub_name, &request.topic, publication)
        .await?;
    Ok(Response::new(()))
}

async fn bulk_publish_event(
    api: &DaprApi,
    request: Request<pb::BulkPublishRequest>,
) -> Result<Response<pb::BulkPublishResponse>, Status> {
    let traceparent =
        Some(grpc_trace(request.metadata().as_ref(), request.extensions()).traceparent());
    let request = request.into_inner();
    let entries = request
        .entries
        .into_iter()
        .map(|entry| {
            let mut metadata = request.metadata.clone();
            metadata.extend(entry.metadata);
            BulkEntry {
                entry_id: entry.entry_id,
                publication: Publication {
                    data: entry.event,
                    content_type: entry.content_type,
                    metadata,
                    traceparent: traceparent.clone(),
                },
            }
        })
        .collect();
    let failed_entries = api
        .sidecar
        .publish_events(&request.pubsub_name, &request.topic, entries)
        .await?
        .into_iter()
        .map(|(entry_id, error)| pb::BulkPublishResponseFailedEntry { entry_id, error })
        .collect();
    Ok(Response::new(pb::BulkPublishResponse { failed_entries }))
}

async fn try_lock_alpha1(
    api: &DaprApi,
    request: Request<pb::TryLockRequest>,
) -> Result<Response<pb::TryLockResponse>, Status> {
    let request = request.into_inner();
    let success = api
        .sidecar
        .try_lock(
            &request.store_name,
            &lock_request(
                &request.resource_id,
                &request.lock_owner,
                request.expiry_in_seconds,
            ),
        )
        .await?;
    Ok(Response::new(pb::TryLockResponse { success }))
}

async fn unlock_alpha1(
    api: &DaprApi,
    request: Request<pb::UnlockRequest>,
) -> Result<Response<pb::UnlockResponse>, Status> {
    let request = request.into_inner();
    let status = api
        .sidecar
        .unlock(
            &request.store_name,
            &lock_request(&request.resource_id, &request.lock_owner, 0),
        )
        .await?;
    Ok(Response::new(pb::UnlockResponse {
        status: status as i32,
    }))
}

async fn get_configuration(
    api: &DaprApi,
    request: Request<pb::GetConfigurationRequest>,
) -> Result<Response<pb::GetConfigurationResponse>, Status> {
    let request = request.into_inner();
    let items = api
        .sidecar
        .get_configuration(&request.store_name, &request.keys, &request.metadata)
        .await?;
    Ok(Response::new(pb::GetConfigurationResponse {
        items: configuration_items(items),
    }))
}

async fn get_configuration_alpha1(
    api: &DaprApi,
    request: Request<pb::GetConfigurationRequest>,
) -> Result<Response<pb::GetConfigurationResponse>, Status> {
    get_configuration(api, request).await
}

/// The stream's first message is the subscription's id (as daprd sends
/// it, for `UnsubscribeConfiguration`); then one message per change.
async fn subscribe_configuration(
    api: &DaprApi,
    request: Request<pb::SubscribeConfigurationRequest>,
) -> Result<Response<BoxStream<pb::SubscribeConfigurationResponse>>, Status> {
    use tokio_stream::StreamExt;
    let request = request.into_inner();
    let mut keys = request.keys;
    keys.sort();
    let (sender, changes) = tokio::sync::mpsc::channel(16);
    let id = api
        .sidecar
        .subscribe_configuration(
            &request.store_name,
            &keys,
            &request.metadata,
            Subscriber::Stream(sender),
        )
        .await?;
    let first = pb::SubscribeConfigurationResponse {
        id,
        items: HashMap::new(),
    };
    let changes = tokio_stream::wrappers::ReceiverStream::new(changes).map(|event| {
        Ok(pb::SubscribeConfigurationResponse {
            id: event.id,
            items: configuration_items(event.items),
        })
    });
    Ok(Response::new(Box::pin(
        tokio_stream::once(Ok(first)).chain(changes),
    )))
}

async fn subscribe_configuration_alpha1(
    api: &DaprApi,
    request: Request<pb::SubscribeConfigurationRequest>,
) -> Result<Response<BoxStream<pb::SubscribeConfigurationResponse>>, Status> {
    subscribe_configuration(api, request).await
}

/// Ends the stream of the subscription `id` (daprd's deprecated way; a
/// client that goes ends its subscription too). An unknown id is not an
/// error status: `ok` is false, as in daprd.
async fn unsubscribe_configuration(
    api: &DaprApi,
    request: Request<pb::UnsubscribeConfigurationRequest>,
) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
    let id = request.into_inner().id;
    let ok = api.sidecar.stop_configuration_subscription(&id);
    let message = if ok {
        String::new()
    } else {
        DaprError::ConfigurationUnsubscribe {
            reason: "subscription does not exist".into(),
            id,
        }
        .to_string()
    };
    Ok(Response::new(pb::UnsubscribeConfigurationResponse {
        ok,
        message,
    }))
}

async fn unsubscribe_configuration_alpha1(
    api: &DaprApi,
    request: Request<pb::UnsubscribeConfigurationRequest>,
) -> Result<Response<pb::UnsubscribeConfigurationResponse>, Status> {
    unsubscribe_configuration(api, request).await
}

fn configuration_items(items: Items) -> HashMap<String, common::ConfigurationItem> {
    items
        .into_iter()
        .map(|(key, item)| {
            let item = common::ConfigurationItem {
                value: item.value,
                version: item.version,
                metadata: item.metadata,
            };
            (key, item)
        })
        .collect()
}

fn lock_request(resource_id: &str, lock_owner: &str, expiry_in_seconds: i32) -> LockRequest {
    LockRequest {
        resource_id: resource_id.to_string(),
        lock_owner: lock_owner.to_string(),
        expiry_in_seconds,
    }
}

async fn bulk_publish_event_alpha1(
    api: &DaprApi,
    request: Request<pb::BulkPublishRequest>,
) -> Result<Response<pb::BulkPublishResponse>, Status> {
    bulk_publish_event(api, request).await
}

/// The call's place in its trace: the span [`trace_request`] put in its
/// `extensions` (or, without one, an unrecorded child of the `traceparent`
/// in its `metadata`).
fn grpc_trace(
    metadata: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> TraceContext {
    extensions
        .get::<TraceContext>()
        .cloned()
        .unwrap_or_else(|| TraceContext::unrecorded_from(metadata))
}

/// A streaming subscription ([`crate::pubsub::streaming`]).
async fn subscribe_topic_events_alpha1(
    api: &DaprApi,
    request: Request<tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,
) -> Result<Response<BoxStream<pb::SubscribeTopicEventsResponseAlpha1>>, Status> {
    let events =
        crate::pubsub::streaming::subscribe(api.sidecar.clone(), request.into_inner()).await?;
    Ok(Response::new(Box::pin(events)))
}

async fn shutdown(
    api: &DaprApi,
    _request: Request<pb::ShutdownRequest>,
) -> Result<Response<()>, Status> {
    tracing::info!("shutdown requested over gRPC");
    api.sidecar.request_shutdown();
    Ok(Response::new(()))
}
