//! Conformance with the official Dapr Python SDK (PyPI `dapr`, pinned in
//! scripts/test-requirements.txt) over its default transport, gRPC:
//! `python-sdk/conformance.py` drives a real sidecar, and invokes an HTTP
//! app behind a second sidecar over gRPC `InvokeService`, publishes
//! events (`PublishEvent`), takes and releases locks (`lock.redis`),
//! reads and watches configuration (`configuration.redis`) and runs SQL
//! through an output binding (`bindings.postgresql`); and
//! `python-sdk/grpc_app.py`, a gRPC app written with the SDK's gRPC `App`
//! (`dapr.ext.grpc`), is invoked and gets its subscriptions' events and an
//! input binding's (`bindings.cron`) through its sidecar; and actors
//! written with the SDK's actor runtime (`python-sdk/actor_app.py`) are
//! called with its `ActorProxy` (`python-sdk/actor_client.py`); and
//! workflows written with its workflow extension (`python-sdk/workflows.py`)
//! run, are managed, and outlive a restart of their sidecar.

use std::process::Command;

use base64::Engine;

use serde_json::{Value, json};

use test_support::repo_path;
use test_support::sidecar::*;

/// The test venv's Python (scripts/test.sh creates it).
fn venv_python() -> std::path::PathBuf {
    let python = repo_path("build/test-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/test.sh creates it",
        python.display()
    );
    python
}

/// Components for these tests: the state and secret stores, and an
/// in-memory `pubsub`.
fn resources_with_pubsub() -> TestResources {
    let resources = TestResources::new();
    resources.add_in_memory_pubsub("pubsub");
    resources
}

