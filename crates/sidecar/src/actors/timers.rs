//! Actor timers: in memory on the sidecar where they were made, each a
//! task that calls the actor's `timer/{name}` with `{callback, data,
//! dueTime, period}` at its times ([`super::times`]), until its period
//! ends, it is deleted, replaced by one of the same name, or the actor is
//! deactivated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::times::Times;
use super::{ActorCall, ActorKey};
use crate::Sidecar;
use crate::error::DaprError;

/// A timer as the APIs take it.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerRequest {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    pub due_time: String,
    pub period: String,
    pub ttl: String,
    pub callback: String,
    /// The data, as JSON (`None`: none).
    pub data: Option<serde_json::Value>,
}

/// The running timers, by actor and name.
#[derive(Default)]
pub(super) struct Timers {
    running: Mutex<HashMap<(ActorKey, String), tokio::task::AbortHandle>>,
}

impl Timers {
    fn replace(&self, key: (ActorKey, String), task: tokio::task::AbortHandle) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = running.insert(key, task) {
            old.abort();
        }
    }

    fn stop(&self, key: &(ActorKey, String)) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = running.remove(key) {
            task.abort();
        }
    }

    /// Stops every timer of `actor` (it was deactivated).
    pub(super) fn stop_all_of(&self, actor: &ActorKey) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|(of, _), task| {
            let keep = of != actor;
            if !keep {
                task.abort();
            }
            keep
        });
    }

    /// Forgets a timer that ended by itself (unless a new one of its name
    /// replaced it).
    fn ended(&self, key: &(ActorKey, String), id: tokio::task::Id) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(key).is_some_and(|task| task.id() == id) {
            running.remove(key);
        }
    }
}

/// Milliseconds from now until `at` (Unix milliseconds), none if past.
fn until(at: i64) -> Duration {
    Duration::from_millis(u64::try_from(at - crate::unix_millis()).unwrap_or(0))
}

impl Sidecar {
    /// Starts (or replaces) a timer of an actor this sidecar's app hosts.
    pub(crate) fn register_actor_timer(
        self: &Arc<Self>,
        timer: TimerRequest,
    ) -> Result<(), DaprError> {
        super::validate_name("actorType", &timer.actor_type)?;
        super::validate_name("actorId", &timer.actor_id)?;
        super::validate_name("timer name", &timer.name)?;
        self.check_hosted(&timer.actor_type)
            .map_err(DaprError::ActorTimerCreate)?;
        let times = Times::parse(
            "timer",
            &timer.due_time,
            &timer.period,
            &timer.ttl,
            crate::unix_millis(),
        )
        .map_err(DaprError::ActorTimerCreate)?;
        let key = (
            (timer.actor_type.clone(), timer.actor_id.clone()),
            timer.name.clone(),
        );
        let sidecar = self.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            sidecar.run_timer(&timer, &times).await;
            if let Some(id) = tokio::task::try_id() {
                sidecar.actors.timers.ended(&task_key, id);
            }
        });
        self.actors.timers.replace(key, task.abort_handle());
        Ok(())
    }

    /// Stops an actor's timer (none by that name is no error).
    pub(crate) fn unregister_actor_timer(&self, actor_type: &str, actor_id: &str, name: &str) {
        let key = (
            (actor_type.to_string(), actor_id.to_string()),
            name.to_string(),
        );
        self.actors.timers.stop(&key);
    }

    /// Fires `timer` at its times.
    async fn run_timer(&self, timer: &TimerRequest, times: &Times) {
        let body = json!({
            "callback": timer.callback,
            "data": timer.data,
            "dueTime": timer.due_time,
            "period": timer.period,
        });
        let body = Bytes::from(body.to_string());
        let mut at = times.first;
        let mut fired = 0u32;
        loop {
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                () = tokio::time::sleep(until(at)) => {}
            }
            let call = ActorCall::new(
                &timer.actor_type,
                &timer.actor_id,
                &format!("timer/{}", timer.name),
                body.clone(),
                service_kit::trace::TraceContext::new_root(),
            );
            let answer = match call {
                Ok(call) => self.call_actor(call).await,
                Err(err) => Err(err),
            };
            self.metrics
                .actors
                .timer_fired(&timer.actor_type, answer.is_ok());
            if let Err(err) = answer {
                tracing::warn!(actor_type = %timer.actor_type, actor_id = %timer.actor_id,
                    timer = %timer.name, error = %err, "an actor's timer failed");
            }
            fired = fired.saturating_add(1);
            match times.after(at, fired) {
                Some(next) => at = next,
                None => return,
            }
        }
    }
}
