//! The sidecar's errors: one table of HTTP status, gRPC code, Dapr
//! `errorCode` and `ErrorInfo` reason. Over HTTP an error becomes Dapr's
//! JSON body `{errorCode, message}` (one `IntoResponse`); over gRPC a
//! `Status` with a `google.rpc.ErrorInfo` detail (domain `dapr.io`, the
//! reason) in one [`DaprError::to_status`].
//!
//! Codes and statuses follow daprd (`pkg/messages`), so clients written
//! against Dapr see the same errors.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Every error the sidecar's APIs answer with.
#[derive(Debug, thiserror::Error)]
pub enum DaprError {
    /// The request body or a parameter is malformed.
    #[error("failed deserializing HTTP body: {0}")]
    MalformedRequest(String),
    /// The body is over `--max-body-size`.
    #[error("the request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// No app with that id is registered.
    #[error("fail to invoke, id: {0}, err: app id not found")]
    AppNotFound(String),
    /// A gRPC app's failure that cannot be written as JSON for an HTTP
    /// caller (a detail of a type daprd would not know).
    #[error("{0}")]
    MalformedResponse(String),
    /// No app id in the path or in `dapr-app-id`.
    #[error("failed getting app id either from the URL path or the header dapr-app-id")]
    NoAppId,
    /// The target could not be reached or failed mid-way.
    #[error("fail to invoke, id: {id}, err: {reason}")]
    DirectInvoke {
        /// The target app id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// No lock store is configured at all.
    #[error("lock store is not configured")]
    LockStoresNotConfigured,
    /// No lock store of that name.
    #[error("lock store {0} not found")]
    LockStoreNotFound(String),
    /// A lock request lacks a field or has a bad one.
    #[error("{0}")]
    LockRequest(String),
    /// Trying a lock failed.
    #[error("failed to try acquiring lock: {0}")]
    TryLock(String),
    /// Releasing a lock failed.
    #[error("failed to release lock: {0}")]
    Unlock(String),
    /// No configuration store is configured at all.
    #[error("configuration stores not configured")]
    ConfigurationStoresNotConfigured,
    /// No configuration store of that name.
    #[error("configuration store {0} not found")]
    ConfigurationStoreNotFound(String),
    /// Reading items failed.
    #[error("failed to get {keys} from Configuration store {store}: {reason}")]
    ConfigurationGet {
        /// The keys asked for, as daprd writes them (`[a b]`).
        keys: String,
        /// The store.
        store: String,
        /// The cause.
        reason: String,
    },
    /// Watching items failed.
    #[error("failed to subscribe {keys} from Configuration store {store}: {reason}")]
    ConfigurationSubscribe {
        /// The keys asked for, as daprd writes them (`[a b]`).
        keys: String,
        /// The store.
        store: String,
        /// The cause.
        reason: String,
    },
    /// No subscription of that id (to that store).
    #[error("failed to unsubscribe to configuration request {id}: {reason}")]
    ConfigurationUnsubscribe {
        /// The subscription's id.
        id: String,
        /// The cause.
        reason: String,
    },
    /// The call needs an app to send to, and this sidecar has none.
    #[error("{0}")]
    AppChannelNil(&'static str),
    /// No state store of that name.
    #[error("state store {0} is not found")]
    StateStoreNotFound(String),
    /// No state store is configured at all.
    #[error("state store is not configured")]
    StateStoresNotConfigured,
    /// A get failed.
    #[error("fail to get {key} from state store {store}: {reason}")]
    StateGet {
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// The cause.
        reason: String,
    },
    /// A save failed.
    #[error("failed saving state in state store {store}: {reason}")]
    StateSave {
        /// The store.
        store: String,
        /// The cause.
        reason: String,
    },
    /// A delete failed.
    #[error("failed deleting state with key {key}: {reason}")]
    StateDelete {
        /// The key.
        key: String,
        /// The cause.
        reason: String,
    },
    /// An etag did not match (or first-write found the key).
    #[error("possible etag mismatch. error from state store: {0}")]
    EtagMismatch(String),
    /// An etag is not one this sidecar issued.
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    /// A transaction failed.
    #[error("error while executing state transaction: {0}")]
    StateTransaction(String),
    /// No secret store of that name.
    #[error("failed finding secret store with key {0}")]
    SecretStoreNotFound(String),
    /// No secret store is configured.
    #[error("secret store is not configured")]
    SecretStoresNotConfigured,
    /// The secret does not exist or could not be read.
    #[error("failed getting secret with key {key} from secret store {store}: {reason}")]
    SecretGet {
        /// The secret's name.
        key: String,
        /// The store.
        store: String,
        /// The cause.
        reason: String,
    },
    /// No pub/sub component is configured at all.
    #[error("pubsub is not configured")]
    PubsubNotConfigured,
    /// No pub/sub component of that name.
    #[error("pubsub {0} is not found")]
    PubsubNotFound(String),
    /// The component's `allowedTopics` do not include the topic.
    #[error("topic {topic} is not allowed for app id {app_id}")]
    PubsubForbidden {
        /// The topic.
        topic: String,
        /// This sidecar's app id.
        app_id: String,
    },
    /// The event could not be read as a CloudEvent.
    #[error("failed to create the cloud event: {0}")]
    PubsubCloudEvent(String),
    /// The broker refused or failed the publish.
    #[error("error when publish to topic {topic} in pubsub {pubsub}: {reason}")]
    PubsubPublish {
        /// The topic.
        topic: String,
        /// The component.
        pubsub: String,
        /// The cause.
        reason: String,
    },
    /// `DAPR_API_TOKEN` is set and the request lacks it.
    #[error("invalid api token")]
    Unauthorized,
    /// No such route.
    #[error("method {0:?} is not found")]
    NotFound(String),
    /// A gRPC method this sidecar does not serve.
    #[error("{0} is not implemented by this sidecar")]
    Unimplemented(&'static str),
    /// No output binding of that name, or an operation it does not have
    /// (daprd's `ERR_INVOKE_OUTPUT_BINDING`).
    #[error("error invoking output binding {name}: {reason}")]
    BindingInvoke {
        /// The binding.
        name: String,
        /// What went wrong.
        reason: String,
        /// What the binding answered all the same (the HTTP binding's
        /// status and headers), sent back with the error as daprd sends
        /// it: `metadata.<key>` headers over HTTP, metadata over gRPC.
        metadata: HashMap<String, String>,
    },
    /// A jobs request without the named part (`Job is empty`).
    #[error("{0} is empty")]
    JobEmpty(&'static str),
    /// A job without a name.
    #[error("Name is empty")]
    JobNameEmpty,
    /// A job with neither a schedule nor a due time.
    #[error("Schedule is empty")]
    JobScheduleEmpty,
    /// A job scheduled over HTTP with a name in its body too.
    #[error("Set the job name in the url only")]
    JobNameInUrl,
    /// Scheduling failed, with the gRPC code daprd's scheduler gives.
    #[error("failed to schedule job due to: {1}")]
    JobSchedule(tonic::Code, String),
    /// Reading a job failed (or there is none by that name).
    #[error("failed to get job due to: {0}")]
    JobGet(String),
    /// Deleting jobs failed.
    #[error("failed to delete job due to: {0}")]
    JobDelete(String),
    /// Listing jobs failed.
    #[error("failed to list jobs due to: {0}")]
    JobList(String),
    /// A request daprd calls bad (`ERR_BAD_REQUEST`): an actor type, id,
    /// method or reminder name it would refuse.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// No state store is marked `actorStateStore: "true"`.
    #[error(
        "the state store is not configured to use the actor runtime. Have you set the - name: actorStateStore value: \"true\" in your state store component file?"
    )]
    ActorRuntimeNotFound,
    /// An actor state transaction for an actor not active on this sidecar.
    #[error("actor instance is missing")]
    ActorInstanceMissing,
    /// An actor call failed.
    #[error("error invoke actor method: {0}")]
    ActorInvoke(String),
    /// Reading an actor's state failed.
    #[error("error getting actor state: {0}")]
    ActorStateGet(String),
    /// An actor's state transaction failed.
    #[error("error saving actor transaction state: {0}")]
    ActorStateTransaction(String),
    /// Creating a reminder failed.
    #[error("error creating actor reminder: {0}")]
    ActorReminderCreate(String),
    /// Reading reminders failed.
    #[error("error getting actor reminder: {0}")]
    ActorReminderGet(String),
    /// Deleting reminders failed.
    #[error("error deleting actor reminder: {0}")]
    ActorReminderDelete(String),
    /// No reminder by that name.
    #[error("actor reminder not found: {0}")]
    ActorReminderNotFound(String),
    /// A reminder of that name exists and `overwrite` is false.
    #[error("actor reminder already exists: {0}")]
    ActorReminderAlreadyExists(String),
    /// A reminder operation on a sidecar whose app does not host the type.
    #[error("operations on actor reminders are only possible on hosted actor types")]
    ActorReminderNotHosted,
    /// Creating a timer failed.
    #[error("error creating actor timer: {0}")]
    ActorTimerCreate(String),
    /// A reentrant call chain went deeper than `maxStackDepth`.
    #[error("maximum stack depth exceeded")]
    ActorStackDepth,
    /// A workflow request without a workflow name.
    #[error("workflow name is not configured")]
    WorkflowNameMissing,
    /// A workflow request without an instance id.
    #[error("no instance ID was provided")]
    WorkflowInstanceIdMissing,
    /// A new workflow instance's id is too long.
    #[error("workflow instance ID exceeds the max length of {0} characters")]
    WorkflowInstanceIdTooLong(usize),
    /// A new workflow instance's id has characters daprd refuses.
    #[error(
        "workflow instance ID '{0}' is invalid: only alphanumeric and underscore characters are allowed"
    )]
    WorkflowInstanceIdInvalid(String),
    /// Raising an event without its name.
    #[error("missing workflow event name")]
    WorkflowEventNameMissing,
    /// No workflow instance of that id.
    #[error("unable to find workflow with the provided instance ID: {0}")]
    WorkflowNotFound(String),
    /// Starting a workflow failed.
    #[error("error starting workflow '{name}': {reason}")]
    WorkflowStart { name: String, reason: String },
    /// Reading a workflow instance failed.
    #[error("error while getting workflow info on instance '{id}': {reason}")]
    WorkflowGet { id: String, reason: String },
    /// Terminating a workflow instance failed.
    #[error("error terminating workflow '{id}': {reason}")]
    WorkflowTerminate { id: String, reason: String },
    /// Raising an event on a workflow instance failed.
    #[error("error raising event on workflow '{id}': {reason}")]
    WorkflowRaiseEvent { id: String, reason: String },
    /// Pausing a workflow instance failed.
    #[error("error pausing workflow {id}: {reason}")]
    WorkflowPause { id: String, reason: String },
    /// Resuming a workflow instance failed.
    #[error("error resuming workflow {id}: {reason}")]
    WorkflowResume { id: String, reason: String },
    /// Purging a workflow instance failed.
    #[error("error purging workflow {id}: {reason}")]
    WorkflowPurge { id: String, reason: String },
    /// No live sidecar hosts the actor's type.
    #[error("did not find address for actor '{0}'")]
    ActorNoAddress(String),
    /// A peer sidecar's own error, passed on as it gave it.
    #[error("{message}")]
    Peer {
        /// Its HTTP status.
        status: StatusCode,
        /// Its `errorCode`.
        code: String,
        /// Its message.
        message: String,
    },
    /// A `bindings.wasm` function's call failed: where daprd would say
    /// only `ERR_INVOKE_OUTPUT_BINDING`, the function app's own table
    /// keeps the exit code, stderr, timeout or trap apart.
    #[error("output binding {name}: {error}")]
    BindingFunction {
        /// The binding.
        name: String,
        /// The function's failure, as the function app answers it.
        error: function_app::error::ApiError,
    },
}

