//! One workflow instance and its history: what the engine keeps of it
//! ([`Instance`], stored whole in the actor state store), and how a
//! worker's answer to a workflow work item moves it on
//! ([`Instance::apply_response`]): the events it was sent join its
//! history, and each action it returned becomes a history event and an
//! [`Effect`] for the engine to carry out (an activity to run, a timer to
//! arm, an event or a child workflow for another instance).
//!
//! Nothing here does I/O or takes a lock; [`super::engine`] does.

use std::collections::HashSet;
use std::time::SystemTime;

use prost_types::Timestamp;

use super::durabletask as dt;
use dt::OrchestrationStatus as Status;
use dt::history_event::EventType;
use dt::workflow_action::WorkflowActionType;

/// A workflow instance, as the actor state store keeps it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Instance {
    #[prost(string, tag = "1")]
    pub instance_id: String,
    /// The workflow's name, as the worker registered it.
    #[prost(string, tag = "2")]
    pub name: String,
    /// An [`dt::OrchestrationStatus`].
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(message, optional, tag = "4")]
    pub created: Option<Timestamp>,
    #[prost(message, optional, tag = "5")]
    pub last_updated: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<Timestamp>,
    /// When a workflow scheduled for later may start.
    #[prost(message, optional, tag = "7")]
    pub scheduled_start: Option<Timestamp>,
    /// Its input, output and custom status: JSON text, as the SDKs send it.
    #[prost(string, optional, tag = "8")]
    pub input: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub output: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub custom_status: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub failure: Option<dt::TaskFailureDetails>,
    /// A new one for each run (a `continue_as_new` starts another).
    #[prost(string, tag = "12")]
    pub execution_id: String,
    /// What the workflow has seen, replayed to the worker each time.
    #[prost(message, repeated, tag = "13")]
    pub history: Vec<dt::HistoryEvent>,
    /// What happened since (activity results, timers, raised events), for
    /// the next work item.
    #[prost(message, repeated, tag = "14")]
    pub inbox: Vec<dt::HistoryEvent>,
    /// For a child workflow: its parent, and the parent's task id for it.
    #[prost(string, optional, tag = "15")]
    pub parent_instance_id: Option<String>,
    #[prost(int32, tag = "16")]
    pub parent_task_id: i32,
}

/// What a workflow's step asks of the engine beyond its own history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Run an activity.
    Activity(ActivityTask),
    /// Arm a timer that adds `TimerFired` at `fire_at`.
    Timer { timer_id: i32, fire_at: Timestamp },
    /// Start another workflow (a child, when `parent` is set).
    Start(NewInstance),
    /// Add an event to another instance's inbox.
    Deliver {
        instance_id: String,
        event: Box<dt::HistoryEvent>,
    },
    /// Terminate another instance.
    Terminate {
        instance_id: String,
        output: Option<String>,
        recurse: bool,
    },
}

/// An activity to run for an instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActivityTask {
    pub instance_id: String,
    pub execution_id: String,
    pub task_id: i32,
    pub name: String,
    pub input: Option<String>,
    pub task_execution_id: String,
}

/// A workflow to start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewInstance {
    pub instance_id: String,
    pub name: String,
    pub input: Option<String>,
    pub scheduled_start: Option<Timestamp>,
    /// The parent's instance, name and task id, for a child workflow.
    pub parent: Option<(String, String, i32)>,
}

/// Now, as a protobuf timestamp.
pub(crate) fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A history event of `kind`, stamped now.
pub(crate) fn event(event_id: i32, kind: EventType) -> dt::HistoryEvent {
    dt::HistoryEvent {
        event_id,
        timestamp: Some(now()),
        router: None,
        event_type: Some(kind),
    }
}

/// Whether `status` is final: the instance takes no more events.
pub(crate) fn is_terminal(status: i32) -> bool {
    matches!(
        Status::try_from(status),
        Ok(Status::Completed | Status::Failed | Status::Terminated | Status::Canceled)
    )
}

/// daprd's name for a status (`RUNNING`, `COMPLETED`, ...).
pub(crate) fn status_name(status: i32) -> &'static str {
    match Status::try_from(status) {
        Ok(Status::Running) => "RUNNING",
        Ok(Status::Completed) => "COMPLETED",
        Ok(Status::ContinuedAsNew) => "CONTINUED_AS_NEW",
        Ok(Status::Failed) => "FAILED",
        Ok(Status::Canceled) => "CANCELED",
        Ok(Status::Terminated) => "TERMINATED",
        Ok(Status::Pending) => "PENDING",
        Ok(Status::Suspended) => "SUSPENDED",
        Ok(Status::Stalled) | Err(_) => "UNKNOWN",
    }
}

