//! Conformance with a client we did not write: the official Dapr
//! JavaScript SDK (`@dapr/dapr`) drives a real sidecar through
//! `js-sdk/conformance.mjs`, once over HTTP and once over gRPC; and its
//! actor runtime hosts actors that its `ActorProxyBuilder` calls
//! (`js-sdk/actors.mjs`), and its `WorkflowRuntime` runs workflows that its
//! `DaprWorkflowClient` manages (`js-sdk/workflows.mjs`). `scripts/test.sh` installs the SDK with `npm ci`.

use std::path::PathBuf;
use std::process::Command;

use test_support::sidecar::*;

/// Where the SDK is installed (`npm ci`, by scripts/test.sh).
fn sdk_dir() -> PathBuf {
    let sdk_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sidecar/js-sdk");
    assert!(
        sdk_dir.join("node_modules/@dapr/dapr").exists(),
        "the Dapr JS SDK is not installed: run `npm ci --prefix {}` (scripts/test.sh does)",
        sdk_dir.display()
    );
    sdk_dir
}

#[tokio::test]
#[ignore = "needs the Dapr JS SDK, node, Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (scripts/test.sh installs them and runs this)"]
async fn the_official_dapr_js_sdk_works_against_the_sidecar() {
    let sdk_dir = sdk_dir();
    test_support::require_service("Redis", "127.0.0.1:6379");
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let resources = TestResources::new();
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
    let sidecar = RunningSidecar::start(resources.config("js-target", Some(app.port()))).await;

    // The same checks with each of the SDK's transports (and configuration,
    // which the SDK reads over gRPC only).
    for (protocol, checks) in [("http", 14), ("grpc", 15)] {
        let mut script = Command::new("node");
        script
            .arg("conformance.mjs")
            .current_dir(&sdk_dir)
            .env("DAPR_HTTP_PORT", sidecar.address.port().to_string())
            .env("DAPR_GRPC_PORT", sidecar.grpc_address.port().to_string())
            .env("DAPR_PROTOCOL", protocol)
            .env("TARGET_APP_ID", "js-target");
        let what = format!("the JS SDK checks over {protocol}");
        test_support::run_sdk_checks(script, &what, checks).await;
    }
    sidecar.stop().await;
}

/// The SDK's actor runtime (`DaprServer`, HTTP) hosts `DemoActor` behind
/// one sidecar; its `ActorProxyBuilder` calls it through another: state per
/// actor, and reminders and timers with their data (`js-sdk/actors.mjs`).
#[tokio::test]
#[ignore = "needs the Dapr JS SDK and node (scripts/test.sh installs them and runs this)"]
async fn the_js_sdk_hosts_and_calls_actors() {
    let sdk_dir = sdk_dir();
    let data = tempfile::tempdir().unwrap();
    let port = service_kit::ports::free_port().expect("a free port");
    // The sidecar asks the app for its actor types until it answers.
    let host = RunningSidecar::start(config("js-actors", Some(port), data.path())).await;
    let caller = RunningSidecar::start(config("js-actor-caller", None, data.path())).await;
    let mut script = Command::new("node");
    script
        .arg("actors.mjs")
        .current_dir(&sdk_dir)
        .env("APP_PORT", port.to_string())
        .env("HOST_DAPR_HTTP_PORT", host.address.port().to_string())
        .env("CALLER_DAPR_HTTP_PORT", caller.address.port().to_string());
    test_support::run_sdk_checks(script, "the JS SDK actor checks", 3).await;
    caller.stop().await;
    host.stop().await;
}

/// Workflows with the SDK's `WorkflowRuntime` (on `@dapr/durabletask-js`)
/// and `DaprWorkflowClient`, over the gRPC port (`js-sdk/workflows.mjs`):
/// activities, an external event with the custom status, a durable timer,
/// and suspend, resume, terminate and purge.
#[tokio::test]
#[ignore = "needs the Dapr JS SDK and node (scripts/test.sh installs them and runs this)"]
async fn the_js_sdk_runs_and_manages_workflows() {
    let sdk_dir = sdk_dir();
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("js-workflows", None, data.path())).await;
    let mut script = Command::new("node");
    script
        .arg("workflows.mjs")
        .current_dir(&sdk_dir)
        .env("DAPR_GRPC_PORT", sidecar.grpc_address.port().to_string());
    test_support::run_sdk_checks(script, "the JS SDK workflow checks", 4).await;
    sidecar.stop().await;
}
