//! Virtual actors, as daprd runs them, on one machine.
//!
//! - **Hosting.** An HTTP app hosts the actor types its `GET /dapr/config`
//!   names (`entities`, with `actorIdleTimeout`, `actorScanInterval` and
//!   `entitiesConfig` per type). The sidecar asks once the app answers,
//!   and records the types in the name registry ([`crate::nameres`]).
//! - **Placement.** Every actor id of a type lives on one of the live
//!   sidecars that host the type, chosen by rendezvous hashing of the
//!   sidecar's address and the id ([`placement`]): every sidecar picks the
//!   same one without asking the others, and a sidecar that comes or goes
//!   moves only the actors it hosted or will host.
//! - **Calls.** `…/actors/{type}/{id}/method/{method}` ([`api`], gRPC
//!   `InvokeActor`) goes to the hosting sidecar, which calls its app with
//!   `PUT /actors/{type}/{id}/method/{method}`, one call at a time per
//!   actor (turn-based, [`Activation`]). An actor is active from its first
//!   call until it is idle for its idle timeout; then the app gets
//!   `DELETE /actors/{type}/{id}`, and its timers stop.
//! - **State** ([`state`]): in the component marked `actorStateStore:
//!   "true"` (the default store without `--resources-path`), under daprd's
//!   keys `<appId>||<type>||<id>||<key>`; written in transactions, by the
//!   sidecar where the actor is active.
//! - **Timers** ([`timers`], in memory, ending with the activation) and
//!   **reminders** ([`reminders`], kept in `jobs.db` with the jobs, so they
//!   outlive restarts) fire as calls of `timer/{name}` and `remind/{name}`.
//! - **Reentrancy** (`reentrancy: {enabled, maxStackDepth}`, for all
//!   types or per type): a call carrying the `Dapr-Reentrancy-Id` of the
//!   call chain that has the actor's turn enters at once, up to
//!   `maxStackDepth` deep (`ERR_ACTOR_STACK_DEPTH` past it); the app gets
//!   each call's chain id to pass on.
//! - **Rebalancing.** An actor that placement moves to another sidecar
//!   (one that joined or came back) is deactivated here, once it is not in
//!   a call.
//! - **Shutdown.** A stopping sidecar deactivates its actors, each once
//!   its call in progress ends (`drainOngoingCallTimeout`, 60 s).
//!
//! Not as daprd: gRPC apps cannot host actors (daprd's actor callback
//! stream is not served).

pub mod api;
mod placement;
mod reminders;
mod state;
mod timers;
pub(crate) mod times;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use serde::Deserialize;
use service_kit::trace::TraceContext;

use crate::Sidecar;
use crate::error::DaprError;

pub(crate) use reminders::{
    ReminderRequest, Stored as StoredReminder, owner as reminder_owner, owner_actor_type,
};
pub(crate) use state::ActorStateOperation;
pub(crate) use timers::TimerRequest;

/// daprd's defaults for an app that names none.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often, at most, a sidecar looks for actors placement moved away.
const REBALANCE_CHECK: Duration = Duration::from_secs(1);

/// The header with which an app (the .NET SDK) says its answer is an
/// actor's error, not a success.
pub(crate) const ERROR_RESPONSE_HEADER: &str = "x-daprerrorresponseheader";
/// The call chain a call belongs to, with reentrancy.
const REENTRANCY_ID_HEADER: &str = "dapr-reentrancy-id";
/// The header with which an app cancels the reminder it was called for.
const REMINDER_CANCEL_HEADER: &str = "x-daprremindercancel";
/// Marks a peer sidecar's answer as the app's (any other answer is the
/// peer's own error, in Dapr's JSON).
const PEER_ANSWER_HEADER: HeaderName = HeaderName::from_static("dapr-wasm-actor-answer");
/// The route on which a sidecar takes calls for the actors it hosts from
/// its peers.
pub(crate) const INTERNAL_PREFIX: &str = "/_dapr-wasm/internal/actors";