impl Instance {
    /// A new instance of `new`, pending until a worker starts it.
    pub(crate) fn new(new: &NewInstance, app_id: &str) -> Instance {
        let execution_id = crate::ids::new_uuid();
        let parent_instance = new
            .parent
            .as_ref()
            .map(|(parent_id, parent_name, task_id)| dt::ParentInstanceInfo {
                task_scheduled_id: *task_id,
                name: Some(parent_name.clone()),
                version: None,
                workflow_instance: Some(dt::WorkflowInstance {
                    instance_id: parent_id.clone(),
                    execution_id: None,
                }),
                app_id: Some(app_id.to_string()),
                app_namespace: None,
            });
        let mut started = event(
            -1,
            EventType::ExecutionStarted(dt::ExecutionStartedEvent {
                name: new.name.clone(),
                input: new.input.clone(),
                workflow_instance: Some(dt::WorkflowInstance {
                    instance_id: new.instance_id.clone(),
                    execution_id: Some(execution_id.clone()),
                }),
                parent_instance,
                scheduled_start_timestamp: new.scheduled_start,
                ..Default::default()
            }),
        );
        started.router = Some(router(app_id));
        let created = now();
        Instance {
            instance_id: new.instance_id.clone(),
            name: new.name.clone(),
            status: Status::Pending as i32,
            created: Some(created),
            last_updated: Some(created),
            scheduled_start: new.scheduled_start,
            input: new.input.clone(),
            execution_id,
            inbox: vec![started],
            parent_instance_id: new.parent.as_ref().map(|(id, _, _)| id.clone()),
            parent_task_id: new.parent.as_ref().map_or(0, |(_, _, task)| *task),
            ..Default::default()
        }
    }

    pub(crate) fn is_terminal(&self) -> bool {
        is_terminal(self.status)
    }

    /// Adds `event` for the next work item; `false` if the instance is
    /// done and takes no more.
    pub(crate) fn receive(&mut self, event: dt::HistoryEvent) -> bool {
        if self.is_terminal() {
            return false;
        }
        match event.event_type {
            Some(EventType::ExecutionSuspended(_)) => self.status = Status::Suspended as i32,
            Some(EventType::ExecutionResumed(_)) if self.status == Status::Suspended as i32 => {
                self.status = Status::Running as i32
            }
            _ => {}
        }
        self.inbox.push(event);
        self.last_updated = Some(now());
        true
    }

    /// The work item for this instance's next step: its history and
    /// everything in its inbox, after a `WorkflowStarted` stamped now.
    /// `None` when the inbox is empty.
    pub(crate) fn work_item(&self) -> Option<(dt::WorkflowRequest, Vec<dt::HistoryEvent>)> {
        if self.inbox.is_empty() {
            return None;
        }
        let mut new_events = Vec::with_capacity(self.inbox.len() + 1);
        new_events.push(event(
            -1,
            EventType::WorkflowStarted(dt::WorkflowStartedEvent::default()),
        ));
        new_events.extend(self.inbox.iter().cloned());
        let request = dt::WorkflowRequest {
            instance_id: self.instance_id.clone(),
            execution_id: Some(self.execution_id.clone()),
            past_events: self.history.clone(),
            new_events: new_events.clone(),
            ..Default::default()
        };
        Some((request, new_events))
    }