impl DaprError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        use DaprError::*;
        match self {
            MalformedRequest(_)
            | NoAppId
            | EtagInvalid(_)
            | StateStoreNotFound(_)
            | SecretStoreNotFound(_)
            | PubsubNotConfigured
            | PubsubCloudEvent(_)
            | LockStoreNotFound(_)
            | LockRequest(_)
            | ConfigurationStoreNotFound(_)
            | JobEmpty(_)
            | JobNameEmpty
            | JobScheduleEmpty
            | JobNameInUrl
            | BadRequest(_)
            | ActorInstanceMissing
            | WorkflowNameMissing
            | WorkflowInstanceIdMissing
            | WorkflowInstanceIdTooLong(_)
            | WorkflowInstanceIdInvalid(_)
            | WorkflowEventNameMissing => StatusCode::BAD_REQUEST,
            WorkflowNotFound(_) => StatusCode::NOT_FOUND,
            ActorReminderNotHosted => StatusCode::FORBIDDEN,
            ActorReminderNotFound(_) | ActorNoAddress(_) => StatusCode::NOT_FOUND,
            ActorReminderAlreadyExists(_) => StatusCode::CONFLICT,
            Peer { status, .. } => *status,
            JobSchedule(code, _) => match code {
                tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                tonic::Code::AlreadyExists => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppNotFound(_) | NotFound(_) | PubsubNotFound(_) => StatusCode::NOT_FOUND,
            PubsubForbidden { .. } => StatusCode::FORBIDDEN,
            EtagMismatch(_) => StatusCode::CONFLICT,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            BindingFunction { error, .. } => error.status(),
            BindingInvoke { .. }
            | DirectInvoke { .. }
            | MalformedResponse(_)
            | StateStoresNotConfigured
            | StateGet { .. }
            | StateSave { .. }
            | StateDelete { .. }
            | StateTransaction(_)
            | SecretStoresNotConfigured
            | SecretGet { .. }
            | PubsubPublish { .. }
            | LockStoresNotConfigured
            | TryLock(_)
            | Unlock(_)
            | ConfigurationStoresNotConfigured
            | ConfigurationGet { .. }
            | ConfigurationSubscribe { .. }
            | ConfigurationUnsubscribe { .. }
            | AppChannelNil(_)
            | JobGet(_)
            | JobDelete(_)
            | JobList(_)
            | ActorRuntimeNotFound
            | ActorInvoke(_)
            | ActorStateGet(_)
            | ActorStateTransaction(_)
            | ActorReminderCreate(_)
            | ActorReminderGet(_)
            | ActorReminderDelete(_)
            | ActorTimerCreate(_)
            | ActorStackDepth
            | WorkflowStart { .. }
            | WorkflowGet { .. }
            | WorkflowTerminate { .. }
            | WorkflowRaiseEvent { .. }
            | WorkflowPause { .. }
            | WorkflowResume { .. }
            | WorkflowPurge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Dapr's `errorCode` for this error.
    pub fn code(&self) -> &str {
        use DaprError::*;
        match self {
            MalformedRequest(_) | LockRequest(_) => "ERR_MALFORMED_REQUEST",
            BodyTooLarge(_) => service_kit::error_body::BODY_TOO_LARGE,
            AppNotFound(_) | NoAppId | DirectInvoke { .. } => "ERR_DIRECT_INVOKE",
            MalformedResponse(_) => "ERR_MALFORMED_RESPONSE",
            StateStoreNotFound(_) => "ERR_STATE_STORE_NOT_FOUND",
            StateStoresNotConfigured => "ERR_STATE_STORE_NOT_CONFIGURED",
            StateGet { .. } => "ERR_STATE_GET",
            StateSave { .. } | EtagMismatch(_) | EtagInvalid(_) => "ERR_STATE_SAVE",
            StateDelete { .. } => "ERR_STATE_DELETE",
            StateTransaction(_) => "ERR_STATE_TRANSACTION",
            SecretStoreNotFound(_) => "ERR_SECRET_STORE_NOT_FOUND",
            SecretStoresNotConfigured => "ERR_SECRET_STORES_NOT_CONFIGURED",
            SecretGet { .. } => "ERR_SECRET_GET",
            PubsubNotConfigured => "ERR_PUBSUB_NOT_CONFIGURED",
            PubsubNotFound(_) => "ERR_PUBSUB_NOT_FOUND",
            PubsubForbidden { .. } => "ERR_PUBSUB_FORBIDDEN",
            PubsubCloudEvent(_) => "ERR_PUBSUB_CLOUD_EVENTS_SER",
            PubsubPublish { .. } => "ERR_PUBSUB_PUBLISH_MESSAGE",
            LockStoresNotConfigured => "ERR_LOCK_STORE_NOT_CONFIGURED",
            LockStoreNotFound(_) => "ERR_LOCK_STORE_NOT_FOUND",
            TryLock(_) => "ERR_TRY_LOCK",
            Unlock(_) => "ERR_UNLOCK",
            ConfigurationStoresNotConfigured => "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
            ConfigurationStoreNotFound(_) => "ERR_CONFIGURATION_STORE_NOT_FOUND",
            ConfigurationGet { .. } => "ERR_CONFIGURATION_GET",
            ConfigurationSubscribe { .. } => "ERR_CONFIGURATION_SUBSCRIBE",
            ConfigurationUnsubscribe { .. } => "ERR_CONFIGURATION_UNSUBSCRIBE",
            AppChannelNil(_) => "ERR_APP_CHANNEL_NIL",
            Unauthorized => "ERR_API_UNAUTHORIZED",
            NotFound(_) => service_kit::error_body::NOT_FOUND,
            Unimplemented(_) => "ERR_API_UNIMPLEMENTED",
            BindingInvoke { .. } => "ERR_INVOKE_OUTPUT_BINDING",
            BindingFunction { error, .. } => error.code(),
            JobEmpty(_) => "DAPR_SCHEDULER_EMPTY",
            JobNameEmpty => "DAPR_SCHEDULER_JOB_NAME_EMPTY",
            JobScheduleEmpty => "DAPR_SCHEDULER_SCHEDULE_EMPTY",
            JobNameInUrl => "DAPR_SCHEDULER_JOB_NAME",
            JobSchedule(..) => "DAPR_SCHEDULER_SCHEDULE_JOB",
            JobGet(_) => "DAPR_SCHEDULER_GET_JOB",
            JobDelete(_) => "DAPR_SCHEDULER_DELETE_JOB",
            JobList(_) => "DAPR_SCHEDULER_LIST_JOBS",
            BadRequest(_) => "ERR_BAD_REQUEST",
            ActorRuntimeNotFound => "ERR_ACTOR_RUNTIME_NOT_FOUND",
            ActorInstanceMissing => "ERR_ACTOR_INSTANCE_MISSING",
            ActorInvoke(_) => "ERR_ACTOR_INVOKE_METHOD",
            ActorStateGet(_) => "ERR_ACTOR_STATE_GET",
            ActorStateTransaction(_) => "ERR_ACTOR_STATE_TRANSACTION_SAVE",
            ActorReminderCreate(_) => "ERR_ACTOR_REMINDER_CREATE",
            ActorReminderGet(_) => "ERR_ACTOR_REMINDER_GET",
            ActorReminderDelete(_) => "ERR_ACTOR_REMINDER_DELETE",
            ActorReminderNotFound(_) => "ERR_ACTOR_REMINDER_NOT_FOUND",
            ActorReminderAlreadyExists(_) => "ERR_ACTOR_REMINDER_ALREADY_EXISTS",
            ActorReminderNotHosted => "ERR_ACTOR_REMINDER_NON_HOSTED",
            ActorTimerCreate(_) => "ERR_ACTOR_TIMER_CREATE",
            ActorNoAddress(_) => "ERR_ACTOR_NO_ADDRESS",
            ActorStackDepth => "ERR_ACTOR_STACK_DEPTH",
            WorkflowNameMissing => "ERR_WORKFLOW_NAME_MISSING",
            WorkflowInstanceIdMissing => "ERR_INSTANCE_ID_PROVIDED_MISSING",
            WorkflowInstanceIdTooLong(_) => "ERR_INSTANCE_ID_TOO_LONG",
            WorkflowInstanceIdInvalid(_) => "ERR_INSTANCE_ID_INVALID",
            WorkflowEventNameMissing => "ERR_WORKFLOW_EVENT_NAME_MISSING",
            WorkflowNotFound(_) => "ERR_INSTANCE_ID_NOT_FOUND",
            WorkflowStart { .. } => "ERR_START_WORKFLOW",
            WorkflowGet { .. } => "ERR_GET_WORKFLOW",
            WorkflowTerminate { .. } => "ERR_TERMINATE_WORKFLOW",
            WorkflowRaiseEvent { .. } => "ERR_RAISE_EVENT_WORKFLOW",
            WorkflowPause { .. } => "ERR_PAUSE_WORKFLOW",
            WorkflowResume { .. } => "ERR_RESUME_WORKFLOW",
            WorkflowPurge { .. } => "ERR_PURGE_WORKFLOW",
            Peer { code, .. } => code,
        }
    }

    /// The gRPC code daprd answers this error with.
    pub fn grpc_code(&self) -> tonic::Code {
        use DaprError::*;
        use tonic::Code;
        match self {
            MalformedRequest(_)
            | EtagInvalid(_)
            | StateStoreNotFound(_)
            | SecretStoreNotFound(_)
            | PubsubNotFound(_)
            | PubsubCloudEvent(_)
            | LockStoreNotFound(_)
            | LockRequest(_)
            | ConfigurationStoreNotFound(_)
            | ConfigurationSubscribe { .. }
            | JobEmpty(_)
            | JobNameEmpty
            | JobScheduleEmpty
            | JobNameInUrl
            | BadRequest(_)
            | WorkflowNameMissing
            | WorkflowInstanceIdMissing
            | WorkflowInstanceIdTooLong(_)
            | WorkflowInstanceIdInvalid(_)
            | WorkflowEventNameMissing => Code::InvalidArgument,
            WorkflowNotFound(_) => Code::NotFound,
            JobSchedule(code, _) => *code,
            ActorReminderNotHosted => Code::PermissionDenied,
            ActorReminderNotFound(_) => Code::NotFound,
            ActorReminderAlreadyExists(_) => Code::AlreadyExists,
            ActorNoAddress(_) => Code::FailedPrecondition,
            ActorStackDepth => Code::ResourceExhausted,
            Peer { status, .. } => match status.as_u16() {
                400 => Code::InvalidArgument,
                401 => Code::Unauthenticated,
                403 => Code::PermissionDenied,
                404 => Code::NotFound,
                409 => Code::AlreadyExists,
                413 => Code::ResourceExhausted,
                503 => Code::Unavailable,
                _ => Code::Internal,
            },
            PubsubNotConfigured | LockStoresNotConfigured | ConfigurationStoresNotConfigured => {
                Code::FailedPrecondition
            }
            PubsubForbidden { .. } => Code::PermissionDenied,
            BodyTooLarge(_) => Code::ResourceExhausted,
            AppNotFound(_) | NoAppId | NotFound(_) => Code::NotFound,
            EtagMismatch(_) => Code::Aborted,
            StateStoresNotConfigured | SecretStoresNotConfigured => Code::FailedPrecondition,
            Unauthorized => Code::Unauthenticated,
            Unimplemented(_) => Code::Unimplemented,
            BindingFunction { error, .. } => match error.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
                StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
                status if status.is_client_error() => Code::InvalidArgument,
                _ => Code::Internal,
            },
            BindingInvoke { .. }
            | DirectInvoke { .. }
            | MalformedResponse(_)
            | StateGet { .. }
            | StateSave { .. }
            | StateDelete { .. }
            | StateTransaction(_)
            | SecretGet { .. }
            | PubsubPublish { .. }
            | TryLock(_)
            | Unlock(_)
            | ConfigurationGet { .. }
            | ConfigurationUnsubscribe { .. }
            | AppChannelNil(_)
            | JobGet(_)
            | JobDelete(_)
            | JobList(_)
            | ActorRuntimeNotFound
            | ActorInstanceMissing
            | ActorInvoke(_)
            | ActorStateGet(_)
            | ActorStateTransaction(_)
            | ActorReminderCreate(_)
            | ActorReminderGet(_)
            | ActorReminderDelete(_)
            | ActorTimerCreate(_)
            | WorkflowStart { .. }
            | WorkflowGet { .. }
            | WorkflowTerminate { .. }
            | WorkflowRaiseEvent { .. }
            | WorkflowPause { .. }
            | WorkflowResume { .. }
            | WorkflowPurge { .. } => Code::Internal,
        }
    }

    /// The `google.rpc.ErrorInfo` reason: daprd's `DAPR_*` reason where it
    /// has one, else the `errorCode`.
    pub fn reason(&self) -> &str {
        use DaprError::*;
        match self {
            StateStoreNotFound(_) => "DAPR_STATE_NOT_FOUND",
            StateStoresNotConfigured => "DAPR_STATE_NOT_CONFIGURED",
            EtagMismatch(_) => "DAPR_STATE_ETAG_MISMATCH",
            EtagInvalid(_) => "DAPR_STATE_ETAG_INVALID",
            StateGet { .. } => "DAPR_STATE_GET",
            StateSave { .. } => "DAPR_STATE_SAVE",
            StateDelete { .. } => "DAPR_STATE_DELETE",
            StateTransaction(_) => "DAPR_STATE_TRANSACTION",
            SecretStoreNotFound(_) => "DAPR_SECRET_STORE_NOT_FOUND",
            SecretStoresNotConfigured => "DAPR_SECRET_STORES_NOT_CONFIGURED",
            SecretGet { .. } => "DAPR_SECRET_GET",
            PubsubNotConfigured => "DAPR_PUBSUB_NOT_CONFIGURED",
            PubsubNotFound(_) => "DAPR_PUBSUB_NOT_FOUND",
            PubsubForbidden { .. } => "DAPR_PUBSUB_FORBIDDEN",
            PubsubCloudEvent(_) => "DAPR_PUBSUB_CLOUD_EVENTS_SER",
            PubsubPublish { .. } => "DAPR_PUBSUB_PUBLISH_MESSAGE",
            other => other.code(),
        }
    }

    /// The gRPC status: [`DaprError::grpc_code`], the message, and an
    /// `ErrorInfo` with domain `dapr.io`, [`DaprError::reason`] and the
    /// `errorCode` in its metadata.
    pub fn to_status(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        let details = ErrorDetails::with_error_info(
            self.reason(),
            ERROR_DOMAIN,
            [("errorCode".to_string(), self.code().to_string())],
        );
        if self.grpc_code() == tonic::Code::Internal {
            tracing::warn!(error_code = self.code(), error = %self, "gRPC call failed");
        }
        let mut status =
            tonic::Status::with_error_details(self.grpc_code(), self.to_string(), details);
        if let DaprError::BindingInvoke { metadata, .. } = self {
            crate::bindings::metadata_to_grpc(metadata, status.metadata_mut());
        }
        status
    }
}

impl DaprError {
    /// A peer sidecar's error answer (`{errorCode, message}` with
    /// `status`), to give the caller as the peer gave it.
    pub(crate) fn peer(status: StatusCode, body: &[u8]) -> DaprError {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            error_code: String,
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(body) => DaprError::Peer {
                status,
                code: body.error_code,
                message: body.message,
            },
            Err(_) => DaprError::ActorInvoke(format!(
                "the hosting sidecar answered {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(body)
            )),
        }
    }
}

/// The `ErrorInfo` domain of every Dapr error.
pub const ERROR_DOMAIN: &str = "dapr.io";

impl From<DaprError> for tonic::Status {
    fn from(err: DaprError) -> Self {
        err.to_status()
    }
}

impl IntoResponse for DaprError {
    fn into_response(self) -> Response {
        let mut response =
            service_kit::error_body::error_response(self.status(), self.code(), self.to_string());
        if let DaprError::BindingInvoke { metadata, .. } = self {
            crate::bindings::metadata_to_headers(metadata, response.headers_mut());
        }
        response
    }
}
