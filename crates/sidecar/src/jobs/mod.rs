//! The jobs API (Dapr's scheduler), on one machine: jobs an app schedules
//! for itself, kept in the sidecar's data folder (`jobs.db`, SQLite, one
//! row per app id and job name) so that they outlive a restart, and
//! triggered by the sidecar that serves that app id.
//!
//! - Schedule: `POST /v1.0(-alpha1)/jobs/{name}` ([`api`]) or gRPC
//!   `ScheduleJob(Alpha1)`. A job has a `schedule` (cron with seconds,
//!   `@every 1m`, `@daily`, ... as [`Schedule`] reads them), a `dueTime`
//!   (RFC 3339, or a Go duration from now), or both; `repeats` (how many
//!   triggers in all) and `ttl` (RFC 3339 or a Go duration: no trigger
//!   after it) end it. A name in use is refused unless `overwrite`.
//! - Get, delete, delete by prefix, list: `GET`/`DELETE` on the same path,
//!   gRPC `GetJob`, `DeleteJob`, `DeleteJobsByPrefix`, `ListJobs` (and
//!   their Alpha1 names).
//! - Trigger: an HTTP app gets `POST /job/{name}` with the job's data as
//!   JSON; a gRPC app `OnJobEvent` (`OnJobEventAlpha1` if it has only
//!   that), as daprd sends them. A 2xx (gRPC OK) or a 404 (NotFound, which
//!   daprd counts as a failure but does not retry) ends the trigger; any
//!   other answer is retried by the job's failure policy: `constant`
//!   (`interval`, `maxRetries`), `drop`, or by default every second up to
//!   3 times, as daprd's scheduler does.
//!
//! Sidecars of one app id on one data folder (replicas) share its jobs;
//! taking a due job is one transaction on `jobs.db`, so each trigger goes
//! to one of them, as daprd's scheduler picks one. The same holds for the
//! actor reminders kept here ([`crate::actors`]).
//!
//! Not as daprd: replicas with data folders of their own would each
//! trigger their own jobs.

pub mod api;
mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};
use dapr::dapr::proto::common::v1::job_failure_policy::Policy;
use dapr::dapr::proto::runtime::v1 as pb;
use prost::Message;

use crate::Sidecar;
use crate::error::DaprError;
use crate::input_bindings::cron::Schedule;
pub use store::JobStore;

/// `google.protobuf.Value`'s type URL: the data of a job scheduled over
/// HTTP (any JSON).
pub const VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Value";

/// The longest the trigger loop sleeps before it looks again (another
/// sidecar of the app may have added a job to the shared file).
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The failure policy when a job has none: daprd's scheduler's.
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// When a job triggers: parsed from its fields once, at scheduling.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    schedule: Option<Schedule>,
    /// Unix milliseconds.
    due: Option<i64>,
    /// Unix milliseconds.
    expires: Option<i64>,
    repeats: Option<u32>,
}

/// A point in time as daprd reads `dueTime` and `ttl`: RFC 3339, or a Go
/// or (non-repeating) ISO 8601 duration from `created` (Unix
/// milliseconds).
fn point_in_time(what: &str, text: &str, created: i64) -> Result<i64, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    if text.starts_with('R') {
        return Err(format!(
            "{what} `{text}`: a repeating ISO 8601 duration is no point in time; use RFC 3339 or a duration (10s, PT10S)"
        ));
    }
    let after = crate::actors::times::duration(text)
        .map_err(|e| format!("{what} `{text}`: not RFC 3339, and {e}"))?;
    Ok(created.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)))
}

/// A job's `schedule`: cron, a descriptor (`@every 1m`, `@daily`), or a
/// bare Go duration (`2h45m`, `500ms`: every that long, as daprd reads
/// one), to the millisecond.
fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    match Schedule::parse(text) {
        Ok(schedule) => Ok(schedule),
        Err(cron) => match service_kit::units::parse_duration(text) {
            Ok(every) if !every.is_zero() => Ok(Schedule::Every(every)),
            _ => Err(format!("schedule `{text}`: {cron}")),
        },
    }
}