    /// Applies a worker's answer to the work item that sent `sent` (the
    /// `WorkflowStarted` and the first `sent.len() - 1` inbox events):
    /// they join the history, and each action becomes a history event
    /// and, where it reaches beyond this instance, an [`Effect`].
    pub(crate) fn apply_response(
        &mut self,
        sent: Vec<dt::HistoryEvent>,
        response: dt::WorkflowResponse,
        app_id: &str,
    ) -> Vec<Effect> {
        let taken = sent.len().saturating_sub(1).min(self.inbox.len());
        self.inbox.drain(..taken);
        for event in sent {
            self.apply_status(&event);
            self.history.push(event);
        }
        if response.custom_status.is_some() {
            self.custom_status = response.custom_status;
        }
        self.last_updated = Some(now());
        let mut effects = Vec::new();
        for action in response.actions {
            let id = action.id;
            // Another app's activity or workflow (daprd's cross-app calls):
            // not served here, so the workflow gets a failure it can handle.
            let elsewhere = action
                .router
                .as_ref()
                .and_then(|router| router.target_app_id.as_deref())
                .filter(|target| !target.is_empty() && *target != app_id)
                .map(unsupported_cross_app);
            let Some(kind) = action.workflow_action_type else {
                continue;
            };
            match kind {
                WorkflowActionType::ScheduleTask(task) if elsewhere.is_some() => {
                    self.history.push(event(
                        id,
                        EventType::TaskScheduled(dt::TaskScheduledEvent {
                            name: task.name,
                            input: task.input,
                            task_execution_id: task.task_execution_id.clone(),
                            ..Default::default()
                        }),
                    ));
                    self.inbox.push(event(
                        -1,
                        EventType::TaskFailed(dt::TaskFailedEvent {
                            task_scheduled_id: id,
                            failure_details: elsewhere,
                            task_execution_id: task.task_execution_id,
                            ..Default::default()
                        }),
                    ));
                }
                WorkflowActionType::CreateChildWorkflow(child) if elsewhere.is_some() => {
                    self.history.push(event(
                        id,
                        EventType::ChildWorkflowInstanceCreated(
                            dt::ChildWorkflowInstanceCreatedEvent {
                                instance_id: child.instance_id,
                                name: child.name,
                                input: child.input,
                                ..Default::default()
                            },
                        ),
                    ));
                    self.inbox.push(event(
                        -1,
                        EventType::ChildWorkflowInstanceFailed(
                            dt::ChildWorkflowInstanceFailedEvent {
                                task_scheduled_id: id,
                                failure_details: elsewhere,
                                ..Default::default()
                            },
                        ),
                    ));
                }
                WorkflowActionType::ScheduleTask(task) => {
                    effects.push(Effect::Activity(ActivityTask {
                        instance_id: self.instance_id.clone(),
                        execution_id: self.execution_id.clone(),
                        task_id: id,
                        name: task.name.clone(),
                        input: task.input.clone(),
                        task_execution_id: task.task_execution_id.clone(),
                    }));
                    self.history.push(event(
                        id,
                        EventType::TaskScheduled(dt::TaskScheduledEvent {
                            name: task.name,
                            version: task.version,
                            input: task.input,
                            task_execution_id: task.task_execution_id,
                            ..Default::default()
                        }),
                    ));
                }
                WorkflowActionType::CreateTimer(timer) => {
                    let fire_at = timer.fire_at.unwrap_or_else(now);
                    effects.push(Effect::Timer {
                        timer_id: id,
                        fire_at,
                    });
                    self.history.push(event(
                        id,
                        EventType::TimerCreated(dt::TimerCreatedEvent {
                            fire_at: Some(fire_at),
                            name: timer.name,
                            rerun_parent_instance_info: None,
                            origin: timer.origin.map(timer_origin),
                        }),
                    ));
                }
                WorkflowActionType::CreateChildWorkflow(child) => {
                    effects.push(Effect::Start(NewInstance {
                        instance_id: child.instance_id.clone(),
                        name: child.name.clone(),
                        input: child.input.clone(),
                        scheduled_start: None,
                        parent: Some((self.instance_id.clone(), self.name.clone(), id)),
                    }));
                    self.history.push(event(
                        id,
                        EventType::ChildWorkflowInstanceCreated(
                            dt::ChildWorkflowInstanceCreatedEvent {
                                instance_id: child.instance_id,
                                name: child.name,
                                version: child.version,
                                input: child.input,
                                ..Default::default()
                            },
                        ),
                    ));
                }
                WorkflowActionType::CreateDetachedWorkflow(detached) => {
                    effects.push(Effect::Start(NewInstance {
                        instance_id: detached.instance_id.clone(),
                        name: detached.name,
                        input: detached.input,
                        scheduled_start: detached.scheduled_start_timestamp,
                        parent: None,
                    }));
                    self.history.push(event(
                        id,
                        EventType::DetachedWorkflowInstanceCreated(
                            dt::DetachedWorkflowInstanceCreatedEvent {
                                instance_id: detached.instance_id,
                            },
                        ),
                    ));
                }
                WorkflowActionType::SendEvent(send) => {
                    let target = send.instance.map(|i| i.instance_id).unwrap_or_default();
                    effects.push(Effect::Deliver {
                        instance_id: target.clone(),
                        event: Box::new(event(
                            -1,
                            EventType::EventRaised(dt::EventRaisedEvent {
                                name: send.name.clone(),
                                input: send.data.clone(),
                            }),
                        )),
                    });
                    self.history.push(event(
                        id,
                        EventType::EventSent(dt::EventSentEvent {
                            instance_id: target,
                            name: send.name,
                            input: send.data,
                        }),
                    ));
                }
                WorkflowActionType::TerminateWorkflow(terminate) => {
                    effects.push(Effect::Terminate {
                        instance_id: terminate.instance_id,
                        output: terminate.reason,
                        recurse: terminate.recurse,
                    });
                }
                WorkflowActionType::CompleteWorkflow(complete) => {
                    effects.extend(self.complete(complete, app_id));
                }
                WorkflowActionType::WorkflowVersionNotAvailable(_) => {
                    self.status = Status::Stalled as i32;
                    self.history.push(event(
                        id,
                        EventType::ExecutionStalled(dt::ExecutionStalledEvent {
                            reason: dt::StalledReason::VersionNotAvailable as i32,
                            description: Some("the worker has no version of this workflow".into()),
                        }),
                    ));
                }
            }
        }
        effects
    }

