//! The workflow engine of one sidecar: its instances, the app's workers
//! connected over `GetWorkItems`, and the work items in between.
//!
//! Every change to an instance is made under one lock ([`Workflows`]'s
//! `state`), then the instance is written whole to the actor state store,
//! then the work it made is sent to a worker ([`Sidecar::pump_workflows`]).
//! A work item a worker took is remembered by its completion token until
//! the worker answers; a worker that goes away has its items sent to
//! another one. After a restart, the instances are read back, and what a
//! run left undone (its inbox, activities without a result, timers that
//! have not fired) is sent or armed again: activities run at least once,
//! as in Dapr.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prost::Message;
use prost_types::Timestamp;
use tokio::sync::{mpsc, watch};

use super::WorkflowError;
use super::durabletask as dt;
use super::instance::{ActivityTask, Effect, Instance, NewInstance, event, is_terminal};
use crate::Sidecar;
use crate::metrics::WorkflowOutcome;
use crate::state::{Concurrency, DeleteRequest, SetRequest};
use dt::OrchestrationStatus as Status;
use dt::history_event::EventType;

/// What a worker's stream carries.
pub(crate) type WorkItemSender = mpsc::UnboundedSender<Result<dt::WorkItem, tonic::Status>>;

/// The workflow engine's state, in [`Sidecar`].
#[derive(Default)]
pub struct Workflows {
    state: Mutex<Engine>,
    /// Bumped on every change, for the RPCs that wait for a status.
    changed: watch::Sender<u64>,
    /// Set once the instances were read back from the store.
    loaded: tokio::sync::OnceCell<()>,
    /// Held while writing to the store, so writes of one instance go out
    /// in order (each writes the newest state).
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Engine {
    instances: HashMap<String, Live>,
    workers: Vec<(u64, WorkItemSender)>,
    next_worker: u64,
    /// Which worker gets the next item.
    turn: usize,
    /// Work waiting for a worker.
    queue: VecDeque<Work>,
    /// Work a worker has, by completion token.
    taken: HashMap<String, Taken>,
}

struct Live {
    instance: Instance,
    /// Whether a step of it is queued or with a worker (one at a time).
    stepping: bool,
}

#[derive(Clone)]
enum Work {
    /// The instance's next step.
    Step(String),
    Activity(ActivityTask),
}

struct Taken {
    worker: u64,
    work: Work,
    /// When the worker was sent it.
    sent_at: std::time::Instant,
    /// For a step: the events it was sent.
    sent: Vec<dt::HistoryEvent>,
}

/// A status to wait for.
#[derive(Clone, Copy)]
pub(crate) enum Awaited {
    /// Anything but pending.
    Started,
    /// Completed, failed or terminated.
    Finished,
}

/// Which instances a purge removes.
pub(crate) enum PurgeTarget {
    One(String),
    Filter(dt::PurgeInstanceFilter),
}

impl Engine {
    /// Queues `id`'s next step unless one is queued or running.
    fn step(&mut self, id: &str) {
        if let Some(live) = self.instances.get_mut(id)
            && !live.stepping
            && !live.instance.inbox.is_empty()
            && !live.instance.is_terminal()
            && !not_yet(live.instance.scheduled_start)
        {
            live.stepping = true;
            self.queue.push_back(Work::Step(id.to_string()));
        }
    }

    /// Adds `event` to `id`'s inbox and queues its next step.
    fn deliver(&mut self, id: &str, event: dt::HistoryEvent) -> Result<(), WorkflowError> {
        let live = self
            .instances
            .get_mut(id)
            .ok_or_else(|| WorkflowError::NotFound(id.to_string()))?;
        if live.instance.receive(event) {
            self.step(id);
        }
        Ok(())
    }