/// What the app said it hosts, in `GET /dapr/config`.
#[derive(Debug, Default)]
pub(crate) struct HostConfig {
    /// The actor types.
    pub entities: Vec<String>,
    idle_timeout: Duration,
    scan_interval: Duration,
    /// How long a stopping sidecar waits for an actor's call to end.
    drain_timeout: Duration,
    /// `entitiesConfig`'s idle timeouts, by type.
    idle_by_type: HashMap<String, Duration>,
    /// How deep a call chain may reenter an actor (`None`: reentrancy is
    /// off), for every type and as `entitiesConfig` sets it by type.
    reentrancy: Option<u32>,
    reentrancy_by_type: HashMap<String, Option<u32>>,
}

/// `GET /dapr/config`'s body, as the SDKs write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AppConfigJson {
    entities: Vec<String>,
    actor_idle_timeout: Option<String>,
    actor_scan_interval: Option<String>,
    drain_ongoing_call_timeout: Option<String>,
    reentrancy: Option<ReentrancyJson>,
    entities_config: Vec<EntityConfigJson>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ReentrancyJson {
    enabled: bool,
    max_stack_depth: Option<u32>,
}

/// daprd's default `maxStackDepth`.
const DEFAULT_MAX_STACK_DEPTH: u32 = 32;

impl ReentrancyJson {
    /// The deepest a call chain may reenter, if reentrancy is on.
    fn max_depth(self) -> Option<u32> {
        self.enabled
            .then(|| self.max_stack_depth.unwrap_or(DEFAULT_MAX_STACK_DEPTH))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct EntityConfigJson {
    entities: Vec<String>,
    actor_idle_timeout: Option<String>,
    reentrancy: Option<ReentrancyJson>,
}

/// A duration field of the app's configuration: absent or empty is
/// `default`.
fn config_duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => service_kit::units::parse_duration(text).map_err(|e| format!("{field}: {e}")),
    }
}

impl HostConfig {
    /// Reads the app's `GET /dapr/config` answer.
    pub(crate) fn from_json(body: &[u8]) -> Result<HostConfig, String> {
        let json: AppConfigJson =
            serde_json::from_slice(body).map_err(|e| format!("not the JSON Dapr expects: {e}"))?;
        let idle_timeout = config_duration(
            "actorIdleTimeout",
            json.actor_idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        )?;
        let scan_interval = config_duration(
            "actorScanInterval",
            json.actor_scan_interval.as_deref(),
            DEFAULT_SCAN_INTERVAL,
        )?;
        let drain_timeout = config_duration(
            "drainOngoingCallTimeout",
            json.drain_ongoing_call_timeout.as_deref(),
            DEFAULT_DRAIN_TIMEOUT,
        )?;
        let mut idle_by_type = HashMap::new();
        let reentrancy = json.reentrancy.unwrap_or_default().max_depth();
        let mut reentrancy_by_type = HashMap::new();
        for entity in &json.entities_config {
            let idle = config_duration(
                "entitiesConfig.actorIdleTimeout",
                entity.actor_idle_timeout.as_deref(),
                idle_timeout,
            )?;
            for actor_type in &entity.entities {
                idle_by_type.insert(actor_type.clone(), idle);
                if let Some(own) = entity.reentrancy {
                    reentrancy_by_type.insert(actor_type.clone(), own.max_depth());
                }
            }
        }
        Ok(HostConfig {
            entities: json.entities,
            idle_timeout,
            scan_interval: scan_interval.max(Duration::from_millis(100)),
            drain_timeout,
            idle_by_type,
            reentrancy,
            reentrancy_by_type,
        })
    }

    /// Whether the app hosts `actor_type`.
    pub(crate) fn hosts(&self, actor_type: &str) -> bool {
        self.entities.iter().any(|t| t == actor_type)
    }

    /// How deep a call chain may reenter an actor of `actor_type`, if
    /// reentrancy is on for it.
    fn reentrancy_of(&self, actor_type: &str) -> Option<u32> {
        self.reentrancy_by_type
            .get(actor_type)
            .copied()
            .unwrap_or(self.reentrancy)
    }

    fn idle_timeout_of(&self, actor_type: &str) -> Duration {
        self.idle_by_type
            .get(actor_type)
            .copied()
            .unwrap_or(self.idle_timeout)
    }
}

/// An actor, by type and id.
pub(crate) type ActorKey = (String, String);

