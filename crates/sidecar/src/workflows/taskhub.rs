//! `TaskHubSidecarService`, the Durable Task protocol the Dapr workflow
//! SDKs speak on the sidecar's gRPC port: their workers take work items
//! and answer them, their clients manage instances. Each RPC translates
//! to one call of [`super::engine`].

use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::durabletask as dt;
use super::durabletask::task_hub_sidecar_service_server::TaskHubSidecarService;
use super::engine::{Awaited, PurgeTarget};
use super::instance::{Instance, NewInstance};
use crate::Sidecar;

/// The service over one sidecar.
pub struct TaskHub {
    sidecar: Arc<Sidecar>,
}

impl TaskHub {
    /// The service for `sidecar`, as tonic serves it.
    pub fn server(
        sidecar: Arc<Sidecar>,
    ) -> dt::task_hub_sidecar_service_server::TaskHubSidecarServiceServer<TaskHub> {
        dt::task_hub_sidecar_service_server::TaskHubSidecarServiceServer::new(TaskHub { sidecar })
    }
}

/// `GetInstance`'s answer for an instance, or for none.
fn instance_response(instance: Option<Instance>, with_payloads: bool) -> dt::GetInstanceResponse {
    dt::GetInstanceResponse {
        exists: instance.is_some(),
        workflow_state: instance.map(|i| i.state(with_payloads)),
    }
}

/// A required id, or `INVALID_ARGUMENT`.
fn required(value: &str, what: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is required")));
    }
    Ok(())
}

type WorkItems = Pin<Box<dyn tokio_stream::Stream<Item = Result<dt::WorkItem, Status>> + Send>>;