    /// The status an event sets as it joins the history.
    fn apply_status(&mut self, event: &dt::HistoryEvent) {
        match &event.event_type {
            Some(EventType::ExecutionStarted(_)) if self.status == Status::Pending as i32 => {
                self.status = Status::Running as i32
            }
            Some(EventType::ExecutionSuspended(_)) => self.status = Status::Suspended as i32,
            Some(EventType::ExecutionResumed(_)) => self.status = Status::Running as i32,
            _ => {}
        }
    }

    /// The workflow's `CompleteWorkflow` action: done (completed, failed
    /// or terminated), telling a parent; or continued as new, as a new run
    /// with the new input and the events it carries over.
    fn complete(&mut self, complete: dt::CompleteWorkflowAction, app_id: &str) -> Vec<Effect> {
        if complete.workflow_status == Status::ContinuedAsNew as i32 {
            let restarted = Instance::new(
                &NewInstance {
                    instance_id: self.instance_id.clone(),
                    name: self.name.clone(),
                    input: complete.result.clone(),
                    scheduled_start: None,
                    parent: self
                        .parent_instance_id
                        .clone()
                        .map(|parent| (parent, String::new(), self.parent_task_id)),
                },
                app_id,
            );
            let mut inbox = restarted.inbox;
            inbox.extend(complete.carryover_events);
            inbox.append(&mut self.inbox);
            self.inbox = inbox;
            self.history.clear();
            self.execution_id = restarted.execution_id;
            self.input = complete.result;
            self.output = None;
            self.status = Status::Running as i32;
            return Vec::new();
        }
        self.status = complete.workflow_status;
        self.output = complete.result.clone();
        self.failure = complete.failure_details.clone();
        self.completed = Some(now());
        self.inbox.clear();
        self.history.push(event(
            -1,
            EventType::ExecutionCompleted(dt::ExecutionCompletedEvent {
                workflow_status: complete.workflow_status,
                result: complete.result.clone(),
                failure_details: complete.failure_details.clone(),
            }),
        ));
        let Some(parent) = self.parent_instance_id.clone() else {
            return Vec::new();
        };
        let task_scheduled_id = self.parent_task_id;
        let kind = if complete.workflow_status == Status::Completed as i32 {
            EventType::ChildWorkflowInstanceCompleted(dt::ChildWorkflowInstanceCompletedEvent {
                task_scheduled_id,
                result: complete.result,
                ..Default::default()
            })
        } else {
            let failure = complete
                .failure_details
                .unwrap_or_else(|| dt::TaskFailureDetails {
                    error_type: status_name(complete.workflow_status).into(),
                    error_message: format!(
                        "child workflow '{}' ended as {}",
                        self.instance_id,
                        status_name(complete.workflow_status)
                    ),
                    ..Default::default()
                });
            EventType::ChildWorkflowInstanceFailed(dt::ChildWorkflowInstanceFailedEvent {
                task_scheduled_id,
                failure_details: Some(failure),
                ..Default::default()
            })
        };
        vec![Effect::Deliver {
            instance_id: parent,
            event: Box::new(event(-1, kind)),
        }]
    }

