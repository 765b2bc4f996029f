//! What this sidecar's app hosts, and the actors active here: the app's
//! `GET /dapr/config` ([`HostConfig`]), each active actor's turn
//! ([`Activation`]), and their lifecycle: registering the hosted types,
//! deactivating idle actors and those placement moved away, and all of
//! them when the sidecar stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use serde::Deserialize;
use service_kit::trace::TraceContext;

use super::{ActorKey, placement, timers};
use crate::Sidecar;
use crate::error::DaprError;

/// daprd's defaults for an app that names none.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often, at most, a sidecar looks for actors placement moved away.
const REBALANCE_CHECK: Duration = Duration::from_secs(1);

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
    pub(super) fn reentrancy_of(&self, actor_type: &str) -> Option<u32> {
        self.reentrancy_by_type
            .get(actor_type)
            .copied()
            .unwrap_or(self.reentrancy)
    }

    pub(super) fn idle_timeout_of(&self, actor_type: &str) -> Duration {
        self.idle_by_type
            .get(actor_type)
            .copied()
            .unwrap_or(self.idle_timeout)
    }
}

/// One active actor on this sidecar: its turn (one call at a time) and
/// when it was last called.
pub(super) struct Activation {
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
    pub(super) last_used: Mutex<Instant>,
    /// With reentrancy: the call chain that has the turn, and how deep it
    /// is in the actor.
    pub(super) chain: Mutex<Option<(String, u32)>>,
}

impl Activation {
    /// Enters the actor again for `chain`, if that chain has the turn:
    /// `Some(Ok)` one level deeper, `Some(Err)` past `max_depth`, `None`
    /// when the chain does not have the turn.
    pub(super) fn reenter(&self, chain: &str, max_depth: u32) -> Option<Result<(), DaprError>> {
        let mut current = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        let (_, depth) = current.as_mut().filter(|(id, _)| id == chain)?;
        if *depth >= max_depth {
            return Some(Err(DaprError::ActorStackDepth));
        }
        *depth += 1;
        Some(Ok(()))
    }

    /// Leaves one level of the chain that has the turn.
    pub(super) fn leave(&self) {
        let mut current = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, depth)) = current.as_mut() {
            *depth = depth.saturating_sub(1);
        }
    }

    pub(super) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    pub(super) fn idle_for(&self) -> Duration {
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
    pub(super) host: tokio::sync::watch::Sender<Option<Arc<HostConfig>>>,
    /// This sidecar's HTTP address, as the registry knows it.
    pub(super) own_address: OnceLock<SocketAddr>,
    /// The actors active here.
    pub(super) active: Mutex<HashMap<ActorKey, Arc<Activation>>>,
    /// The timers running here ([`timers`]).
    pub(super) timers: timers::Timers,
    /// Recent placement lookups ([`placement`]).
    pub(super) hosts_cache: placement::HostsCache,
    /// The active actors placement puts elsewhere, since when: they leave
    /// once that has lasted longer than a lookup is cached (so a stale
    /// list of hosts moves nothing).
    pub(super) moving: Mutex<HashMap<ActorKey, Instant>>,
    /// The state store marked `actorStateStore`.
    pub(crate) state_store: Option<String>,
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
    pub(super) fn is_current(&self, key: &ActorKey, activation: &Arc<Activation>) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, activation))
    }

    /// The actor's activation, made now if it has none.
    pub(super) fn activate(&self, key: &ActorKey) -> Arc<Activation> {
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

impl Sidecar {
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
            let route = format!(
                "/actors/{}/{}",
                super::calls::path_segment(&key.0),
                super::calls::path_segment(&key.1)
            );
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
}