impl Timing {
    /// Reads `job`'s fields, for a job created at `created`.
    pub(crate) fn of(job: &pb::Job, created: i64) -> Result<Timing, String> {
        let schedule = job
            .schedule
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(parse_schedule)
            .transpose()?;
        let due = job
            .due_time
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| point_in_time("dueTime", s.trim(), created))
            .transpose()?;
        let expires = job
            .ttl
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| point_in_time("ttl", s.trim(), created))
            .transpose()?;
        Ok(Timing {
            schedule,
            due,
            expires,
            repeats: job.repeats,
        })
    }

    /// The first trigger of a job created at `created`.
    pub(crate) fn first(&self, created: i64) -> Option<i64> {
        let first = match (self.due, &self.schedule) {
            (Some(due), _) => Some(due),
            (None, Some(schedule)) => next_after(schedule, created),
            (None, None) => None,
        };
        self.within_bounds(first, 0)
    }

    /// The trigger after one at `last`, the `fired`th.
    pub(crate) fn after(&self, last: i64, fired: u32) -> Option<i64> {
        let next = self
            .schedule
            .as_ref()
            .and_then(|schedule| next_after(schedule, last));
        self.within_bounds(next, fired)
    }

    fn within_bounds(&self, next: Option<i64>, fired: u32) -> Option<i64> {
        let next = next?;
        if self.repeats.is_some_and(|repeats| fired >= repeats) {
            return None;
        }
        if self.expires.is_some_and(|expires| next > expires) {
            return None;
        }
        Some(next)
    }
}

/// The schedule's first time after `after` (Unix milliseconds). `@every`
/// counts from `after` itself (a reminder's period is exact), not from
/// its whole second as the cron binding's does.
fn next_after(schedule: &Schedule, after: i64) -> Option<i64> {
    if let Schedule::Every(every) = schedule {
        return Some(after.saturating_add(i64::try_from(every.as_millis()).ok()?));
    }
    let after: DateTime<Local> = Local.timestamp_millis_opt(after).single()?;
    schedule.next_after(after).map(|at| at.timestamp_millis())
}

/// What a trigger's failure leads to: how many more tries, how far apart.
fn retries(job: &pb::Job) -> (u32, Duration) {
    match job.failure_policy.as_ref().and_then(|p| p.policy.as_ref()) {
        Some(Policy::Drop(_)) => (0, Duration::ZERO),
        Some(Policy::Constant(constant)) => {
            let interval = constant
                .interval
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(DEFAULT_RETRY_INTERVAL);
            // No maxRetries: for as long as the job lives, as daprd's.
            (constant.max_retries.unwrap_or(u32::MAX), interval)
        }
        None => (DEFAULT_RETRIES, DEFAULT_RETRY_INTERVAL),
    }
}

/// The body an HTTP app gets: a JSON value's JSON, or the data's bytes.
fn http_body(data: Option<&prost_types::Any>) -> bytes::Bytes {
    let Some(data) = data else {
        return bytes::Bytes::new();
    };
    if data.type_url == VALUE_TYPE_URL {
        return match prost_types::Value::decode(data.value.as_slice()) {
            Ok(value) if value.kind.is_some() => {
                crate::proto_json::json_of(&value).to_string().into()
            }
            _ => bytes::Bytes::new(),
        };
    }
    bytes::Bytes::copy_from_slice(data.value.trim_ascii())
}

impl Sidecar {
    /// Schedules `job` for this app (both APIs call this).
    pub(crate) async fn schedule_job(
        &self,
        job: Option<pb::Job>,
        overwrite: bool,
    ) -> Result<(), DaprError> {
        let job = job.ok_or(DaprError::JobEmpty("Job"))?;
        if job.name.is_empty() {
            return Err(DaprError::JobNameEmpty);
        }
        if job.schedule.is_none() && job.due_time.is_none() {
            return Err(DaprError::JobScheduleEmpty);
        }
        let created = crate::unix_millis();
        let timing = Timing::of(&job, created)
            .map_err(|reason| DaprError::JobSchedule(tonic::Code::InvalidArgument, reason))?;
        let next = timing.first(created);
        self.jobs
            .insert(&self.config.app_id, job, created, next, overwrite)
            .await?;
        self.jobs.changed();
        Ok(())
    }

    /// The job `name` of this app.
    pub(crate) async fn get_job(&self, name: &str) -> Result<pb::Job, DaprError> {
        if name.is_empty() {
            return Err(DaprError::JobNameEmpty);
        }
        self.jobs
            .get(&self.config.app_id, name)
            .await
            .map_err(DaprError::JobGet)?
            .ok_or_else(|| {
                DaprError::JobGet(format!(
                    "rpc error: code = NotFound desc = job not found: {name}"
                ))
            })
    }

    /// Deletes the job `name` of this app (none by that name is no error).
    pub(crate) async fn delete_job(&self, name: &str) -> Result<(), DaprError> {
        if name.is_empty() {
            return Err(DaprError::JobNameEmpty);
        }
        self.delete_jobs(name, false).await
    }

    /// Deletes this app's jobs named `name`, or (`prefix`) starting with it.
    pub(crate) async fn delete_jobs(&self, name: &str, prefix: bool) -> Result<(), DaprError> {
        self.jobs
            .delete(&self.config.app_id, name, prefix)
            .await
            .map_err(DaprError::JobDelete)?;
        self.jobs.changed();
        Ok(())
    }

