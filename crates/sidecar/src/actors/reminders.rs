//! Actor reminders, kept as daprd's scheduler keeps them: as jobs. Each is
//! a job in `jobs.db` ([`crate::jobs::JobStore`]) owned by
//! `actorreminder||{type}` and named `{id}||{name}`, so every sidecar that
//! hosts the type can read it, and the one whose trigger loop takes it due
//! (one only: taking is a transaction) calls the actor's `remind/{name}`
//! with `{data, dueTime, period}`, wherever the actor lives. The app's
//! `X-DaprReminderCancel: true` ends it; a failure is retried by the
//! reminder's failure policy, as a job's.

use dapr::dapr::proto::common::v1::JobFailurePolicy;
use dapr::dapr::proto::runtime::v1 as pb;
use serde::{Deserialize, Serialize};

use super::ActorCall;
use super::times::Times;
use crate::Sidecar;
use crate::error::DaprError;

/// The owner prefix of reminders in the jobs store.
const OWNER_PREFIX: &str = "actorreminder||";
/// The type of a reminder job's data ([`Stored`] as JSON).
const STORED_TYPE_URL: &str = "dapr.io/actorreminder";

/// The owner of `actor_type`'s reminders in the jobs store.
pub(crate) fn owner(actor_type: &str) -> String {
    format!("{OWNER_PREFIX}{actor_type}")
}

/// The actor type whose reminders `owner` holds, if it holds reminders.
pub(crate) fn owner_actor_type(owner: &str) -> Option<&str> {
    owner.strip_prefix(OWNER_PREFIX)
}

/// A reminder as the APIs take it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReminderRequest {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    pub due_time: String,
    pub period: String,
    pub ttl: String,
    /// The data, as JSON (`None`: none).
    pub data: Option<serde_json::Value>,
    /// Replace a reminder of the same name (the default).
    pub overwrite: Option<bool>,
    pub failure_policy: Option<JobFailurePolicy>,
}

/// What a reminder's job keeps of the request: what the actor is sent,
/// and what reading the reminder gives back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stored {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub due_time: String,
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub ttl: String,
}

impl Stored {
    fn of(job: &pb::Job) -> Result<Stored, String> {
        let data = job
            .data
            .as_ref()
            .filter(|d| d.type_url == STORED_TYPE_URL)
            .ok_or_else(|| format!("job {} is not a reminder", job.name))?;
        serde_json::from_slice(&data.value).map_err(|e| format!("reminder {}: {e}", job.name))
    }
}