/// One active actor on this sidecar: its turn (one call at a time) and
/// when it was last called.
struct Activation {
    turn: Arc<tokio::sync::Mutex<()>>,
    last_used: Mutex<Instant>,
    /// With reentrancy: the call chain that has the turn, and how deep it
    /// is in the actor.
    chain: Mutex<Option<(String, u32)>>,
}

impl Activation {
    /// Enters the actor again for `chain`, if that chain has the turn:
    /// `Some(Ok)` one level deeper, `Some(Err)` past `max_depth`, `None`
    /// when the chain does not have the turn.
    fn reenter(&self, chain: &str, max_depth: u32) -> Option<Result<(), DaprError>> {
        let mut current = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let (id, depth) = current.as_mut().filter(|(id, _)| id == chain)?;
        debug_assert_eq!(id, chain);
        if *depth >= max_depth {
            return Some(Err(DaprError::ActorStackDepth));
        }
        *depth += 1;
        Some(Ok(()))
    }

    /// Leaves one level of the chain that has the turn.
    fn leave(&self) {
        let mut current = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, depth)) = current.as_mut() {
            *depth = depth.saturating_sub(1);
        }
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// The actor runtime's share of the sidecar.
pub struct Actors {
    /// The app's configuration: `None` until the app was asked (an app
    /// without actors gives an empty one).
    host: tokio::sync::watch::Sender<Option<Arc<HostConfig>>>,
    /// This sidecar's HTTP address, as the registry knows it.
    own_address: OnceLock<SocketAddr>,
    /// The actors active here.
    active: Mutex<HashMap<ActorKey, Arc<Activation>>>,
    /// The timers running here ([`timers`]).
    timers: timers::Timers,
    /// Recent placement lookups ([`placement`]).
    hosts_cache: placement::HostsCache,
    /// The active actors placement puts elsewhere, since when: they leave
    /// once that has lasted longer than a lookup is cached (so a stale
    /// list of hosts moves nothing).
    moving: Mutex<HashMap<ActorKey, Instant>>,
    /// The state store marked `actorStateStore`.
    state_store: Option<String>,
}

impl Actors {
    /// An actor runtime whose state lives in `state_store`.
    pub(crate) fn new(state_store: Option<String>) -> Actors {
        Actors {
            host: tokio::sync::watch::Sender::new(None),
            own_address: OnceLock::new(),
            active: Mutex::new(HashMap::new()),
            timers: timers::Timers::default(),
            hosts_cache: placement::HostsCache::default(),
            moving: Mutex::new(HashMap::new()),
            state_store,
        }
    }

    /// The app's configuration, if it was read.
    pub(crate) fn host_config(&self) -> Option<Arc<HostConfig>> {
        self.host.borrow().clone()
    }

    /// The active actors, counted by type (for the metadata API).
    fn active_counts(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        if let Some(host) = self.host_config() {
            for actor_type in &host.entities {
                counts.insert(actor_type.clone(), 0);
            }
        }
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        for (actor_type, _) in active.keys() {
            *counts.entry(actor_type.clone()).or_default() += 1;
        }
        drop(active);
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort();
        counts
    }

    /// The actor runtime as the metadata APIs show it.
    pub(crate) fn runtime_metadata(&self) -> dapr::dapr::proto::runtime::v1::ActorRuntime {
        use dapr::dapr::proto::runtime::v1 as pb;
        let host = self.host_config();
        let status = match host {
            Some(_) => pb::actor_runtime::ActorRuntimeStatus::Running,
            None => pb::actor_runtime::ActorRuntimeStatus::Initializing,
        };
        pb::ActorRuntime {
            runtime_status: status as i32,
            active_actors: self
                .active_counts()
                .into_iter()
                .map(|(r#type, count)| pb::ActiveActorsCount {
                    r#type,
                    count: i32::try_from(count).unwrap_or(i32::MAX),
                })
                .collect(),
            host_ready: host.is_some_and(|h| !h.entities.is_empty()),
            placement: "placement: name registry".into(),
        }
    }

    /// Whether the actor is active on this sidecar.
    pub(crate) fn is_active(&self, key: &ActorKey) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// Whether `activation` is still the actor's (not deactivated since).
    fn is_current(&self, key: &ActorKey, activation: &Arc<Activation>) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, activation))
    }

    /// The actor's activation, made now if it has none.
    fn activate(&self, key: &ActorKey) -> Arc<Activation> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Activation {
                    turn: Arc::new(tokio::sync::Mutex::new(())),
                    last_used: Mutex::new(Instant::now()),
                    chain: Mutex::new(None),
                })
            })
            .clone()
    }
}

