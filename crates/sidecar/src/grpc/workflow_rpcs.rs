//! Dapr's workflow RPCs (`StartWorkflowBeta1` and its kin; their `Alpha1`
//! names are the same): protobuf in and out of
//! [`crate::workflows::api`], which the HTTP API shares.

use dapr::dapr::proto::runtime::v1 as pb;
use tonic::{Request, Response, Status};

use super::DaprApi;
use crate::workflows::api;

pub(super) async fn start_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::StartWorkflowRequest>,
) -> Result<Response<pb::StartWorkflowResponse>, Status> {
    Ok(Response::new(
        api::start(&dapr.sidecar, request.into_inner()).await?,
    ))
}

pub(super) async fn get_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::GetWorkflowRequest>,
) -> Result<Response<pb::GetWorkflowResponse>, Status> {
    Ok(Response::new(
        api::get(&dapr.sidecar, request.into_inner()).await?,
    ))
}

pub(super) async fn terminate_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::TerminateWorkflowRequest>,
) -> Result<Response<()>, Status> {
    api::terminate(&dapr.sidecar, request.into_inner().instance_id).await?;
    Ok(Response::new(()))
}

pub(super) async fn raise_event_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::RaiseEventWorkflowRequest>,
) -> Result<Response<()>, Status> {
    api::raise_event(&dapr.sidecar, request.into_inner()).await?;
    Ok(Response::new(()))
}

pub(super) async fn pause_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::PauseWorkflowRequest>,
) -> Result<Response<()>, Status> {
    api::pause(&dapr.sidecar, request.into_inner().instance_id, true).await?;
    Ok(Response::new(()))
}

pub(super) async fn resume_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::ResumeWorkflowRequest>,
) -> Result<Response<()>, Status> {
    api::pause(&dapr.sidecar, request.into_inner().instance_id, false).await?;
    Ok(Response::new(()))
}

pub(super) async fn purge_workflow_beta1(
    dapr: &DaprApi,
    request: Request<pb::PurgeWorkflowRequest>,
) -> Result<Response<()>, Status> {
    api::purge(&dapr.sidecar, request.into_inner().instance_id).await?;
    Ok(Response::new(()))
}