/// RFC 3339 of Unix milliseconds.
fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Sidecar {
    /// Fails unless this sidecar's app hosts `actor_type`: daprd takes
    /// reminder operations only where the type is hosted.
    fn require_hosted(&self, actor_type: &str) -> Result<(), DaprError> {
        self.check_hosted(actor_type)
            .map_err(|_| DaprError::ActorReminderNotHosted)
    }

    /// Creates (or, unless `overwrite` is false, replaces) a reminder.
    pub(crate) async fn register_actor_reminder(
        &self,
        reminder: ReminderRequest,
    ) -> Result<(), DaprError> {
        super::validate_name("actorType", &reminder.actor_type)?;
        super::validate_name("actorId", &reminder.actor_id)?;
        super::validate_name("reminder name", &reminder.name)?;
        self.require_hosted(&reminder.actor_type)?;
        let created = crate::unix_millis();
        let times = Times::parse(
            "reminder",
            &reminder.due_time,
            &reminder.period,
            &reminder.ttl,
            created,
        )
        .map_err(DaprError::ActorReminderCreate)?;
        let stored = Stored {
            actor_type: reminder.actor_type.clone(),
            actor_id: reminder.actor_id.clone(),
            name: reminder.name.clone(),
            data: reminder.data,
            due_time: reminder.due_time,
            period: reminder.period,
            ttl: reminder.ttl,
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|e| DaprError::ActorReminderCreate(e.to_string()))?;
        // As a job: its first firing as a due time, its period as a
        // schedule (a bare duration, to the millisecond), its repetitions
        // and end as they are.
        let job = pb::Job {
            name: format!("{}||{}", reminder.actor_id, reminder.name),
            schedule: times
                .every
                .map(|every| format!("{}ms", every.as_millis().max(1))),
            due_time: Some(rfc3339(times.first)),
            repeats: times.repeats,
            ttl: times.expires.map(rfc3339),
            data: Some(prost_types::Any {
                type_url: STORED_TYPE_URL.into(),
                value,
            }),
            failure_policy: reminder.failure_policy,
        };
        let timing =
            crate::jobs::Timing::of(&job, created).map_err(DaprError::ActorReminderCreate)?;
        let overwrite = reminder.overwrite.unwrap_or(true);
        let inserted = self
            .jobs
            .insert(
                &owner(&reminder.actor_type),
                job,
                created,
                timing.first(created),
                overwrite,
            )
            .await;
        match inserted {
            Ok(()) => {
                self.jobs.changed();
                Ok(())
            }
            Err(DaprError::JobSchedule(tonic::Code::AlreadyExists, _)) => {
                Err(DaprError::ActorReminderAlreadyExists(reminder.name))
            }
            Err(err) => Err(DaprError::ActorReminderCreate(err.to_string())),
        }
    }

    /// A reminder.
    pub(crate) async fn get_actor_reminder(
        &self,
        actor_type: &str,
        actor_id: &str,
        name: &str,
    ) -> Result<Stored, DaprError> {
        self.require_hosted(actor_type)?;
        let job = self
            .jobs
            .get(&owner(actor_type), &format!("{actor_id}||{name}"))
            .await
            .map_err(DaprError::ActorReminderGet)?
            .ok_or_else(|| DaprError::ActorReminderNotFound(name.to_string()))?;
        Stored::of(&job).map_err(DaprError::ActorReminderGet)
    }

    /// An actor type's reminders, or one actor's.
    pub(crate) async fn list_actor_reminders(
        &self,
        actor_type: &str,
        actor_id: Option<&str>,
    ) -> Result<Vec<Stored>, DaprError> {
        self.require_hosted(actor_type)?;
        let jobs = self
            .jobs
            .list(&owner(actor_type))
            .await
            .map_err(DaprError::ActorReminderGet)?;
        let mut reminders = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let stored = Stored::of(job).map_err(DaprError::ActorReminderGet)?;
            if actor_id.is_none_or(|id| id == stored.actor_id) {
                reminders.push(stored);
            }
        }
        Ok(reminders)
    }

    /// Deletes a reminder (none by that name is no error), or with
    /// `name` `None` every reminder of the actor, or of the type when
    /// `actor_id` is `None` too.
    pub(crate) async fn unregister_actor_reminders(
        &self,
        actor_type: &str,
        actor_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), DaprError> {
        self.require_hosted(actor_type)?;
        let deleted = match (actor_id, name) {
            (Some(id), Some(name)) => {
                self.jobs
                    .delete(&owner(actor_type), &format!("{id}||{name}"), false)
                    .await
            }
            (Some(id), None) => {
                self.jobs
                    .delete(&owner(actor_type), &format!("{id}||"), true)
                    .await
            }
            (None, _) => self.jobs.delete(&owner(actor_type), "", true).await,
        };
        deleted.map_err(DaprError::ActorReminderDelete)?;
        self.jobs.changed();
        Ok(())
    }

    /// One firing of a reminder job of `actor_type`: `Ok` when the actor
    /// took it (or asked for it to end, which deletes it).
    pub(crate) async fn fire_reminder(&self, job: &pb::Job) -> Result<(), String> {
        let stored = Stored::of(job)?;
        let body = serde_json::json!({
            "data": stored.data,
            "dueTime": stored.due_time,
            "period": stored.period,
        });
        let call = ActorCall::new(
            &stored.actor_type,
            &stored.actor_id,
            &format!("remind/{}", stored.name),
            body.to_string().into(),
            service_kit::trace::TraceContext::new_root(),
        )
        .map_err(|e| e.to_string())?;
        let answer = self.call_actor(call).await;
        self.metrics
            .actors
            .reminder_fired(&stored.actor_type, answer.is_ok());
        let answer = answer.map_err(|e| e.to_string())?;
        if answer.cancels_reminder() {
            tracing::info!(actor_type = %stored.actor_type, actor_id = %stored.actor_id,
                reminder = %stored.name, "the actor cancelled its reminder");
            self.jobs
                .delete(&owner(&stored.actor_type), &job.name, false)
                .await?;
        }
        Ok(())
    }
}