/// daprd's check of an actor type, id or reminder name: no `/`, `\`, `#`,
/// `?`, NUL or control characters, and not `.` or `..`.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), DaprError> {
    let bad = |why: String| DaprError::BadRequest(format!("invalid {what}: {why}"));
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.contains(['#', '?', '\0', '/', '\\']) {
        return Err(bad(format!("name contains forbidden character: {name:?}")));
    }
    if let Some(at) = name.bytes().position(|b| b < 0x20 || b == 0x7f) {
        return Err(bad(format!(
            "name contains control character at position {at}: {name:?}"
        )));
    }
    if name == "." || name == ".." {
        return Err(bad(format!("name is a path traversal sequence: {name:?}")));
    }
    Ok(())
}

/// daprd's normalisation of an actor method: no `#`, `?`, NUL or control
/// characters; `.` and `..` segments resolved, never above the method.
pub(crate) fn normalize_method(method: &str) -> Result<String, DaprError> {
    let bad = |why: String| DaprError::BadRequest(format!("invalid actor method: {why}"));
    if method.contains(['#', '?', '\0']) {
        return Err(bad(format!(
            "method contains forbidden character: {method:?}"
        )));
    }
    if let Some(at) = method.bytes().position(|b| b < 0x20 || b == 0x7f) {
        return Err(bad(format!(
            "method contains control character at position {at}: {method:?}"
        )));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in method.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    Ok(segments.join("/"))
}

/// A call of an actor's method.
#[derive(Debug, Clone)]
pub(crate) struct ActorCall {
    pub actor_type: String,
    pub actor_id: String,
    /// Normalised ([`normalize_method`]): `remind/{name}` and
    /// `timer/{name}` for reminders and timers.
    pub method: String,
    /// The caller's headers that go on to the app.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trace: TraceContext,
}

impl ActorCall {
    /// A call of `method` (checked as daprd checks it) with `body`.
    pub(crate) fn new(
        actor_type: &str,
        actor_id: &str,
        method: &str,
        body: Bytes,
        trace: TraceContext,
    ) -> Result<ActorCall, DaprError> {
        validate_name("actorType", actor_type)?;
        validate_name("actorId", actor_id)?;
        Ok(ActorCall {
            actor_type: actor_type.to_string(),
            actor_id: actor_id.to_string(),
            method: normalize_method(method)?,
            headers: HeaderMap::new(),
            body,
            trace,
        })
    }

    fn key(&self) -> ActorKey {
        (self.actor_type.clone(), self.actor_id.clone())
    }

    /// The app's route for this call.
    fn app_route(&self) -> String {
        format!("/actors/{}", self.path())
    }

    /// `{type}/{id}/method/{method}`, each part percent-encoded as a URL
    /// path needs it (an id may hold a space or a `%`).
    fn path(&self) -> String {
        let method: Vec<String> = self.method.split('/').map(path_segment).collect();
        format!(
            "{}/{}/method/{}",
            path_segment(&self.actor_type),
            path_segment(&self.actor_id),
            method.join("/")
        )
    }
}

/// `text` as one segment of a URL path: every byte but RFC 3986's
/// unreserved characters and sub-delimiters (and `:`, `@`) percent-encoded.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The app's answer to an actor call.
#[derive(Debug)]
pub(crate) struct ActorAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ActorAnswer {
    /// Whether the app marked it as the actor's error (the .NET SDK's way).
    pub(crate) fn is_actor_error(&self) -> bool {
        self.headers.contains_key(ERROR_RESPONSE_HEADER)
    }

    /// The answer as the app gave it: status, headers and body (marked so
    /// that no error body replaces it).
    pub(crate) fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .extensions_mut()
            .insert(service_kit::error_body::PassedThrough);
        response
    }

    /// Whether the app asked for the reminder it was called for to end.
    fn cancels_reminder(&self) -> bool {
        self.headers
            .get(REMINDER_CANCEL_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "y" | "on"
                )
            })
    }
}