    /// What a run left undone when the sidecar stopped: activities
    /// scheduled without a result, and timers created that have not fired
    /// (in the history or waiting in the inbox).
    pub(crate) fn outstanding(&self) -> Vec<Effect> {
        let mut done_tasks = HashSet::new();
        let mut fired = HashSet::new();
        for event in self.history.iter().chain(&self.inbox) {
            match &event.event_type {
                Some(EventType::TaskCompleted(e)) => {
                    done_tasks.insert(e.task_scheduled_id);
                }
                Some(EventType::TaskFailed(e)) => {
                    done_tasks.insert(e.task_scheduled_id);
                }
                Some(EventType::TimerFired(e)) => {
                    fired.insert(e.timer_id);
                }
                _ => {}
            }
        }
        let mut effects = Vec::new();
        for event in &self.history {
            match &event.event_type {
                Some(EventType::TaskScheduled(task)) if !done_tasks.contains(&event.event_id) => {
                    effects.push(Effect::Activity(ActivityTask {
                        instance_id: self.instance_id.clone(),
                        execution_id: self.execution_id.clone(),
                        task_id: event.event_id,
                        name: task.name.clone(),
                        input: task.input.clone(),
                        task_execution_id: task.task_execution_id.clone(),
                    }))
                }
                Some(EventType::TimerCreated(timer)) if !fired.contains(&event.event_id) => effects
                    .push(Effect::Timer {
                        timer_id: event.event_id,
                        fire_at: timer.fire_at.unwrap_or_else(now),
                    }),
                _ => {}
            }
        }
        effects
    }

    /// Whether a timer of this run has fired already.
    pub(crate) fn timer_fired(&self, timer_id: i32) -> bool {
        self.history.iter().chain(&self.inbox).any(
            |e| matches!(&e.event_type, Some(EventType::TimerFired(f)) if f.timer_id == timer_id),
        )
    }

    /// The state the `GetInstance` RPC answers with.
    pub(crate) fn state(&self, with_payloads: bool) -> dt::WorkflowState {
        dt::WorkflowState {
            instance_id: self.instance_id.clone(),
            name: self.name.clone(),
            version: None,
            workflow_status: self.status,
            scheduled_start_timestamp: self.scheduled_start,
            created_timestamp: self.created,
            last_updated_timestamp: self.last_updated,
            input: self.input.clone().filter(|_| with_payloads),
            output: self.output.clone().filter(|_| with_payloads),
            custom_status: self.custom_status.clone().filter(|_| with_payloads),
            failure_details: self.failure.clone(),
            execution_id: Some(self.execution_id.clone()),
            completed_timestamp: self.completed,
            parent_instance_id: self.parent_instance_id.clone(),
            ..Default::default()
        }
    }
}

/// The failure a workflow gets for an activity or child workflow of
/// another app.
fn unsupported_cross_app(target: &str) -> dt::TaskFailureDetails {
    dt::TaskFailureDetails {
        error_type: "CrossAppCallNotSupported".into(),
        error_message: format!(
            "calling app '{target}' from a workflow is not supported by dapr-wasm: run the activity or workflow in this app"
        ),
        is_non_retriable: true,
        ..Default::default()
    }
}

/// The router of this app's events: the SDKs read the app id from it.
fn router(app_id: &str) -> dt::TaskRouter {
    dt::TaskRouter {
        source_app_id: app_id.to_string(),
        target_app_id: None,
        target_app_namespace: None,
    }
}

