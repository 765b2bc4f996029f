//! Workflows over the Durable Task protocol (`TaskHubSidecarService`),
//! spoken by hand: a worker is a `GetWorkItems` stream whose items the
//! test answers itself, so it can do what the SDKs' workers do not do on
//! cue (go away holding work, answer work it does not have, send garbage).
//! The SDKs' own workers are tested in `python_sdk` and `js_sdk`.

use sidecar::workflows::durabletask as dt;
use test_support::metrics::Scrape;
use test_support::sidecar::*;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use dt::history_event::EventType;
use dt::work_item::Request as Work;
use dt::workflow_action::WorkflowActionType as Action;

/// A client of the sidecar's `TaskHubSidecarService`.
pub(crate) struct TaskHub {
    grpc: tonic::client::Grpc<Channel>,
}

impl TaskHub {
    pub(crate) async fn connect(sidecar: &RunningSidecar) -> TaskHub {
        let channel = Channel::from_shared(format!("http://{}", sidecar.grpc_address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        TaskHub {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    fn path(method: &str) -> PathAndQuery {
        PathAndQuery::try_from(format!("/TaskHubSidecarService/{method}")).unwrap()
    }

    /// Calls `method` with `request` (any message: the tests send some of
    /// the wrong type on purpose).
    pub(crate) async fn call<Req, Res>(
        &mut self,
        method: &str,
        request: tonic::Request<Req>,
    ) -> Result<Res, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Res: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<Req, Res>::default();
        self.grpc
            .unary(request, Self::path(method), codec)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn unary<Req, Res>(&mut self, method: &str, request: Req) -> Result<Res, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Res: prost::Message + Default + Send + Sync + 'static,
    {
        self.call(method, tonic::Request::new(request)).await
    }

    /// A worker: the `GetWorkItems` stream.
    async fn work_items(&mut self) -> tonic::Streaming<dt::WorkItem> {
        self.grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<dt::GetWorkItemsRequest, dt::WorkItem>::default();
        self.grpc
            .server_streaming(
                tonic::Request::new(dt::GetWorkItemsRequest::default()),
                Self::path("GetWorkItems"),
                codec,
            )
            .await
            .expect("GetWorkItems")
            .into_inner()
    }
}

/// The next work item a worker gets.
async fn next(worker: &mut tonic::Streaming<dt::WorkItem>) -> (String, Work) {
    let item = tokio::time::timeout(std::time::Duration::from_secs(20), worker.message())
        .await
        .expect("a work item within 20 s")
        .expect("a work item")
        .expect("the stream stays open");
    (item.completion_token, item.request.expect("a request"))
}

fn action(id: i32, kind: Action) -> dt::WorkflowAction {
    dt::WorkflowAction {
        id,
        router: None,
        workflow_action_type: Some(kind),
    }
}

/// An activity a worker took and then left without answering goes to the
/// next worker; the workflow goes on with that worker's result, and the
/// metadata APIs count the connected workers as they come and go, and
/// daprd's workflow metrics count the run and its activity. The
/// sidecar then stops with a worker still connected (it ends the worker's
/// stream rather than wait for it).
#[tokio::test]
async fn work_a_worker_leaves_unanswered_goes_to_another_worker() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("wf-workers", None, data.path())).await;
    let mut hub = TaskHub::connect(&sidecar).await;
    let mut first = TaskHub::connect(&sidecar).await.work_items().await;
    let started: dt::CreateInstanceResponse = hub
        .unary(
            "StartInstance",
            dt::CreateInstanceRequest {
                instance_id: "w1".into(),
                name: "flow".into(),
                input: Some("20".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(started.instance_id, "w1");
    wait_for_json(
        "one worker is connected",
        &sidecar.url("/v1.0/metadata"),
        |m| m["workflows"]["connectedWorkers"] == 1,
    )
    .await;

    // The first step: the workflow's start, answered with an activity.
    let (token, work) = next(&mut first).await;
    let Work::WorkflowRequest(step) = work else {
        panic!("expected a workflow step, got {work:?}");
    };
    assert!(step.past_events.is_empty());
    assert!(step.new_events.iter().any(|e| matches!(
        &e.event_type,
        Some(EventType::ExecutionStarted(s)) if s.name == "flow" && s.input.as_deref() == Some("20")
    )));
    let _: dt::CompleteTaskResponse = hub
        .unary(
            "CompleteOrchestratorTask",
            dt::WorkflowResponse {
                instance_id: "w1".into(),
                completion_token: token,
                actions: vec![action(
                    0,
                    Action::ScheduleTask(dt::ScheduleTaskAction {
                        name: "double".into(),
                        input: Some("20".into()),
                        ..Default::default()
                    }),
                )],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, work) = next(&mut first).await;
    assert!(
        matches!(&work, Work::ActivityRequest(a) if a.name == "double" && a.task_id == 0),
        "{work:?}"
    );

    // The first worker goes away holding the activity.
    drop(first);
    wait_for_json(
        "no worker is connected",
        &sidecar.url("/v1.0/metadata"),
        |m| m["workflows"] == serde_json::json!({}),
    )
    .await;
    let mut second = TaskHub::connect(&sidecar).await.work_items().await;
    let (token, work) = next(&mut second).await;
    let Work::ActivityRequest(activity) = work else {
        panic!("expected the activity again, got {work:?}");
    };
    assert_eq!((activity.name.as_str(), activity.task_id), ("double", 0));
    let _: dt::CompleteTaskResponse = hub
        .unary(
            "CompleteActivityTask",
            dt::ActivityResponse {
                instance_id: "w1".into(),
                task_id: 0,
                result: Some("40".into()),
                completion_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // The next step replays the history and brings the result.
    let (token, work) = next(&mut second).await;
    let Work::WorkflowRequest(step) = work else {
        panic!("expected a workflow step, got {work:?}");
    };
    assert!(step.past_events.iter().any(|e| matches!(
        &e.event_type,
        Some(EventType::TaskScheduled(t)) if t.name == "double"
    )));
    assert!(step.new_events.iter().any(|e| matches!(
        &e.event_type,
        Some(EventType::TaskCompleted(t)) if t.task_scheduled_id == 0 && t.result.as_deref() == Some("40")
    )));
    let _: dt::CompleteTaskResponse = hub
        .unary(
            "CompleteOrchestratorTask",
            dt::WorkflowResponse {
                instance_id: "w1".into(),
                completion_token: token,
                actions: vec![action(
                    1,
                    Action::CompleteWorkflow(dt::CompleteWorkflowAction {
                        workflow_status: dt::OrchestrationStatus::Completed as i32,
                        result: Some("40".into()),
                        ..Default::default()
                    }),
                )],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let done: dt::GetInstanceResponse = hub
        .unary(
            "WaitForInstanceCompletion",
            dt::GetInstanceRequest {
                instance_id: "w1".into(),
                get_inputs_and_outputs: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let state = done.workflow_state.expect("the instance");
    assert_eq!(
        state.workflow_status,
        dt::OrchestrationStatus::Completed as i32
    );
    assert_eq!(state.output.as_deref(), Some("40"));
    // Dapr's API sees the same.
    let answer: serde_json::Value = reqwest::get(sidecar.url("/v1.0/workflows/dapr/w1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["runtimeStatus"], "COMPLETED", "{answer}");
    assert_eq!(
        answer["properties"]["dapr.workflow.output"], "40",
        "{answer}"
    );

    // daprd's workflow metrics: one run, one activity result (the worker
    // that left gave none), one start.
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let labels = |extra: (&'static str, &'static str)| {
        [
            ("app_id", "wf-workers"),
            ("namespace", ""),
            ("status", "success"),
            extra,
        ]
    };
    assert_eq!(
        scrape.value(
            "dapr_runtime_workflow_execution_count",
            &labels(("workflow_name", "flow"))
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "dapr_runtime_workflow_activity_execution_count",
            &labels(("activity_name", "double"))
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "dapr_runtime_workflow_operation_count",
            &labels(("operation", "create_workflow"))
        ),
        Some(1.0)
    );
    sidecar.stop().await;
}

/// A message whose field 1 is a number where every request has a string.
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(int64, tag = "1")]
    number: i64,
}

/// Requests and answers the engine cannot take get a clear status, and the
/// sidecar goes on serving.
#[tokio::test]
async fn bad_workflow_requests_get_clear_statuses() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("wf-bad", None, data.path())).await;
    let mut hub = TaskHub::connect(&sidecar).await;

    let start = |id: &str, name: &str| dt::CreateInstanceRequest {
        instance_id: id.into(),
        name: name.into(),
        ..Default::default()
    };
    let refused = hub
        .unary::<_, dt::CreateInstanceResponse>("StartInstance", start("x", ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // No worker: the instance stays pending, and a second start of its id
    // is refused.
    let _: dt::CreateInstanceResponse = hub
        .unary("StartInstance", start("pending", "flow"))
        .await
        .unwrap();
    let refused = hub
        .unary::<_, dt::CreateInstanceResponse>("StartInstance", start("pending", "flow"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let found: dt::GetInstanceResponse = hub
        .unary(
            "GetInstance",
            dt::GetInstanceRequest {
                instance_id: "pending".into(),
                get_inputs_and_outputs: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        found.workflow_state.map(|s| s.workflow_status),
        Some(dt::OrchestrationStatus::Pending as i32)
    );
    let refused = hub
        .unary::<_, dt::PurgeInstancesResponse>(
            "PurgeInstances",
            dt::PurgeInstancesRequest {
                request: Some(dt::purge_instances_request::Request::InstanceId(
                    "pending".into(),
                )),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    // Unknown instances.
    let missing: dt::GetInstanceResponse = hub
        .unary(
            "GetInstance",
            dt::GetInstanceRequest {
                instance_id: "nobody".into(),
                get_inputs_and_outputs: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!missing.exists);
    let refused = hub
        .unary::<_, dt::RaiseEventResponse>(
            "RaiseEvent",
            dt::RaiseEventRequest {
                instance_id: "nobody".into(),
                name: "e".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Answers to work nobody was given.
    let refused = hub
        .unary::<_, dt::CompleteTaskResponse>(
            "CompleteOrchestratorTask",
            dt::WorkflowResponse {
                instance_id: "pending".into(),
                completion_token: "made-up".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let refused = hub
        .unary::<_, dt::CompleteTaskResponse>(
            "CompleteActivityTask",
            dt::ActivityResponse {
                instance_id: "pending".into(),
                task_id: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Garbage protobuf.
    let refused = hub
        .unary::<_, dt::CreateInstanceResponse>("StartInstance", Garbage { number: 7 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");

    // Still serving.
    let _: dt::CreateInstanceResponse = hub
        .unary("StartInstance", start("after", "flow"))
        .await
        .unwrap();
    sidecar.stop().await;
}