#[tokio::test]
#[ignore = "needs the Dapr Python SDK in build/test-venv, Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (scripts/test.sh installs them and runs this)"]
async fn the_official_dapr_python_sdk_works_over_grpc() {
    let python = venv_python();
    test_support::require_service("Redis", "127.0.0.1:6379");
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let resources = resources_with_pubsub();
    resources.add_redis_component("lockstore", "lock.redis");
    resources.add_redis_component("configstore", "configuration.redis");
    super::store_bindings::add_sql_binding(&resources);
    let (app, _app) = start_echo_app().await;
    super::state::component_file(
        resources.resources.path(),
        "web",
        "bindings.http",
        &[("url", &format!("http://{app}"))],
    );
    let target =
        RunningSidecar::start(config("py-target", Some(app.port()), resources.data.path())).await;
    let caller = RunningSidecar::start(resources.config("py-caller", None)).await;

    let mut script = Command::new(python);
    script
        .arg(repo_path(
            "crates/sidecar/tests/sidecar/python-sdk/conformance.py",
        ))
        .env("DAPR_HTTP_PORT", caller.address.port().to_string())
        .env("DAPR_GRPC_PORT", caller.grpc_address.port().to_string())
        .env("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
        .env("TARGET_APP_ID", "py-target")
        .env("CALLER_APP_ID", "py-caller");
    test_support::run_sdk_checks(script, "the Python SDK checks", 19).await;
    caller.stop().await;
    target.stop().await;
}

/// A port nothing listens on now, for the Python app to bind (below the
/// kernel's ephemeral range, so no other socket is given it meanwhile).
fn unused_port() -> u16 {
    service_kit::ports::free_port().expect("a free port")
}

/// The events the Python app has written to `path`, one JSON object each.
fn events_in(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A gRPC app written as the SDK's docs write one (`dapr.ext.grpc`'s
/// `App`, `@app.method`, `@app.subscribe` with a dead-letter topic), behind
/// a sidecar with `--app-protocol grpc`: it is invoked by app id, and its
/// subscriptions' events reach its handlers with their CloudEvent
/// attributes; its RETRY, DROP and SUCCESS answers decide as in daprd;
/// the cron binding it registers (`@app.binding`) triggers it; and a job
/// its sidecar schedules reaches its `@app.job_event` handler.
#[tokio::test]
#[ignore = "needs the Dapr Python SDK in build/test-venv (scripts/test.sh installs it and runs this)"]
async fn a_python_grpc_app_is_invoked_and_gets_its_events() {
    let python = venv_python();
    let resources = resources_with_pubsub();
    super::state::component_file(
        resources.resources.path(),
        "tick",
        "bindings.cron",
        &[("schedule", "@every 1s")],
    );
    let port = unused_port();
    let events_file = resources.data.path().join("events.jsonl");
    let _app = tokio::process::Command::new(python)
        .arg(repo_path(
            "crates/sidecar/tests/sidecar/python-sdk/grpc_app.py",
        ))
        .env("APP_PORT", port.to_string())
        .env("EVENTS_FILE", &events_file)
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python app");
    let mut config = resources.config("py-grpc-app", Some(port));
    config.app_protocol = sidecar::args::AppProtocol::Grpc;
    config.app_api_token = Some("app-secret".into());
    config.pubsub_retry = sidecar::args::RetryPolicy {
        max_retries: 2,
        backoff: std::time::Duration::from_millis(10),
    };
    let sidecar = RunningSidecar::start(config).await;
    sidecar.wait_subscribed(2).await;

    let client = reqwest::Client::new();
    let echo = client
        .post(sidecar.url("/v1.0/invoke/py-grpc-app/method/echo"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.text().await.unwrap(), "echo: hi");

    for (n, answer) in [(1, "success"), (2, "retry-once"), (3, "drop"), (4, "retry")] {
        let response = client
            .post(sidecar.url("/v1.0/publish/pubsub/orders"))
            .json(&json!({"n": n, "answer": answer}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let count = |events: &[Value], topic: &str, n: i64| {
        events
            .iter()
            .filter(|e| e["topic"] == topic && e["data"]["n"] == n)
            .count()
    };
    test_support::wait_until(
        "the Python app has had every event",
        std::time::Duration::from_secs(20),
        || {
            let events = events_in(&events_file);
            let done = count(&events, "orders", 2) == 2
                && count(&events, "orders", 4) == 3
                && count(&events, "orders-dead", 4) == 1;
            async move { done }
        },
    )
    .await;
    let events = events_in(&events_file);
    assert_eq!(
        [1, 3].map(|n| count(&events, "orders", n)),
        [1, 1],
        "{events:#?}"
    );
    let first = events.iter().find(|e| e["topic"] == "orders").unwrap();
    assert_eq!(first["type"], "com.dapr.event.sent");
    assert_eq!(first["source"], "py-grpc-app");
    assert_eq!(first["content_type"], "application/json");
    assert_eq!(first["pubsub"], "pubsub");
    assert_eq!(first["topic_extension"], "orders");
    assert_eq!(first["data"], json!({"n": 1, "answer": "success"}));
    assert_eq!(first["token"], "app-secret");
    assert!(!first["id"].as_str().unwrap().is_empty());
    // The input binding the app registered (`ListInputBindings`) fires.
    test_support::wait_until(
        "a cron event reaches the Python app",
        std::time::Duration::from_secs(20),
        || {
            let ticked = events_in(&events_file)
                .iter()
                .any(|e| e["binding"] == "tick" && e["metadata"]["timeZone"] == "Local");
            async move { ticked }
        },
    )
    .await;
    // A job (scheduled over HTTP, so its data is a `google.protobuf.Value`)
    // reaches `OnJobEvent` with that data.
    let scheduled = reqwest::Client::new()
        .post(sidecar.url("/v1.0/jobs/brew"))
        .json(&json!({"dueTime": "0s", "data": "espresso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), 204);
    let value = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue("espresso".into())),
    };
    let expected =
        base64::engine::general_purpose::STANDARD.encode(prost::Message::encode_to_vec(&value));
    test_support::wait_until(
        "the job reaches the Python app",
        std::time::Duration::from_secs(20),
        || {
            let brewed = events_in(&events_file)
                .iter()
                .any(|e| e["job"] == "brew" && e["data"] == expected.as_str());
            async move { brewed }
        },
    )
    .await;
    sidecar.stop().await;
}

/// Actors written with the SDK's actor runtime (`python-sdk/actor_app.py`,
/// `DemoActor`, hosted over HTTP as the SDK's extensions host it) behind
/// one sidecar, called with the SDK's `ActorProxy`
/// (`python-sdk/actor_client.py`) through another: state per actor,
/// reminders and timers reaching the actor with their data, and an
/// actor's exception as daprd's error.
#[tokio::test]
#[ignore = "needs the Dapr Python SDK in build/test-venv (scripts/test.sh installs it and runs this)"]
async fn python_sdk_actors_are_hosted_and_called() {
    let python = venv_python();
    let data = tempfile::tempdir().unwrap();
    let port = unused_port();
    // The sidecar asks the app for its actor types until it answers.
    let host = RunningSidecar::start(config("py-actors", Some(port), data.path())).await;
    let _app = tokio::process::Command::new(&python)
        .arg(repo_path(
            "crates/sidecar/tests/sidecar/python-sdk/actor_app.py",
        ))
        .env("APP_PORT", port.to_string())
        .env("DAPR_HTTP_PORT", host.address.port().to_string())
        .env("DAPR_GRPC_PORT", host.grpc_address.port().to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python actor app");
    wait_for_json(
        "the sidecar hosts the Python app's actors",
        &host.url("/v1.0/metadata"),
        |m| m["actorRuntime"]["hostReady"] == true,
    )
    .await;
    let caller = RunningSidecar::start(config("py-actor-caller", None, data.path())).await;

    let mut script = Command::new(python);
    script
        .arg(repo_path(
            "crates/sidecar/tests/sidecar/python-sdk/actor_client.py",
        ))
        .env("DAPR_HTTP_PORT", caller.address.port().to_string())
        .env("DAPR_GRPC_PORT", caller.grpc_address.port().to_string());
    test_support::run_sdk_checks(script, "the Python SDK actor checks", 4).await;
    caller.stop().await;
    host.stop().await;
}

/// Workflows written with the SDK's workflow extension
/// (`python-sdk/workflows.py`: its `WorkflowRuntime` worker and its
/// `DaprWorkflowClient`, over gRPC's `TaskHubSidecarService`): activities,
/// external events, timers, child workflows, failures, continue-as-new,
/// terminate, pause and resume, purge, and Dapr's workflow HTTP API. Then
/// a workflow left waiting for an event outlives a restart of its sidecar
/// (on the same data folder, so the same actor state store), and finishes
/// with the result its first activity gave before the restart, without
/// running that activity again; and a timer created before the restart
/// fires after it.
#[tokio::test]
#[ignore = "needs the Dapr Python SDK in build/test-venv (scripts/test.sh installs it and runs this)"]
async fn python_sdk_workflows_run_and_outlive_a_restart() {
    let python = venv_python();
    let data = tempfile::tempdir().unwrap();
    let script = |sidecar: &RunningSidecar, phase: &str| {
        let mut script = Command::new(&python);
        script
            .arg(repo_path(
                "crates/sidecar/tests/sidecar/python-sdk/workflows.py",
            ))
            .env("DAPR_HTTP_PORT", sidecar.address.port().to_string())
            .env("DAPR_GRPC_PORT", sidecar.grpc_address.port().to_string())
            .env("PHASE", phase);
        script
    };
    let sidecar = RunningSidecar::start(config("py-workflows", None, data.path())).await;
    test_support::run_sdk_checks(
        script(&sidecar, "main"),
        "the Python SDK workflow checks",
        11,
    )
    .await;
    test_support::run_sdk_checks(
        script(&sidecar, "before-restart"),
        "workflows before the restart",
        2,
    )
    .await;
    sidecar.stop().await;

    let sidecar = RunningSidecar::start(config("py-workflows", None, data.path())).await;
    test_support::run_sdk_checks(
        script(&sidecar, "after-restart"),
        "the workflows after the restart",
        2,
    )
    .await;
    sidecar.stop().await;
}
