//! Conformance with a client we did not write: the official Dapr
//! JavaScript SDK (`@dapr/dapr`) drives a real sidecar through
//! `js-sdk/conformance.mjs`, once over HTTP and once over gRPC. `scripts/test.sh` installs the SDK
//! with `npm ci`; without it this test skips locally and fails in CI.

use std::path::PathBuf;
use std::process::Command;

use test_support::sidecar::*;

#[tokio::test]
#[ignore = "needs the Dapr JS SDK, node, Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (scripts/test.sh installs them and runs this)"]
async fn the_official_dapr_js_sdk_works_against_the_sidecar() {
    let sdk_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sidecar/js-sdk");
    assert!(
        sdk_dir.join("node_modules/@dapr/dapr").exists(),
        "the Dapr JS SDK is not installed: run `npm ci --prefix {}` (scripts/test.sh does)",
        sdk_dir.display()
    );
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