    /// Every job of this app, by name.
    pub(crate) async fn list_jobs(&self) -> Result<Vec<pb::Job>, DaprError> {
        self.jobs
            .list(&self.config.app_id)
            .await
            .map_err(DaprError::JobList)
    }

    /// The owners of the jobs this sidecar triggers: its app (the jobs
    /// API) and the actor types its app hosts (their reminders,
    /// [`crate::actors`]).
    fn job_owners(&self) -> Vec<String> {
        let mut owners = vec![self.config.app_id.clone()];
        if let Some(host) = self.actors.host_config() {
            owners.extend(
                host.entities
                    .iter()
                    .map(|t| crate::actors::reminder_owner(t)),
            );
        }
        owners
    }

    /// Triggers this app's jobs and its actors' reminders as they come
    /// due, while the app is healthy, until the sidecar stops.
    pub(crate) async fn run_jobs(self: Arc<Self>) {
        let mut healthy = self.app_healthy.subscribe();
        loop {
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                _ = healthy.wait_for(|&h| h) => {}
            }
            let now = crate::unix_millis();
            let mut wait = MAX_WAIT;
            for owner in self.job_owners() {
                let next = match self.jobs.take_due(&owner, now).await {
                    Ok(due) => {
                        for job in due {
                            tokio::spawn(self.clone().trigger(owner.clone(), job));
                        }
                        self.jobs.next_due(&owner).await
                    }
                    Err(reason) => Err(reason),
                };
                wait = wait.min(match next {
                    Ok(next) => next.map_or(MAX_WAIT, |at| {
                        let ms = u64::try_from(at - crate::unix_millis()).unwrap_or(0);
                        Duration::from_millis(ms)
                    }),
                    Err(reason) => {
                        tracing::warn!(%reason, %owner, "reading the due jobs failed; trying again in 1s");
                        Duration::from_secs(1)
                    }
                });
            }
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                () = self.jobs.wait_for_change() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends one trigger of `job` (of `owner`) to the app, or to the actor
    /// whose reminder it is, retrying as its failure policy says.
    async fn trigger(self: Arc<Self>, owner: String, job: pb::Job) {
        let (retries, interval) = retries(&job);
        let mut tries = 0u32;
        loop {
            let sent = match crate::actors::owner_actor_type(&owner) {
                Some(_) => self.fire_reminder(&job).await,
                None => self.send_job(&job).await,
            };
            match sent {
                Ok(()) => return,
                Err(reason) if tries >= retries => {
                    tracing::warn!(job = %job.name, %owner, %reason, tries = tries + 1, "a job's trigger failed; giving up on it");
                    return;
                }
                Err(reason) => {
                    tracing::info!(job = %job.name, %owner, %reason, "a job's trigger failed; trying again in {interval:?}");
                }
            }
            tries += 1;
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One delivery of `job` to the app: `Ok` when the app took it (or
    /// answered 404 / NotFound, which daprd does not retry).
    async fn send_job(&self, job: &pb::Job) -> Result<(), String> {
        let trace = service_kit::trace::TraceContext::new_root();
        if let Some(app) = &self.app_callback {
            let request = pb::JobEventRequest {
                name: job.name.clone(),
                data: job.data.clone(),
                method: format!("job/{}", job.name),
                content_type: job
                    .data
                    .as_ref()
                    .map(|d| d.type_url.clone())
                    .unwrap_or_default(),
                http_extension: Some(dapr::dapr::proto::common::v1::HttpExtension {
                    verb: dapr::dapr::proto::common::v1::http_extension::Verb::Post as i32,
                    querystring: Default::default(),
                }),
            };
            let mut stable = app.clone();
            let answer = crate::pubsub::app_callback::call_app(
                self,
                request.clone(),
                &trace,
                |request| async move { stable.on_job_event(request).await },
            )
            .await;
            use crate::pubsub::app_callback::Unanswered;
            let answer = match (answer, &self.app_callback_alpha) {
                (Err(Unanswered::Status(status)), Some(alpha))
                    if status.code() == tonic::Code::Unimplemented =>
                {
                    let mut alpha = alpha.clone();
                    // Deprecated in the protos; daprd still falls back to it.
                    #[allow(deprecated)]
                    crate::pubsub::app_callback::call_app(
                        self,
                        request,
                        &trace,
                        |request| async move { alpha.on_job_event_alpha1(request).await },
                    )
                    .await
                }
                (answer, _) => answer,
            };
            return match answer {
                Ok(_) => Ok(()),
                Err(Unanswered::Status(status)) if status.code() == tonic::Code::NotFound => {
                    tracing::error!(job = %job.name, "the app answered NotFound to a job's trigger; not retried");
                    Ok(())
                }
                Err(Unanswered::Status(status)) => Err(format!(
                    "OnJobEvent answered {:?}: {}",
                    status.code(),
                    status.message()
                )),
                Err(Unanswered::Failed(reason)) => Err(reason),
            };
        }
        let route = format!("/job/{}", job.name.trim_start_matches('/'));
        let (status, _) = crate::app_channel::send_to_app(
            self,
            axum::http::Method::POST,
            &route,
            &[],
            "application/json",
            http_body(job.data.as_ref()),
            &trace,
        )
        .await?;
        if status.is_success() || status == axum::http::StatusCode::NOT_FOUND {
            if !status.is_success() {
                tracing::error!(job = %job.name, "the app answered 404 to a job's trigger; not retried");
            }
            Ok(())
        } else {
            Err(format!("the app answered {}", status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        schedule: Option<&str>,
        due: Option<&str>,
        repeats: Option<u32>,
        ttl: Option<&str>,
    ) -> pb::Job {
        pb::Job {
            name: "j".into(),
            schedule: schedule.map(Into::into),
            due_time: due.map(Into::into),
            repeats,
            ttl: ttl.map(Into::into),
            ..Default::default()
        }
    }

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_due_time_is_rfc3339_or_a_go_duration_from_now() {
        let timing = Timing::of(&job(None, Some("10s"), None, None), T0).unwrap();
        assert_eq!(timing.first(T0), Some(T0 + 10_000));
        assert_eq!(timing.after(T0 + 10_000, 1), None, "a one-shot job");
        let at = "2027-01-15T08:00:00Z";
        let timing = Timing::of(&job(None, Some(at), None, None), T0).unwrap();
        let expected = DateTime::parse_from_rfc3339(at).unwrap().timestamp_millis();
        assert_eq!(timing.first(T0), Some(expected));
        let timing = Timing::of(&job(None, Some("PT10S"), None, None), T0).unwrap();
        assert_eq!(timing.first(T0), Some(T0 + 10_000), "ISO 8601");
        let error = Timing::of(&job(None, Some("R5/PT10S"), None, None), T0).unwrap_err();
        assert!(error.contains("no point in time"), "{error}");
        assert!(Timing::of(&job(Some("every minute"), None, None, None), T0).is_err());
    }

    #[test]
    fn a_schedule_may_be_a_bare_go_duration_to_the_millisecond() {
        let timing = Timing::of(&job(Some("1500ms"), None, None, None), T0).unwrap();
        assert_eq!(timing.first(T0), Some(T0 + 1_500));
        assert_eq!(timing.after(T0 + 1_500, 1), Some(T0 + 3_000));
        let error = Timing::of(&job(Some("0s"), None, None, None), T0).unwrap_err();
        assert!(error.contains("expected 5 to 6 fields"), "{error}");
    }

    #[test]
    fn repeats_and_ttl_end_a_schedule() {
        let timing = Timing::of(&job(Some("@every 2s"), None, Some(2), None), T0).unwrap();
        let first = timing.first(T0).unwrap();
        assert_eq!(first, T0 + 2_000);
        let second = timing.after(first, 1).unwrap();
        assert_eq!(second, T0 + 4_000);
        assert_eq!(timing.after(second, 2), None, "two repeats in all");
        // `@every` counts from the last trigger, to the millisecond.
        assert_eq!(timing.after(T0 + 2_500, 1), Some(T0 + 4_500));
        let timing = Timing::of(&job(Some("@every 2s"), None, None, Some("5s")), T0).unwrap();
        assert_eq!(timing.after(T0 + 4_000, 2), None, "past its ttl");
        // A due time first, then the schedule from there.
        let timing = Timing::of(&job(Some("@every 1m"), Some("1s"), None, None), T0).unwrap();
        assert_eq!(timing.first(T0), Some(T0 + 1_000));
        assert_eq!(timing.after(T0 + 1_000, 1), Some(T0 + 61_000));
    }

    #[test]
    fn http_apps_get_the_data_as_json() {
        let value = crate::proto_json::proto_of(serde_json::json!({"order": 7}));
        let any = prost_types::Any {
            type_url: VALUE_TYPE_URL.into(),
            value: value.encode_to_vec(),
        };
        assert_eq!(http_body(Some(&any)), r#"{"order":7}"#);
        let raw = prost_types::Any {
            type_url: "type.googleapis.com/x".into(),
            value: b" raw ".to_vec(),
        };
        assert_eq!(http_body(Some(&raw)), "raw");
        assert_eq!(http_body(None), "");
    }

    #[test]
    fn the_default_failure_policy_is_three_retries_a_second_apart() {
        assert_eq!(
            retries(&job(None, Some("1s"), None, None)),
            (3, Duration::from_secs(1))
        );
    }
}
