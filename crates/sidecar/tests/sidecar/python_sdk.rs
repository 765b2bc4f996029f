//! Conformance with the official Dapr Python SDK (PyPI `dapr`, pinned in
//! scripts/test-requirements.txt) over its default transport, gRPC:
//! `python-sdk/conformance.py` drives a real sidecar, and invokes an HTTP
//! app behind a second sidecar over gRPC `InvokeService`, and publishes
//! events (`PublishEvent`).

use std::process::Command;

use test_support::repo_path;
use test_support::sidecar::*;

#[tokio::test]
#[ignore = "needs the Dapr Python SDK in build/test-venv (scripts/test.sh installs it and runs this)"]
async fn the_official_dapr_python_sdk_works_over_grpc() {
    let python = repo_path("build/test-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/test.sh creates it",
        python.display()
    );
    let resources = TestResources::new();
    std::fs::write(
        resources.resources.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n\
         spec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .unwrap();
    let (app, _app) = start_echo_app().await;
    let target =
        RunningSidecar::start(config("py-target", Some(app.port()), resources.data.path())).await;
    let caller = RunningSidecar::start(resources.config("py-caller", None)).await;

    let script = repo_path("crates/sidecar/tests/sidecar/python-sdk/conformance.py");
    let (http_port, grpc_port) = (caller.address.port(), caller.grpc_address.port());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("DAPR_HTTP_PORT", http_port.to_string())
            .env("DAPR_GRPC_PORT", grpc_port.to_string())
            .env("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
            .env("TARGET_APP_ID", "py-target")
            .env("CALLER_APP_ID", "py-caller")
            .output()
    })
    .await
    .unwrap()
    .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the Python SDK checks failed:\n{stdout}"
    );
    assert!(stdout.contains("13 passed, 0 failed"), "{stdout}");
    caller.stop().await;
    target.stop().await;
}