impl Sidecar {
    /// `Ok` if this sidecar's app hosts `actor_type`, else why not.
    pub(crate) fn check_hosted(&self, actor_type: &str) -> Result<(), String> {
        let hosted = self
            .actors
            .host_config()
            .is_some_and(|host| host.hosts(actor_type));
        if hosted {
            Ok(())
        } else {
            Err(format!(
                "actor type {actor_type} is not hosted by app {}",
                self.config.app_id
            ))
        }
    }

    /// Calls an actor's method wherever the actor lives: on this sidecar's
    /// app, or through the sidecar that hosts it.
    pub(crate) async fn call_actor(&self, call: ActorCall) -> Result<ActorAnswer, DaprError> {
        self.wait_for_actor_host().await;
        let host = self.actor_host(&call.actor_type, &call.actor_id).await?;
        if Some(&host) == self.actors.own_address.get() {
            return self.call_local_actor(call).await;
        }
        self.call_peer_actor(host, call).await
    }

    /// Until this sidecar knows what its app hosts (or the invoke timeout
    /// passes): a call that comes before would not find it.
    async fn wait_for_actor_host(&self) {
        if self.config.app_port.is_none() {
            return;
        }
        let mut host = self.actors.host.subscribe();
        let _ =
            tokio::time::timeout(self.config.invoke_timeout, host.wait_for(Option::is_some)).await;
    }