/// A `CreateTimer` action's origin, as its `TimerCreated` event's.
fn timer_origin(origin: dt::create_timer_action::Origin) -> dt::timer_created_event::Origin {
    use dt::create_timer_action::Origin as From;
    use dt::timer_created_event::Origin as To;
    match origin {
        From::CreateTimer(o) => To::CreateTimer(o),
        From::ExternalEvent(o) => To::ExternalEvent(o),
        From::ActivityRetry(o) => To::ActivityRetry(o),
        From::ChildWorkflowRetry(o) => To::ChildWorkflowRetry(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(name: &str) -> Instance {
        Instance::new(
            &NewInstance {
                instance_id: "wf-1".into(),
                name: name.into(),
                input: Some("\"in\"".into()),
                scheduled_start: None,
                parent: None,
            },
            "app",
        )
    }

    fn action(id: i32, kind: WorkflowActionType) -> dt::WorkflowAction {
        dt::WorkflowAction {
            id,
            router: None,
            workflow_action_type: Some(kind),
        }
    }

    fn respond(instance: &mut Instance, actions: Vec<dt::WorkflowAction>) -> Vec<Effect> {
        let (_, sent) = instance.work_item().expect("a work item");
        instance.apply_response(
            sent,
            dt::WorkflowResponse {
                instance_id: instance.instance_id.clone(),
                actions,
                ..Default::default()
            },
            "app",
        )
    }

    #[test]
    fn a_step_moves_its_events_into_the_history_and_schedules_its_activity() {
        let mut instance = started("order");
        assert_eq!(instance.status, Status::Pending as i32);
        let effects = respond(
            &mut instance,
            vec![action(
                0,
                WorkflowActionType::ScheduleTask(dt::ScheduleTaskAction {
                    name: "pay".into(),
                    input: Some("1".into()),
                    ..Default::default()
                }),
            )],
        );
        assert_eq!(instance.status, Status::Running as i32);
        assert!(instance.inbox.is_empty());
        // WorkflowStarted, ExecutionStarted, TaskScheduled.
        assert_eq!(instance.history.len(), 3);
        assert!(matches!(
            &effects[..],
            [Effect::Activity(ActivityTask { task_id: 0, name, .. })] if name == "pay"
        ));
        // Until its result is in, the activity is outstanding.
        assert_eq!(instance.outstanding(), effects);
        instance.receive(event(
            -1,
            EventType::TaskCompleted(dt::TaskCompletedEvent {
                task_scheduled_id: 0,
                result: Some("2".into()),
                ..Default::default()
            }),
        ));
        assert!(instance.outstanding().is_empty());
        let (request, _) = instance.work_item().expect("the next step");
        assert_eq!(request.past_events.len(), 3);
        assert_eq!(request.new_events.len(), 2);
    }

    #[test]
    fn completing_a_child_tells_its_parent_and_takes_no_more_events() {
        let mut child = Instance::new(
            &NewInstance {
                instance_id: "child".into(),
                name: "step".into(),
                input: None,
                scheduled_start: None,
                parent: Some(("parent".into(), "flow".into(), 7)),
            },
            "app",
        );
        let effects = respond(
            &mut child,
            vec![action(
                -1,
                WorkflowActionType::CompleteWorkflow(dt::CompleteWorkflowAction {
                    workflow_status: Status::Completed as i32,
                    result: Some("42".into()),
                    ..Default::default()
                }),
            )],
        );
        assert_eq!(child.status, Status::Completed as i32);
        assert_eq!(child.output.as_deref(), Some("42"));
        match &effects[..] {
            [Effect::Deliver { instance_id, event }] => {
                assert_eq!(instance_id, "parent");
                assert!(matches!(
                    &event.event_type,
                    Some(EventType::ChildWorkflowInstanceCompleted(c))
                        if c.task_scheduled_id == 7 && c.result.as_deref() == Some("42")
                ));
            }
            other => panic!("unexpected effects {other:?}"),
        }
        assert!(!child.receive(event(
            -1,
            EventType::EventRaised(dt::EventRaisedEvent::default())
        )));
    }

    #[test]
    fn another_apps_activity_fails_in_the_workflow_and_is_not_run() {
        let mut instance = started("order");
        let mut call = action(
            0,
            WorkflowActionType::ScheduleTask(dt::ScheduleTaskAction {
                name: "pay".into(),
                ..Default::default()
            }),
        );
        call.router = Some(dt::TaskRouter {
            source_app_id: "app".into(),
            target_app_id: Some("billing".into()),
            target_app_namespace: None,
        });
        let effects = respond(&mut instance, vec![call]);
        assert!(effects.is_empty(), "{effects:?}");
        let (request, _) = instance.work_item().expect("the failure, as the next step");
        assert!(request.new_events.iter().any(|e| matches!(
            &e.event_type,
            Some(EventType::TaskFailed(f)) if f.task_scheduled_id == 0
                && f.failure_details.as_ref().is_some_and(|d| d.error_message.contains("billing"))
        )));
    }

    #[test]
    fn continue_as_new_starts_a_new_run_with_the_new_input() {
        let mut instance = started("loop");
        let first_run = instance.execution_id.clone();
        respond(
            &mut instance,
            vec![action(
                -1,
                WorkflowActionType::CompleteWorkflow(dt::CompleteWorkflowAction {
                    workflow_status: Status::ContinuedAsNew as i32,
                    result: Some("2".into()),
                    ..Default::default()
                }),
            )],
        );
        assert_eq!(instance.status, Status::Running as i32);
        assert!(instance.history.is_empty());
        assert_ne!(instance.execution_id, first_run);
        let (request, _) = instance.work_item().expect("the new run's first step");
        assert!(matches!(
            &request.new_events[1].event_type,
            Some(EventType::ExecutionStarted(e)) if e.input.as_deref() == Some("2")
        ));
    }
}