#[tonic::async_trait]
impl TaskHubSidecarService for TaskHub {
    async fn hello(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        request: Request<dt::CreateInstanceRequest>,
    ) -> Result<Response<dt::CreateInstanceResponse>, Status> {
        let request = request.into_inner();
        required(&request.name, "the workflow name")?;
        let instance_id = if request.instance_id.is_empty() {
            crate::ids::new_uuid()
        } else {
            request.instance_id
        };
        let instance_id = self
            .sidecar
            .start_workflow(NewInstance {
                instance_id,
                name: request.name,
                input: request.input,
                scheduled_start: request.scheduled_start_timestamp,
                parent: None,
            })
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::CreateInstanceResponse { instance_id }))
    }

    async fn get_instance(
        &self,
        request: Request<dt::GetInstanceRequest>,
    ) -> Result<Response<dt::GetInstanceResponse>, Status> {
        let request = request.into_inner();
        let instance = self
            .sidecar
            .workflow_instance(&request.instance_id)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(instance_response(
            instance,
            request.get_inputs_and_outputs,
        )))
    }

    async fn wait_for_instance_start(
        &self,
        request: Request<dt::GetInstanceRequest>,
    ) -> Result<Response<dt::GetInstanceResponse>, Status> {
        self.wait(request.into_inner(), Awaited::Started).await
    }

    async fn wait_for_instance_completion(
        &self,
        request: Request<dt::GetInstanceRequest>,
    ) -> Result<Response<dt::GetInstanceResponse>, Status> {
        self.wait(request.into_inner(), Awaited::Finished).await
    }

    async fn raise_event(
        &self,
        request: Request<dt::RaiseEventRequest>,
    ) -> Result<Response<dt::RaiseEventResponse>, Status> {
        let request = request.into_inner();
        required(&request.name, "the event name")?;
        self.sidecar
            .raise_workflow_event(&request.instance_id, &request.name, request.input)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::RaiseEventResponse {}))
    }

    async fn terminate_instance(
        &self,
        request: Request<dt::TerminateRequest>,
    ) -> Result<Response<dt::TerminateResponse>, Status> {
        let request = request.into_inner();
        self.sidecar
            .terminate_workflow(&request.instance_id, request.output, request.recursive)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::TerminateResponse {}))
    }

    async fn suspend_instance(
        &self,
        request: Request<dt::SuspendRequest>,
    ) -> Result<Response<dt::SuspendResponse>, Status> {
        let request = request.into_inner();
        self.sidecar
            .suspend_workflow(&request.instance_id, true, request.reason)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::SuspendResponse {}))
    }

    async fn resume_instance(
        &self,
        request: Request<dt::ResumeRequest>,
    ) -> Result<Response<dt::ResumeResponse>, Status> {
        let request = request.into_inner();
        self.sidecar
            .suspend_workflow(&request.instance_id, false, request.reason)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::ResumeResponse {}))
    }

    async fn purge_instances(
        &self,
        request: Request<dt::PurgeInstancesRequest>,
    ) -> Result<Response<dt::PurgeInstancesResponse>, Status> {
        use dt::purge_instances_request::Request as Which;
        let request = request.into_inner();
        let target = match request.request {
            Some(Which::InstanceId(id)) => PurgeTarget::One(id),
            Some(Which::PurgeInstanceFilter(filter)) => PurgeTarget::Filter(filter),
            None => {
                return Err(Status::invalid_argument(
                    "an instance id or a filter is required",
                ));
            }
        };
        let deleted = self
            .sidecar
            .purge_workflows(target, request.recursive, request.force.unwrap_or(false))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::PurgeInstancesResponse {
            deleted_instance_count: i32::try_from(deleted).unwrap_or(i32::MAX),
            is_complete: Some(true),
        }))
    }

    type GetWorkItemsStream = WorkItems;

    async fn get_work_items(
        &self,
        _: Request<dt::GetWorkItemsRequest>,
    ) -> Result<Response<WorkItems>, Status> {
        let items = self
            .sidecar
            .connect_worker()
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(items),
        )))
    }

    async fn complete_activity_task(
        &self,
        request: Request<dt::ActivityResponse>,
    ) -> Result<Response<dt::CompleteTaskResponse>, Status> {
        self.sidecar
            .complete_activity(request.into_inner())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::CompleteTaskResponse {}))
    }

    async fn complete_orchestrator_task(
        &self,
        request: Request<dt::WorkflowResponse>,
    ) -> Result<Response<dt::CompleteTaskResponse>, Status> {
        self.sidecar
            .complete_workflow_step(request.into_inner())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(dt::CompleteTaskResponse {}))
    }

    async fn complete_workflow_task(
        &self,
        request: Request<dt::WorkflowResponse>,
    ) -> Result<Response<dt::CompleteTaskResponse>, Status> {
        self.complete_orchestrator_task(request).await
    }

    async fn rerun_workflow_from_event(
        &self,
        _: Request<dt::RerunWorkflowFromEventRequest>,
    ) -> Result<Response<dt::RerunWorkflowFromEventResponse>, Status> {
        Err(Status::unimplemented(
            "RerunWorkflowFromEvent is not implemented by dapr-wasm",
        ))
    }

    async fn list_instance_i_ds(
        &self,
        request: Request<dt::ListInstanceIDsRequest>,
    ) -> Result<Response<dt::ListInstanceIDsResponse>, Status> {
        let request = request.into_inner();
        let mut ids = self
            .sidecar
            .workflow_instance_ids()
            .await
            .map_err(|e| e.to_status())?;
        ids.sort();
        let after = request.continuation_token.unwrap_or_default();
        let page = request.page_size.map_or(usize::MAX, |n| n.max(1) as usize);
        let rest: Vec<String> = ids
            .into_iter()
            .filter(|id| after.is_empty() || *id > after)
            .collect();
        let more = rest.len() > page;
        let instance_ids: Vec<String> = rest.into_iter().take(page).collect();
        let continuation_token = more.then(|| instance_ids.last().cloned()).flatten();
        Ok(Response::new(dt::ListInstanceIDsResponse {
            instance_ids,
            continuation_token,
        }))
    }

    async fn get_instance_history(
        &self,
        request: Request<dt::GetInstanceHistoryRequest>,
    ) -> Result<Response<dt::GetInstanceHistoryResponse>, Status> {
        let id = request.into_inner().instance_id;
        let instance = self
            .sidecar
            .workflow_instance(&id)
            .await
            .map_err(|e| e.to_status())?
            .ok_or_else(|| Status::not_found(format!("no workflow instance '{id}'")))?;
        Ok(Response::new(dt::GetInstanceHistoryResponse {
            events: instance.history,
        }))
    }
}

impl TaskHub {
    async fn wait(
        &self,
        request: dt::GetInstanceRequest,
        awaited: Awaited,
    ) -> Result<Response<dt::GetInstanceResponse>, Status> {
        let instance = self
            .sidecar
            .wait_for_workflow(&request.instance_id, awaited)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(instance_response(
            instance,
            request.get_inputs_and_outputs,
        )))
    }
}