    /// Calls an actor this sidecar's app hosts: activates it, waits for
    /// its turn, then `PUT /actors/{type}/{id}/method/{method}`.
    pub(crate) async fn call_local_actor(&self, call: ActorCall) -> Result<ActorAnswer, DaprError> {
        self.check_hosted(&call.actor_type)
            .map_err(DaprError::ActorInvoke)?;
        let key = call.key();
        let route = call.app_route();
        let mut headers = call.headers;
        let reentrancy = self
            .actors
            .host_config()
            .and_then(|host| host.reentrancy_of(&call.actor_type));
        let chain = reentrancy.map(|_| {
            headers
                .get(REENTRANCY_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(crate::ids::new_uuid)
        });
        // A call of the chain that has the actor's turn enters at once.
        let reentered = match (&chain, reentrancy) {
            (Some(chain), Some(max_depth)) => {
                let activation = self.actors.activate(&key);
                match activation.reenter(chain, max_depth) {
                    Some(Ok(())) => Some(activation),
                    Some(Err(err)) => return Err(err),
                    None => None,
                }
            }
            _ => None,
        };
        let (activation, turn) = match reentered {
            Some(activation) => (activation, None),
            None => {
                let (activation, turn) = self.take_turn(&key).await?;
                if let Some(chain) = &chain {
                    *activation.chain.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((chain.clone(), 1));
                }
                (activation, Some(turn))
            }
        };
        if let Some(value) = chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(REENTRANCY_ID_HEADER, value);
        }
        headers.remove(axum::http::header::CONTENT_LENGTH);
        if !headers.contains_key(axum::http::header::CONTENT_TYPE) {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let answer = crate::app_channel::call_app(
            self,
            Method::PUT,
            &route,
            headers,
            call.body,
            &call.trace,
            self.config.max_body_size,
        )
        .await;
        activation.touch();
        match turn {
            Some(turn) => {
                *activation.chain.lock().unwrap_or_else(|e| e.into_inner()) = None;
                drop(turn);
            }
            None => activation.leave(),
        }
        let (status, headers, body) = answer.map_err(DaprError::ActorInvoke)?;
        let body = body.map_err(DaprError::ActorInvoke)?;
        let answer = ActorAnswer {
            status,
            headers: crate::invoke::forwardable(&headers),
            body,
        };
        if answer.is_actor_error() {
            return Ok(answer);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(DaprError::ActorInvoke(format!(
                "actor method not found: {}",
                route.trim_start_matches('/')
            )));
        }
        if status != StatusCode::OK {
            return Err(DaprError::ActorInvoke(format!(
                "error from actor service: ({}) {}",
                status.as_u16(),
                String::from_utf8_lossy(&answer.body)
            )));
        }
        Ok(answer)
    }

    /// Waits (up to the invoke timeout) for the actor's turn, activating
    /// it again if it was deactivated meanwhile.
    async fn take_turn(
        &self,
        key: &ActorKey,
    ) -> Result<(Arc<Activation>, tokio::sync::OwnedMutexGuard<()>), DaprError> {
        let limit = self.config.invoke_timeout;
        let _pending = self.metrics.actors.pending_call(&key.0);
        let waited = tokio::time::timeout(limit, async {
            loop {
                let activation = self.actors.activate(key);
                let turn = activation.turn.clone().lock_owned().await;
                if self.actors.is_current(key, &activation) {
                    return (activation, turn);
                }
            }
        })
        .await;
        waited.map_err(|_| {
            DaprError::ActorInvoke(format!("actor {}/{} was busy for {limit:?}", key.0, key.1))
        })
    }

    /// Hands a call to the sidecar at `host`, which hosts the actor.
    async fn call_peer_actor(
        &self,
        host: SocketAddr,
        call: ActorCall,
    ) -> Result<ActorAnswer, DaprError> {
        let uri = format!("http://{host}{INTERNAL_PREFIX}/{}", call.path());
        let mut request = axum::http::Request::builder()
            .method(Method::PUT)
            .uri(uri)
            .body(axum::body::Body::from(call.body))
            .map_err(|e| DaprError::ActorInvoke(e.to_string()))?;
        let mut headers = call.headers;
        headers.remove(axum::http::header::CONTENT_LENGTH);
        call.trace.inject(&mut headers);
        if let Some(token) = self
            .config
            .api_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("dapr-api-token", token);
        }
        *request.headers_mut() = headers;
        let answer = tokio::time::timeout(self.config.invoke_timeout, async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            use http_body_util::BodyExt;
            let body = http_body_util::Limited::new(body, self.config.max_body_size)
                .collect()
                .await
                .map(|b| b.to_bytes());
            Ok::<_, hyper_util::client::legacy::Error>((parts, body))
        })
        .await;
        let (parts, body) = match answer {
            Err(_) => {
                return Err(DaprError::ActorInvoke(format!(
                    "the sidecar at {host} did not answer within {:?}",
                    self.config.invoke_timeout
                )));
            }
            Ok(Err(err)) => {
                self.actors.hosts_cache.forget(&call.actor_type);
                return Err(DaprError::ActorInvoke(format!(
                    "the sidecar at {host} cannot be reached: {}",
                    crate::invoke::error_chain(&err)
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        let body = body.map_err(|e| {
            DaprError::ActorInvoke(format!("the answer from {host} cannot be read: {e}"))
        })?;
        let mut headers = parts.headers;
        if headers.remove(PEER_ANSWER_HEADER).is_some() {
            return Ok(ActorAnswer {
                status: parts.status,
                headers: crate::invoke::forwardable(&headers),
                body,
            });
        }
        Err(DaprError::peer(parts.status, &body))
    }

    /// The actors' share of `run_on`: records this sidecar's address, asks
    /// the app what it hosts, registers that, then deactivates idle actors
    /// until the sidecar stops.
    pub(crate) async fn run_actor_host(self: Arc<Self>, endpoints: crate::nameres::Endpoints) {
        let _ = self.actors.own_address.set(endpoints.http);
        let host = match (self.config.app_port, self.config.app_protocol) {
            (Some(_), crate::args::AppProtocol::Http) => {
                let trace = TraceContext::new_root();
                let asked = self
                    .ask_app_until_answered("actor configuration (GET /dapr/config)", || {
                        crate::app_channel::send_to_app(
                            &self,
                            Method::GET,
                            "/dapr/config",
                            &[],
                            "application/json",
                            Bytes::new(),
                            &trace,
                        )
                    })
                    .await;
                let Some((status, body)) = asked else {
                    return;
                };
                if status.is_success() {
                    HostConfig::from_json(&body).unwrap_or_else(|reason| {
                        tracing::warn!(%reason, "the app's GET /dapr/config cannot be read; it hosts no actors");
                        HostConfig::default()
                    })
                } else {
                    HostConfig::default()
                }
            }
            _ => HostConfig::default(),
        };
        let host = Arc::new(host);
        if !host.entities.is_empty() {
            let registry = self.registry.clone();
            let app_id = self.config.app_id.clone();
            let types = host.entities.clone();
            let registered = tokio::task::spawn_blocking(move || {
                registry.set_actor_types(&app_id, endpoints, &types)
            })
            .await;
            match registered {
                Ok(Ok(())) => {
                    tracing::info!(actor_types = ?host.entities, "hosting actors");
                }
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "cannot register the app's actor types; it hosts none");
                    self.actors
                        .host
                        .send_replace(Some(Arc::new(HostConfig::default())));
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "registering the app's actor types failed");
                    return;
                }
            }
        }
        self.actors.host.send_replace(Some(host.clone()));
        // The trigger loop takes the hosted types' reminders from now on.
        self.jobs.changed();
        if host.entities.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                () = self.shutdown_was_requested() => {
                    self.deactivate_all_actors(host.drain_timeout).await;
                    return;
                }
                () = tokio::time::sleep(host.scan_interval.min(REBALANCE_CHECK)) => {}
            }
            self.deactivate_leaving_actors(&host).await;
        }
    }

    /// Deactivates, once it is not in a call, every actor idle for its
    /// type's idle timeout, and every one that placement now puts on
    /// another sidecar (one joined or came back): its timers stop, and the
    /// app gets `DELETE /actors/{type}/{id}`. A call that waited for it
    /// meanwhile activates it again.
    async fn deactivate_leaving_actors(&self, host: &HostConfig) {
        let active: Vec<(ActorKey, Arc<Activation>)> = self
            .actors
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(key, activation)| (key.clone(), activation.clone()))
            .collect();
        let own = self.actors.own_address.get().copied();
        let mut placed_elsewhere = Vec::new();
        for (key, _) in &active {
            let placed = self.actor_host(&key.0, &key.1).await;
            if placed.is_ok_and(|placed| Some(placed) != own) {
                placed_elsewhere.push(key.clone());
            }
        }
        let moved: Vec<ActorKey> = {
            let mut moving = self.actors.moving.lock().unwrap_or_else(|e| e.into_inner());
            moving.retain(|key, _| placed_elsewhere.contains(key));
            placed_elsewhere
                .into_iter()
                .filter(|key| {
                    let since = *moving.entry(key.clone()).or_insert_with(Instant::now);
                    since.elapsed() > crate::nameres::LOOKUP_CACHE_FOR
                })
                .collect()
        };
        let mut leaving = Vec::new();
        for (key, activation) in active {
            let idle = activation.idle_for() >= host.idle_timeout_of(&key.0);
            if !(idle || moved.contains(&key)) {
                continue;
            }
            // Not in a call; and no call starts until the app was told.
            let Ok(turn) = activation.turn.clone().try_lock_owned() else {
                continue;
            };
            let removed = {
                let mut map = self.actors.active.lock().unwrap_or_else(|e| e.into_inner());
                let current = map.get(&key).is_some_and(|a| Arc::ptr_eq(a, &activation));
                current && map.remove(&key).is_some()
            };
            if removed {
                if !idle {
                    self.metrics.actors.rebalanced(&key.0);
                }
                leaving.push((key, turn));
            }
        }
        self.tell_deactivated(leaving).await;
    }

    /// On shutdown: deactivates every actor once its call in progress
    /// ends (waiting at most `drain` for each), so that the app keeps
    /// nothing of an actor another sidecar will host.
    async fn deactivate_all_actors(&self, drain: Duration) {
        let active: Vec<(ActorKey, Arc<Activation>)> = self
            .actors
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let mut leaving = Vec::with_capacity(active.len());
        for (key, activation) in active {
            match tokio::time::timeout(drain, activation.turn.clone().lock_owned()).await {
                Ok(turn) => leaving.push((key, turn)),
                Err(_) => tracing::warn!(actor_type = %key.0, actor_id = %key.1,
                    "an actor's call did not end within drainOngoingCallTimeout; deactivating it anyway"),
            }
        }
        self.tell_deactivated(leaving).await;
    }

    /// Stops the timers of the actors `leaving` (taken out of the active
    /// ones, their turns held) and tells the app: `DELETE
    /// /actors/{type}/{id}`.
    async fn tell_deactivated(&self, leaving: Vec<(ActorKey, tokio::sync::OwnedMutexGuard<()>)>) {
        for (key, _turn) in leaving {
            self.actors.timers.stop_all_of(&key);
            let route = format!("/actors/{}/{}", path_segment(&key.0), path_segment(&key.1));
            let answer = crate::app_channel::send_to_app(
                self,
                Method::DELETE,
                &route,
                &[],
                "application/json",
                Bytes::new(),
                &TraceContext::new_root(),
            )
            .await;
            let outcome = match answer {
                Ok((status, _)) if status.is_success() => {
                    tracing::debug!(actor_type = %key.0, actor_id = %key.1, "actor deactivated");
                    Ok(())
                }
                Ok((status, body)) => {
                    tracing::warn!(
                        actor_type = %key.0, actor_id = %key.1, status = status.as_u16(),
                        body = %String::from_utf8_lossy(&body), "the app failed an actor's deactivation"
                    );
                    Err(format!("status_code_{}", status.as_u16()))
                }
                Err(reason) => {
                    tracing::warn!(
                        actor_type = %key.0, actor_id = %key.1, %reason,
                        "the app failed an actor's deactivation"
                    );
                    Err("invoke".to_string())
                }
            };
            self.metrics.actors.deactivated(&key.0, outcome);
        }
    }
}

