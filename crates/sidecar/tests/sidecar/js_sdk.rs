//! Conformance with a client we did not write: the official Dapr
//! JavaScript SDK (`@dapr/dapr`) drives a real sidecar through
//! `js-sdk/conformance.mjs`, once over HTTP and once over gRPC; and its
//! actor runtime hosts actors that its `ActorProxyBuilder` calls
//! (`js-sdk/actors.mjs`). `scripts/test.sh` installs the SDK with `npm ci`.

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
        let (http, grpc) = (sidecar.address.port(), sidecar.grpc_address.port());
        let sdk_dir = sdk_dir.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg("conformance.mjs")
                .current_dir(&sdk_dir)
                .env("DAPR_HTTP_PORT", http.to_string())
                .env("DAPR_GRPC_PORT", grpc.to_string())
                .env("DAPR_PROTOCOL", protocol)
                .env("TARGET_APP_ID", "js-target")
                .output()
        })
        .await
        .unwrap()
        .expect("run node");
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{protocol}:\n{stdout}");
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        assert!(
            output.status.success(),
            "the JS SDK checks failed over {protocol}:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("{checks} passed, 0 failed")),
            "{protocol}: {stdout}"
        );
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
    let (host_port, caller_port) = (host.address.port(), caller.address.port());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("actors.mjs")
            .current_dir(&sdk_dir)
            .env("APP_PORT", port.to_string())
            .env("HOST_DAPR_HTTP_PORT", host_port.to_string())
            .env("CALLER_DAPR_HTTP_PORT", caller_port.to_string())
            .output()
    })
    .await
    .unwrap()
    .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the JS SDK actor checks failed:\n{stdout}"
    );
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    caller.stop().await;
    host.stop().await;
}