    /// The instance and, for a recursive call, its children that are
    /// still running.
    fn with_children(&self, id: &str, recursive: bool) -> Vec<String> {
        let mut ids = vec![id.to_string()];
        let mut at = 0;
        while recursive && at < ids.len() {
            let parent = ids[at].clone();
            ids.extend(
                self.instances
                    .values()
                    .filter(|l| l.instance.parent_instance_id.as_deref() == Some(&parent))
                    .map(|l| l.instance.instance_id.clone()),
            );
            at += 1;
        }
        ids
    }
}

/// Whether a scheduled start is still ahead.
fn not_yet(start: Option<Timestamp>) -> bool {
    start.is_some_and(|at| until(at) > Duration::ZERO)
}

/// How long until `at` (zero if past).
fn until(at: Timestamp) -> Duration {
    let at = SystemTime::try_from(at).unwrap_or(SystemTime::UNIX_EPOCH);
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

impl Workflows {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many workers are connected now (the metadata APIs show it).
    pub(crate) fn connected_workers(&self) -> i32 {
        i32::try_from(self.engine().workers.len()).unwrap_or(i32::MAX)
    }
}

impl Sidecar {
    /// The actor state store workflows are kept in, as daprd keeps them.
    fn workflow_store(&self) -> Result<&str, WorkflowError> {
        self.actors
            .state_store
            .as_deref()
            .ok_or(WorkflowError::NoStateStore)
    }

    /// The state key prefix of this app's workflows: daprd's actor type for
    /// them (the state building block adds the app id before it).
    fn workflow_key(&self, rest: &str) -> String {
        let app = &self.config.app_id;
        format!("dapr.internal.default.{app}.workflow||{rest}")
    }

    /// Reads the instances back from the store, once, and sends or arms
    /// again what they left undone.
    async fn load_workflows(self: &Arc<Self>) -> Result<(), WorkflowError> {
        self.workflows
            .loaded
            .get_or_try_init(|| async {
                let store = self.workflow_store()?.to_string();
                let index = self
                    .read_state(&store, &self.workflow_key("instances"))
                    .await?;
                let ids: Vec<String> = match index {
                    Some(item) => serde_json::from_slice(&item.value)
                        .map_err(|e| WorkflowError::Corrupt(format!("the workflow index: {e}")))?,
                    None => Vec::new(),
                };
                let mut instances = Vec::new();
                for id in ids {
                    let key = self.workflow_key(&format!("{id}||state"));
                    if let Some(item) = self.read_state(&store, &key).await? {
                        let instance = Instance::decode(item.value.as_slice()).map_err(|e| {
                            WorkflowError::Corrupt(format!("workflow instance {id}: {e}"))
                        })?;
                        instances.push(instance);
                    }
                }
                let mut timers = Vec::new();
                {
                    let mut engine = self.workflows.engine();
                    for instance in instances {
                        let id = instance.instance_id.clone();
                        let done = instance.is_terminal();
                        let undone = if done {
                            Vec::new()
                        } else {
                            instance.outstanding()
                        };
                        let start = instance.scheduled_start.filter(|_| !done);
                        engine.instances.insert(
                            id.clone(),
                            Live {
                                instance,
                                stepping: false,
                            },
                        );
                        for effect in undone {
                            match effect {
                                Effect::Activity(task) => {
                                    engine.queue.push_back(Work::Activity(task))
                                }
                                Effect::Timer { timer_id, fire_at } => {
                                    timers.push((id.clone(), timer_id, fire_at))
                                }
                                _ => {}
                            }
                        }
                        if let Some(start) = start.filter(|s| not_yet(Some(*s))) {
                            timers.push((id.clone(), -1, start));
                        }
                        engine.step(&id);
                    }
                }
                for (id, timer_id, fire_at) in timers {
                    self.arm_timer(id, timer_id, fire_at);
                }
                tracing::info!("workflow instances read back from the state store");
                Ok::<(), WorkflowError>(())
            })
            .await?;
        self.pump_workflows();
        Ok(())
    }

    /// Writes the instances `ids` as they are now (deleting those gone),
    /// and the index of instances when `index` is set.
    async fn persist_workflows(&self, ids: &[String], index: bool) -> Result<(), WorkflowError> {
        let store = self.workflow_store()?.to_string();
        let _writing = self.workflows.writing.lock().await;
        let (writes, deletes, listed) = {
            let engine = self.workflows.engine();
            let mut writes = Vec::new();
            let mut deletes = Vec::new();
            for id in ids {
                let key = self.workflow_key(&format!("{id}||state"));
                match engine.instances.get(id) {
                    Some(live) => writes.push(SetRequest {
                        key,
                        value: live.instance.encode_to_vec(),
                        etag: None,
                        concurrency: Concurrency::LastWrite,
                        ttl_seconds: None,
                    }),
                    None => deletes.push(DeleteRequest {
                        key,
                        etag: None,
                        concurrency: Concurrency::LastWrite,
                    }),
                }
            }
            let listed = index.then(|| {
                let mut ids: Vec<&String> = engine.instances.keys().collect();
                ids.sort();
                serde_json::to_vec(&ids).unwrap_or_default()
            });
            (writes, deletes, listed)
        };
        let mut writes = writes;
        if let Some(listed) = listed {
            writes.push(SetRequest {
                key: self.workflow_key("instances"),
                value: listed,
                etag: None,
                concurrency: Concurrency::LastWrite,
                ttl_seconds: None,
            });
        }
        if !writes.is_empty() {
            self.write_state(&store, writes).await?;
        }
        if !deletes.is_empty() {
            self.remove_state_bulk(&store, deletes).await?;
        }
        Ok(())
    }

    /// Persists `ids` (logging a failure: the engine keeps going from
    /// memory, and the next change writes them again), then sends the work
    /// queued meanwhile and wakes the waiters.
    async fn settle(&self, ids: &[String], index: bool) {
        if let Err(e) = self.persist_workflows(ids, index).await {
            tracing::error!(error = %e, "cannot write workflow state");
        }
        self.pump_workflows();
    }

    /// Sends queued work to the connected workers, in turn.
    pub(crate) fn pump_workflows(&self) {
        {
            let mut engine = self.workflows.engine();
            while !engine.workers.is_empty() {
                let Some(work) = engine.queue.pop_front() else {
                    break;
                };
                let (request, sent) = match &work {
                    Work::Step(id) => {
                        let Some(live) = engine.instances.get_mut(id) else {
                            continue;
                        };
                        match live.instance.work_item() {
                            Some((request, sent)) if !live.instance.is_terminal() => {
                                (dt::work_item::Request::WorkflowRequest(request), sent)
                            }
                            _ => {
                                live.stepping = false;
                                continue;
                            }
                        }
                    }
                    Work::Activity(task) => (
                        dt::work_item::Request::ActivityRequest(dt::ActivityRequest {
                            name: task.name.clone(),
                            version: None,
                            input: task.input.clone(),
                            workflow_instance: Some(dt::WorkflowInstance {
                                instance_id: task.instance_id.clone(),
                                execution_id: Some(task.execution_id.clone()),
                            }),
                            task_id: task.task_id,
                            parent_trace_context: None,
                            task_execution_id: task.task_execution_id.clone(),
                            propagated_history: None,
                        }),
                        Vec::new(),
                    ),
                };
                let token = crate::ids::new_uuid();
                let item = dt::WorkItem {
                    completion_token: token.clone(),
                    request: Some(request),
                };
                let at = engine.turn % engine.workers.len();
                engine.turn = engine.turn.wrapping_add(1);
                let (worker, sender) = engine.workers[at].clone();
                if sender.send(Ok(item)).is_err() {
                    engine.workers.remove(at);
                    engine.queue.push_front(work);
                    continue;
                }
                engine.taken.insert(
                    token,
                    Taken {
                        worker,
                        work,
                        sent,
                        sent_at: std::time::Instant::now(),
                    },
                );
            }
        }
        self.workflows
            .changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A worker's `GetWorkItems` stream: it gets work from now until it
    /// goes away, when what it had is sent to another.
    pub(crate) async fn connect_worker(
        self: &Arc<Self>,
    ) -> Result<mpsc::UnboundedReceiver<Result<dt::WorkItem, tonic::Status>>, WorkflowError> {
        self.load_workflows().await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let id = {
            let mut engine = self.workflows.engine();
            engine.next_worker += 1;
            let id = engine.next_worker;
            engine.workers.push((id, sender.clone()));
            id
        };
        tracing::info!(worker = id, "a workflow worker connected");
        let sidecar = self.clone();
        tokio::spawn(async move {
            // A stopping sidecar ends the stream (its server waits for
            // every stream to end before it stops).
            tokio::select! {
                () = sender.closed() => {}
                () = sidecar.shutdown_was_requested() => {}
            }
            sidecar.disconnect_worker(id);
        });
        self.pump_workflows();
        Ok(receiver)
    }

    fn disconnect_worker(&self, id: u64) {
        {
            let mut engine = self.workflows.engine();
            engine.workers.retain(|(worker, _)| *worker != id);
            let lost: Vec<String> = engine
                .taken
                .iter()
                .filter(|(_, taken)| taken.worker == id)
                .map(|(token, _)| token.clone())
                .collect();
            for token in lost {
                if let Some(taken) = engine.taken.remove(&token) {
                    engine.queue.push_front(taken.work);
                }
            }
        }
        tracing::info!(worker = id, "a workflow worker went away");
        self.pump_workflows();
    }

    /// Starts a workflow instance; an instance of that id that has ended
    /// is replaced, as in daprd.
    pub(crate) async fn start_workflow(
        self: &Arc<Self>,
        new: NewInstance,
    ) -> Result<String, WorkflowError> {
        let started = std::time::Instant::now();
        let result = async {
            self.load_workflows().await?;
            let id = new.instance_id.clone();
            let start = new.scheduled_start;
            {
                let mut engine = self.workflows.engine();
                if engine
                    .instances
                    .get(&id)
                    .is_some_and(|live| !live.instance.is_terminal())
                {
                    return Err(WorkflowError::AlreadyExists(id));
                }
                let instance = Instance::new(&new, &self.config.app_id);
                engine.instances.insert(
                    id.clone(),
                    Live {
                        instance,
                        stepping: false,
                    },
                );
                engine.step(&id);
            }
            if let Err(e) = self
                .persist_workflows(std::slice::from_ref(&id), true)
                .await
            {
                self.workflows.engine().instances.remove(&id);
                return Err(e);
            }
            if let Some(start) = start.filter(|s| not_yet(Some(*s))) {
                self.arm_timer(id.clone(), -1, start);
            }
            self.pump_workflows();
            Ok(id)
        }
        .await;
        self.workflow_operation("create_workflow", started, result)
    }

    /// An instance, as the engine has it now.
    pub(crate) async fn workflow_instance(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<Instance>, WorkflowError> {
        let started = std::time::Instant::now();
        let result = async {
            self.load_workflows().await?;
            Ok(self
                .workflows
                .engine()
                .instances
                .get(id)
                .map(|live| live.instance.clone()))
        }
        .await;
        self.workflow_operation("get_workflow", started, result)
    }

    /// Records an operation on instances in daprd's workflow metrics.
    fn workflow_operation<T>(
        &self,
        operation: &str,
        started: std::time::Instant,
        result: Result<T, WorkflowError>,
    ) -> Result<T, WorkflowError> {
        let outcome = if result.is_ok() {
            WorkflowOutcome::Success
        } else {
            WorkflowOutcome::Failed
        };
        self.metrics
            .workflows
            .operation(operation, outcome, started.elapsed());
        result
    }

    /// Every instance's id.
    pub(crate) async fn workflow_instance_ids(
        self: &Arc<Self>,
    ) -> Result<Vec<String>, WorkflowError> {
        self.load_workflows().await?;
        Ok(self.workflows.engine().instances.keys().cloned().collect())
    }

    /// Waits until `id` has started or finished; `None` if there is no
    /// such instance. (The caller's deadline bounds the wait.)
    pub(crate) async fn wait_for_workflow(
        self: &Arc<Self>,
        id: &str,
        awaited: Awaited,
    ) -> Result<Option<Instance>, WorkflowError> {
        self.load_workflows().await?;
        let mut changes = self.workflows.changed.subscribe();
        loop {
            {
                let engine = self.workflows.engine();
                let Some(live) = engine.instances.get(id) else {
                    return Ok(None);
                };
                let reached = match awaited {
                    Awaited::Started => live.instance.status != Status::Pending as i32,
                    Awaited::Finished => is_terminal(live.instance.status),
                };
                if reached {
                    return Ok(Some(live.instance.clone()));
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Ok(None);
                },
                () = self.shutdown_was_requested() => return Err(WorkflowError::Stopping),
            }
        }
    }

    /// Adds an event to an instance's inbox (an instance that has ended
    /// takes none, and that is no error).
    pub(crate) async fn deliver_workflow_event(
        self: &Arc<Self>,
        id: &str,
        event: dt::HistoryEvent,
    ) -> Result<(), WorkflowError> {
        let started = std::time::Instant::now();
        let result = async {
            self.load_workflows().await?;
            self.workflows.engine().deliver(id, event)?;
            self.settle(&[id.to_string()], false).await;
            Ok(())
        }
        .await;
        self.workflow_operation("add_event", started, result)
    }

    /// Raises the event `name` on an instance.
    pub(crate) async fn raise_workflow_event(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        input: Option<String>,
    ) -> Result<(), WorkflowError> {
        let raised = EventType::EventRaised(dt::EventRaisedEvent {
            name: name.to_string(),
            input,
        });
        self.deliver_workflow_event(id, event(-1, raised)).await
    }

    /// Suspends (`suspend`) or resumes an instance.
    pub(crate) async fn suspend_workflow(
        self: &Arc<Self>,
        id: &str,
        suspend: bool,
        reason: Option<String>,
    ) -> Result<(), WorkflowError> {
        let kind = if suspend {
            EventType::ExecutionSuspended(dt::ExecutionSuspendedEvent { input: reason })
        } else {
            EventType::ExecutionResumed(dt::ExecutionResumedEvent { input: reason })
        };
        self.deliver_workflow_event(id, event(-1, kind)).await
    }

    /// Terminates an instance (and, `recursive`, its running children):
    /// the worker's next step of each ends it as terminated, with `output`.
    pub(crate) async fn terminate_workflow(
        self: &Arc<Self>,
        id: &str,
        output: Option<String>,
        recursive: bool,
    ) -> Result<(), WorkflowError> {
        let started = std::time::Instant::now();
        let result = async {
            self.load_workflows().await?;
            let ids = {
                let mut engine = self.workflows.engine();
                if !engine.instances.contains_key(id) {
                    return Err(WorkflowError::NotFound(id.to_string()));
                }
                let ids = engine.with_children(id, recursive);
                for target in &ids {
                    let terminated = EventType::ExecutionTerminated(dt::ExecutionTerminatedEvent {
                        input: output.clone(),
                        recurse: recursive,
                    });
                    // A child that has ended already takes no event; that is fine.
                    let _ = engine.deliver(target, event(-1, terminated));
                }
                ids
            };
            self.settle(&ids, false).await;
            Ok(())
        }
        .await;
        self.workflow_operation("add_event", started, result)
    }

    /// Removes instances that have ended (any, with `force`), with their
    /// children when `recursive`; how many were removed.
    pub(crate) async fn purge_workflows(
        self: &Arc<Self>,
        target: PurgeTarget,
        recursive: bool,
        force: bool,
    ) -> Result<usize, WorkflowError> {
        let started = std::time::Instant::now();
        let result = async {
            self.load_workflows().await?;
            let removed = {
                let mut engine = self.workflows.engine();
                let roots: Vec<String> = match &target {
                    PurgeTarget::One(id) => {
                        let live = engine
                            .instances
                            .get(id)
                            .ok_or_else(|| WorkflowError::NotFound(id.clone()))?;
                        if !force && !live.instance.is_terminal() {
                            return Err(WorkflowError::NotFinished(id.clone()));
                        }
                        vec![id.clone()]
                    }
                    PurgeTarget::Filter(filter) => engine
                        .instances
                        .values()
                        .filter(|live| matches_filter(&live.instance, filter))
                        .map(|live| live.instance.instance_id.clone())
                        .collect(),
                };
                let mut removed = Vec::new();
                for root in roots {
                    for id in engine.with_children(&root, recursive) {
                        let ended = engine
                            .instances
                            .get(&id)
                            .is_some_and(|live| force || live.instance.is_terminal());
                        if ended && engine.instances.remove(&id).is_some() {
                            removed.push(id);
                        }
                    }
                }
                removed
            };
            if !removed.is_empty() {
                self.persist_workflows(&removed, true).await?;
            }
            self.pump_workflows();
            Ok(removed.len())
        }
        .await;
        self.workflow_operation("purge_workflow", started, result)
    }

    /// A worker's answer to a step: applied to the instance, and what it
    /// asked for carried out.
    pub(crate) async fn complete_workflow_step(
        self: &Arc<Self>,
        response: dt::WorkflowResponse,
    ) -> Result<(), WorkflowError> {
        let id = response.instance_id.clone();
        let (effects, execution_id) = {
            let mut engine = self.workflows.engine();
            let taken = take(
                &mut engine,
                &response.completion_token,
                |work| matches!(work, Work::Step(step) if *step == id),
            )?;
            let Some(live) = engine.instances.get_mut(&id) else {
                // Purged meanwhile.
                return Ok(());
            };
            live.stepping = false;
            let effects = live
                .instance
                .apply_response(taken.sent, response, &self.config.app_id);
            if let Some(outcome) = execution_outcome(live.instance.status) {
                let ran = live
                    .instance
                    .created
                    .and_then(|at| SystemTime::try_from(at).ok())
                    .and_then(|at| at.elapsed().ok())
                    .unwrap_or_default();
                self.metrics
                    .workflows
                    .execution(&live.instance.name, outcome, ran);
            }
            let execution_id = live.instance.execution_id.clone();
            engine.step(&id);
            (effects, execution_id)
        };
        let mut touched = vec![id.clone()];
        let mut index = false;
        for effect in effects {
            match effect {
                Effect::Activity(task) => self
                    .workflows
                    .engine()
                    .queue
                    .push_back(Work::Activity(task)),
                Effect::Timer { timer_id, fire_at } => {
                    self.arm_timer_of_run(id.clone(), execution_id.clone(), timer_id, fire_at)
                }
                Effect::Deliver { instance_id, event } => {
                    if let Err(e) = self.workflows.engine().deliver(&instance_id, *event) {
                        tracing::warn!(instance = %id, error = %e, "a workflow's event was not delivered");
                    }
                    touched.push(instance_id);
                }
                Effect::Start(new) => {
                    let child = new.instance_id.clone();
                    let parent = new.parent.clone();
                    let mut engine = self.workflows.engine();
                    if engine
                        .instances
                        .get(&child)
                        .is_some_and(|live| !live.instance.is_terminal())
                    {
                        drop(engine);
                        tracing::warn!(instance = %id, child = %child, "a workflow started an instance that exists");
                        if let Some((parent_id, _, task_id)) = parent {
                            let failed = self.child_start_failed(&child, task_id);
                            let _ = self.workflows.engine().deliver(&parent_id, failed);
                        }
                        continue;
                    }
                    let instance = Instance::new(&new, &self.config.app_id);
                    let start = instance.scheduled_start;
                    engine.instances.insert(
                        child.clone(),
                        Live {
                            instance,
                            stepping: false,
                        },
                    );
                    engine.step(&child);
                    drop(engine);
                    if let Some(start) = start.filter(|s| not_yet(Some(*s))) {
                        self.arm_timer(child.clone(), -1, start);
                    }
                    touched.push(child);
                    index = true;
                }
                Effect::Terminate {
                    instance_id,
                    output,
                    recurse,
                } => {
                    let sidecar = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sidecar
                            .terminate_workflow(&instance_id, output, recurse)
                            .await
                        {
                            tracing::warn!(instance = %instance_id, error = %e, "a workflow could not terminate another");
                        }
                    });
                }
            }
        }
        self.settle(&touched, index).await;
        Ok(())
    }

    /// The event a parent gets when its child could not be started.
    fn child_start_failed(&self, child: &str, task_id: i32) -> dt::HistoryEvent {
        event(
            -1,
            EventType::ChildWorkflowInstanceFailed(dt::ChildWorkflowInstanceFailedEvent {
                task_scheduled_id: task_id,
                failure_details: Some(dt::TaskFailureDetails {
                    error_type: "WorkflowAlreadyExists".into(),
                    error_message: format!("a workflow instance '{child}' is running already"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
    }

    /// A worker's answer to an activity: its result (or failure) goes to
    /// the instance's inbox.
    pub(crate) async fn complete_activity(
        self: &Arc<Self>,
        response: dt::ActivityResponse,
    ) -> Result<(), WorkflowError> {
        let id = response.instance_id.clone();
        let task_id = response.task_id;
        let task_execution_id = {
            let mut engine = self.workflows.engine();
            let taken = take(
                &mut engine,
                &response.completion_token,
                |work| matches!(work, Work::Activity(task) if task.instance_id == id && task.task_id == task_id),
            )?;
            let Work::Activity(task) = taken.work else {
                return Ok(());
            };
            let outcome = if response.failure_details.is_some() {
                WorkflowOutcome::Failed
            } else {
                WorkflowOutcome::Success
            };
            self.metrics
                .workflows
                .activity(&task.name, outcome, taken.sent_at.elapsed());
            task.task_execution_id
        };
        let kind = match response.failure_details {
            Some(failure) => EventType::TaskFailed(dt::TaskFailedEvent {
                task_scheduled_id: task_id,
                failure_details: Some(failure),
                task_execution_id,
                ..Default::default()
            }),
            None => EventType::TaskCompleted(dt::TaskCompletedEvent {
                task_scheduled_id: task_id,
                result: response.result,
                task_execution_id,
                ..Default::default()
            }),
        };
        match self.deliver_workflow_event(&id, event(-1, kind)).await {
            // Purged meanwhile: nothing waits for the result.
            Err(WorkflowError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Arms a timer of `id`'s current run (`timer_id` -1: its scheduled
    /// start).
    fn arm_timer(self: &Arc<Self>, id: String, timer_id: i32, fire_at: Timestamp) {
        let run = self
            .workflows
            .engine()
            .instances
            .get(&id)
            .map(|live| live.instance.execution_id.clone())
            .unwrap_or_default();
        self.arm_timer_of_run(id, run, timer_id, fire_at);
    }

    /// Arms a timer that, at `fire_at`, adds `TimerFired` to the instance
    /// if it is still on run `execution_id` (or, for a scheduled start,
    /// queues its first step).
    fn arm_timer_of_run(
        self: &Arc<Self>,
        id: String,
        execution_id: String,
        timer_id: i32,
        fire_at: Timestamp,
    ) {
        let sidecar = self.clone();
        tokio::spawn(async move {
            // A stopping sidecar leaves its timers to the one that reads
            // the instances back.
            tokio::select! {
                () = tokio::time::sleep(until(fire_at)) => {}
                () = sidecar.shutdown_was_requested() => return,
            }
            {
                let mut engine = sidecar.workflows.engine();
                let Some(live) = engine.instances.get_mut(&id) else {
                    return;
                };
                if live.instance.execution_id != execution_id || live.instance.is_terminal() {
                    return;
                }
                if timer_id >= 0 && !live.instance.timer_fired(timer_id) {
                    let fired = EventType::TimerFired(dt::TimerFiredEvent {
                        fire_at: Some(fire_at),
                        timer_id,
                    });
                    live.instance.receive(event(-1, fired));
                }
                engine.step(&id);
            }
            sidecar.settle(&[id], false).await;
        });
    }
}

/// Takes the work an answer is for: the one its completion token names,
/// or, for a worker that sends no token (older SDKs, such as
/// `@dapr/durabletask-js` 1.0), the first taken work it matches, as
/// durabletask-go matches answers by instance and task id.
fn take(
    engine: &mut Engine,
    token: &str,
    expected: impl Fn(&Work) -> bool,
) -> Result<Taken, WorkflowError> {
    let token = match engine.taken.get(token) {
        Some(taken) if expected(&taken.work) => token.to_string(),
        Some(_) => return Err(WorkflowError::UnknownToken),
        None => engine
            .taken
            .iter()
            .find(|(_, taken)| expected(&taken.work))
            .map(|(token, _)| token.clone())
            .ok_or(WorkflowError::UnknownToken)?,
    };
    engine
        .taken
        .remove(&token)
        .ok_or(WorkflowError::UnknownToken)
}

/// How a run that ended with `status` is counted (`None`: it has not
/// ended).
fn execution_outcome(status: i32) -> Option<WorkflowOutcome> {
    match Status::try_from(status) {
        Ok(Status::Completed) => Some(WorkflowOutcome::Success),
        Ok(Status::Failed) => Some(WorkflowOutcome::Failed),
        Ok(Status::Terminated | Status::Canceled) => Some(WorkflowOutcome::Terminated),
        _ => None,
    }
}

/// Whether a purge filter selects `instance` (it must have ended).
fn matches_filter(instance: &Instance, filter: &dt::PurgeInstanceFilter) -> bool {
    let created = instance.created.map(|t| (t.seconds, t.nanos));
    let from = filter.created_time_from.map(|t| (t.seconds, t.nanos));
    let to = filter.created_time_to.map(|t| (t.seconds, t.nanos));
    instance.is_terminal()
        && from.is_none_or(|from| created >= Some(from))
        && to.is_none_or(|to| created < Some(to))
        && (filter.runtime_status.is_empty() || filter.runtime_status.contains(&instance.status))
}
