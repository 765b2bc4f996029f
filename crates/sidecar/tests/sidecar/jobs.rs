//! The jobs API: jobs scheduled over HTTP and gRPC trigger an HTTP app at
//! `POST /job/{name}` with their data, as often as their schedule,
//! `repeats` and failure policy say; they are kept across a restart;
//! replicas of an app share them, each trigger going to one; and bad
//! requests get daprd's errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use dapr::dapr::proto::runtime::v1 as pb;
use reqwest::Client;
use serde_json::{Value, json};
use test_support::sidecar::*;
use tokio::sync::mpsc;

use super::grpc::client;

/// One trigger the app got: the job's name and the body.
type Trigger = (String, String);

/// An app that reports every `POST /job/{name}` it gets, and fails the
/// first two of the job `flaky` (500).
async fn start_job_app() -> (SocketAddr, mpsc::UnboundedReceiver<Trigger>) {
    let (sender, triggers) = mpsc::unbounded_channel();
    let flaky_failures = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/job/{name}",
        axum::routing::post(move |Path(name): Path<String>, body: String| {
            let sender = sender.clone();
            let flaky_failures = flaky_failures.clone();
            async move {
                let _ = sender.send((name.clone(), body));
                if name == "flaky" && flaky_failures.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, triggers)
}

/// The next trigger, within 10 s.
async fn next_trigger(triggers: &mut mpsc::UnboundedReceiver<Trigger>) -> Trigger {
    tokio::time::timeout(Duration::from_secs(10), triggers.recv())
        .await
        .expect("a trigger within 10 s")
        .expect("the app is running")
}

fn jobs_url(sidecar: &RunningSidecar, name: &str) -> String {
    sidecar.url(&format!("/v1.0-alpha1/jobs/{name}"))
}

async fn schedule(sidecar: &RunningSidecar, name: &str, body: Value) -> reqwest::Response {
    Client::new()
        .post(jobs_url(sidecar, name))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(sidecar: &RunningSidecar, name: &str) -> reqwest::Response {
    Client::new()
        .get(jobs_url(sidecar, name))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn jobs_trigger_the_app_as_scheduled_and_are_kept_across_a_restart() {
    let (app, mut triggers) = start_job_app().await;
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("job-app", Some(app.port()), data.path())).await;

    // A one-shot job: its data as JSON, then it is gone.
    let scheduled = schedule(
        &sidecar,
        "once",
        json!({"dueTime": "0s", "data": {"order": 7}}),
    )
    .await;
    assert_eq!(scheduled.status(), 204);
    let (name, body) = next_trigger(&mut triggers).await;
    assert_eq!(name, "once");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"order": 7})
    );
    let message =
        assert_dapr_error(get(&sidecar, "once").await, 500, "DAPR_SCHEDULER_GET_JOB").await;
    assert_eq!(
        message,
        "failed to get job due to: rpc error: code = NotFound desc = job not found: once"
    );

    // A schedule with repeats: exactly that many triggers.
    schedule(
        &sidecar,
        "twice",
        json!({"schedule": "@every 1s", "repeats": 2, "data": "tick"}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            next_trigger(&mut triggers).await,
            ("twice".into(), "\"tick\"".into())
        );
    }
    assert_eq!(get(&sidecar, "twice").await.status(), 500, "done after 2");

    // A failing trigger is retried by the job's failure policy.
    schedule(
        &sidecar,
        "flaky",
        json!({"dueTime": "0s", "failurePolicy": {"constant": {"interval": "100ms", "maxRetries": 3}}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(next_trigger(&mut triggers).await.0, "flaky");
    }

    // A job for later: read back as daprd writes it; a second one by that
    // name only with overwrite.
    let later = json!({"schedule": "0 0 3 * * *", "dueTime": "1h", "ttl": "48h", "data": {"beans": "arabica"}});
    assert_eq!(
        schedule(&sidecar, "later", later.clone()).await.status(),
        204
    );
    let job: Value = get(&sidecar, "later").await.json().await.unwrap();
    assert_eq!(
        job,
        json!({
            "name": "later", "schedule": "0 0 3 * * *", "dueTime": "1h", "ttl": "48h",
            "data": {"@type": "type.googleapis.com/google.protobuf.Value", "value": {"beans": "arabica"}},
        })
    );
    let again = schedule(&sidecar, "later", later.clone()).await;
    assert_dapr_error(again, 409, "DAPR_SCHEDULER_SCHEDULE_JOB").await;
    let mut overwriting = later.clone();
    overwriting["overwrite"] = json!(true);
    overwriting["dueTime"] = json!("2h");
    assert_eq!(schedule(&sidecar, "later", overwriting).await.status(), 204);
    sidecar.stop().await;

    // A restart keeps it; gRPC sees the same jobs.
    let sidecar = RunningSidecar::start(config("job-app", Some(app.port()), data.path())).await;
    let job: Value = get(&sidecar, "later").await.json().await.unwrap();
    assert_eq!(job["dueTime"], "2h");
    let mut grpc = client(&sidecar).await;
    grpc.schedule_job(pb::ScheduleJobRequest {
        job: Some(pb::Job {
            name: "grpc-later".into(),
            due_time: Some("1h".into()),
            ..Default::default()
        }),
        overwrite: false,
    })
    .await
    .unwrap();
    let listed = grpc
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.jobs.iter().map(|job| job.name.as_str()).collect();
    assert_eq!(names, ["grpc-later", "later"]);
    let job = grpc
        .get_job(pb::GetJobRequest {
            name: "grpc-later".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.due_time.as_deref(), Some("1h"));
    grpc.delete_jobs_by_prefix(pb::DeleteJobsByPrefixRequest {
        name_prefix: Some("grpc-".into()),
    })
    .await
    .unwrap();
    let deleted = Client::new()
        .delete(jobs_url(&sidecar, "later"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let listed = grpc
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty(), "{:?}", listed.jobs);
    sidecar.stop().await;
}

#[tokio::test]
async fn bad_job_requests_get_daprds_errors() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("job-errors", None, data.path())).await;
    let cases = [
        (json!({"data": 1}), 400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "Schedule is empty".to_string()),
        (
            json!({"name": "x", "dueTime": "1s"}),
            400,
            "DAPR_SCHEDULER_JOB_NAME",
            "Set the job name in the url only".to_string(),
        ),
        (
            json!({"schedule": "every minute"}),
            400,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            "failed to schedule job due to: schedule `every minute`: expected 5 to 6 fields, found 2: every minute".to_string(),
        ),
        (
            json!({"dueTime": "R5/PT10S"}),
            400,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            "failed to schedule job due to: dueTime `R5/PT10S`: a repeating ISO 8601 duration is no point in time; use RFC 3339 or a duration (10s, PT10S)".to_string(),
        ),
        (
            json!({"schedule": "@every 1m", "repeats": 0}),
            400,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            "failed to schedule job due to: job bad would never trigger: its ttl or repeats end it first".to_string(),
        ),
    ];
    for (body, status, code, expected) in cases {
        let message =
            assert_dapr_error(schedule(&sidecar, "bad", body.clone()).await, status, code).await;
        assert_eq!(message, expected, "{body}");
    }
    let garbage = Client::new()
        .post(jobs_url(&sidecar, "bad"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_dapr_error(garbage, 400, "ERR_MALFORMED_REQUEST").await;

    // gRPC: the same errors as statuses.
    let mut grpc = client(&sidecar).await;
    let status = grpc
        .schedule_job(pb::ScheduleJobRequest {
            job: None,
            overwrite: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, "Job is empty")
    );
    let status = grpc
        .get_job(pb::GetJobRequest {
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, "Name is empty")
    );
    sidecar.stop().await;
}

/// Two sidecars of one app id on one data folder (two replicas of an app)
/// share its jobs, and each trigger goes to one of them only: taking a due
/// job is one transaction on the shared `jobs.db`.
#[tokio::test]
async fn replicas_of_an_app_share_its_jobs_and_each_trigger_fires_once() {
    let data = tempfile::tempdir().unwrap();
    let (one, mut one_triggers) = start_job_app().await;
    let (two, mut two_triggers) = start_job_app().await;
    let first = RunningSidecar::start(config("job-twins", Some(one.port()), data.path())).await;
    let second = RunningSidecar::start(config("job-twins", Some(two.port()), data.path())).await;
    let scheduled = schedule(
        &first,
        "shared",
        json!({"schedule": "@every 1s", "repeats": 4, "data": "tick"}),
    )
    .await;
    assert_eq!(scheduled.status(), 204);
    assert_eq!(get(&second, "shared").await.status(), 200, "one store");
    let mut fired = 0;
    while fired < 4 {
        tokio::select! {
            Some(_) = one_triggers.recv() => fired += 1,
            Some(_) = two_triggers.recv() => fired += 1,
            () = tokio::time::sleep(Duration::from_secs(10)) => panic!("{fired} triggers, then none for 10 s"),
        }
    }
    assert_eq!(get(&first, "shared").await.status(), 500, "done after 4");
    // A trigger taken twice would reach an app within a period of its
    // twin; none comes in the period after the last one.
    let late = tokio::time::timeout(Duration::from_secs(1), async {
        tokio::select! {
            Some(trigger) = one_triggers.recv() => trigger,
            Some(trigger) = two_triggers.recv() => trigger,
        }
    })
    .await;
    assert!(late.is_err(), "a fifth trigger: {late:?}");
    first.stop().await;
    second.stop().await;
}