/// The answer a sidecar gives a peer for an actor it hosts: the app's
/// answer, marked as such ([`PEER_ANSWER_HEADER`]), or its own error.
pub(crate) fn peer_answer(answer: Result<ActorAnswer, DaprError>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer {
        Ok(answer) => {
            let mut response = answer.into_response();
            response
                .headers_mut()
                .insert(PEER_ANSWER_HEADER, HeaderValue::from_static("true"));
            response
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_config_as_the_sdks_write_it() {
        let body = br#"{"entities":["Cart","Order"],"actorIdleTimeout":"1h0m0s0ms0\u03bcs",
            "actorScanInterval":"0h0m30s0ms0\u03bcs","drainOngoingCallTimeout":"0h1m0s0ms0\u03bcs",
            "drainRebalancedActors":true,"reentrancy":{"enabled":false},
            "entitiesConfig":[{"entities":["Order"],"actorIdleTimeout":"5s",
                "reentrancy":{"enabled":true,"maxStackDepth":4}}]}"#;
        let config = HostConfig::from_json(body).unwrap();
        assert_eq!(config.entities, ["Cart", "Order"]);
        assert_eq!(config.idle_timeout_of("Cart"), Duration::from_secs(3600));
        assert_eq!(config.idle_timeout_of("Order"), Duration::from_secs(5));
        assert_eq!(config.scan_interval, Duration::from_secs(30));
        assert_eq!(config.reentrancy_of("Cart"), None, "off unless enabled");
        assert_eq!(config.reentrancy_of("Order"), Some(4));
        let on = HostConfig::from_json(br#"{"reentrancy":{"enabled":true}}"#).unwrap();
        assert_eq!(on.reentrancy_of("Any"), Some(DEFAULT_MAX_STACK_DEPTH));
        let empty = HostConfig::from_json(b"{}").unwrap();
        assert!(empty.entities.is_empty());
        assert_eq!(empty.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert!(HostConfig::from_json(br#"{"actorIdleTimeout":"soon"}"#).is_err());
    }

    #[test]
    fn names_and_methods_are_checked_as_daprd_checks_them() {
        for bad in ["", "a/b", "a\\b", "a?b", "a#b", ".", "..", "a\u{1}b"] {
            assert!(validate_name("actorId", bad).is_err(), "{bad:?}");
        }
        validate_name("actorId", "order-7.v2").unwrap();
        assert_eq!(normalize_method("remind/daily").unwrap(), "remind/daily");
        assert_eq!(normalize_method("../../state/x").unwrap(), "state/x");
        assert_eq!(normalize_method("a/./b/../c").unwrap(), "a/c");
        assert!(normalize_method("a?b").is_err());
        let call = ActorCall::new(
            "Cart",
            "user 7%",
            "remind/x y",
            Bytes::new(),
            TraceContext::new_root(),
        )
        .unwrap();
        assert_eq!(
            call.app_route(),
            "/actors/Cart/user%207%25/method/remind/x%20y"
        );
    }
}
