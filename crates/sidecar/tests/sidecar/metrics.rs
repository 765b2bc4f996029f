//! `GET /metrics` on the metrics port: daprd's metric names and labels,
//! counted from real calls over both APIs.

use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use serde_json::json;
use test_support::metrics::Scrape;
use test_support::sidecar::*;

#[tokio::test]
async fn each_api_call_is_counted_with_daprds_names_and_labels() {
    let resources = TestResources::new();
    let sidecar = RunningSidecar::start(resources.config("metered", None)).await;
    let metrics_url = format!("http://{}/metrics", sidecar.metrics_address);

    // Before any call: the components are counted, nothing else.
    let before = Scrape::fetch(&metrics_url).await;
    let components = get_json(sidecar.url("/v1.0/metadata")).await["components"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        before.value("dapr_runtime_component_loaded", &[("app_id", "metered")]),
        Some(components as f64)
    );

    let client = reqwest::Client::new();
    for value in [1, 2] {
        let saved = client
            .post(sidecar.url("/v1.0/state/statestore"))
            .json(&json!([{"key": "k", "value": value}]))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 204);
    }
    let read = client
        .get(sidecar.url("/v1.0/state/statestore/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().await.unwrap(), "2");
    let missing = client
        .get(sidecar.url("/v1.0/state/nowhere/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    // Secrets: one found, one missing.
    for (name, status) in [("db:password", 200), ("missing", 500)] {
        let answer = client
            .get(sidecar.url(&format!("/v1.0/secrets/localsecrets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{name}");
    }

    let mut grpc = DaprClient::connect(format!("http://{}", sidecar.grpc_address))
        .await
        .unwrap();
    let get = |store: &str| pb::GetStateRequest {
        store_name: store.into(),
        key: "k".into(),
        ..Default::default()
    };
    let answer = grpc
        .get_state(get("statestore"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.data, b"2");
    let refused = grpc.get_state(get("nowhere")).await.unwrap_err();

    let after = Scrape::fetch(&metrics_url).await;
    let http = |method: &'static str, path: &'static str, status: &'static str| {
        [
            ("app_id", "metered"),
            ("method", method),
            ("path", path),
            ("status", status),
        ]
    };
    // The HTTP API, by route: two saves, one read, one refused read.
    assert_eq!(
        after.value(
            "dapr_http_server_request_count",
            &[
                ("app_id", "metered"),
                ("method", "POST"),
                ("path", "/v1.0/state/{store}")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        after.value(
            "dapr_http_server_response_count",
            &http("POST", "/v1.0/state/{store}", "204")
        ),
        Some(2.0)
    );
    let read_route = "/v1.0/state/{store}/{key}";
    for (status, count) in [("200", 1.0), ("400", 1.0)] {
        assert_eq!(
            after.value(
                "dapr_http_server_response_count",
                &http("GET", read_route, status)
            ),
            Some(count),
            "{status}"
        );
        let latency = http("GET", read_route, status);
        assert_eq!(
            after.value("dapr_http_server_latency_count", &latency),
            Some(count)
        );
        let mut bucket = latency.to_vec();
        bucket.push(("le", "+Inf"));
        assert_eq!(
            after.value("dapr_http_server_latency_bucket", &bucket),
            Some(count)
        );
    }
    // The state building block, from both APIs: the refused reads never
    // reached a store.
    let state = |operation: &'static str| {
        [
            ("app_id", "metered"),
            ("component", "statestore"),
            ("namespace", ""),
            ("operation", operation),
            ("success", "true"),
        ]
    };
    assert_eq!(
        after.value("dapr_component_state_count", &state("set")),
        Some(2.0)
    );
    assert_eq!(
        after.value("dapr_component_state_count", &state("get")),
        Some(2.0)
    );
    assert_eq!(
        after.value("dapr_component_state_latencies_count", &state("get")),
        Some(2.0)
    );
    let secret = |success: &'static str| {
        [
            ("app_id", "metered"),
            ("component", "localsecrets"),
            ("namespace", ""),
            ("operation", "get"),
            ("success", success),
        ]
    };
    for success in ["true", "false"] {
        assert_eq!(
            after.value("dapr_component_secret_count", &secret(success)),
            Some(1.0),
            "{success}"
        );
    }
    // The gRPC API, by method and status.
    let rpc = |status: &'static str| {
        [
            ("app_id", "metered"),
            ("grpc_server_method", "dapr.proto.runtime.v1.Dapr/GetState"),
            ("grpc_server_status", status),
        ]
    };
    assert_eq!(
        after.value("dapr_grpc_io_server_completed_rpcs", &rpc("OK")),
        Some(1.0)
    );
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        after.value(
            "dapr_grpc_io_server_completed_rpcs",
            &rpc("INVALID_ARGUMENT")
        ),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "dapr_grpc_io_server_server_latency_count",
            &[
                ("app_id", "metered"),
                ("grpc_server_method", "dapr.proto.runtime.v1.Dapr/GetState")
            ]
        ),
        Some(2.0)
    );
    sidecar.stop().await;
}

/// Calls to the app: `dapr_http_client_*`, by method, path and status.
#[tokio::test]
async fn calls_to_the_app_are_counted() {
    let resources = TestResources::new();
    let (app, _stop) = start_echo_app().await;
    let sidecar = RunningSidecar::start(resources.config("metered-app", Some(app.port()))).await;
    let called = reqwest::Client::new()
        .post(sidecar.url("/v1.0/invoke/metered-app/method/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(called.status(), 200);
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let labels = [
        ("app_id", "metered-app"),
        ("method", "POST"),
        ("path", "/orders"),
        ("status", "200"),
    ];
    assert_eq!(
        scrape.value("dapr_http_client_completed_count", &labels),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("dapr_http_client_roundtrip_latency_count", &labels),
        Some(1.0)
    );
    sidecar.stop().await;
}

/// `bindings.wasm` calls: `dapr_component_output_binding_*`, by operation
/// and outcome.
#[tokio::test]
async fn binding_calls_are_counted_by_operation_and_outcome() {
    let resources = TestResources::new();
    let wasm = test_support::wasm_path("echo");
    std::fs::write(
        resources.resources.path().join("echo.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: echo\nspec:\n  type: bindings.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: \"file://{}\"\n",
            wasm.display()
        ),
    )
    .unwrap();
    let sidecar = RunningSidecar::start(resources.config("metered-binder", None)).await;
    let client = reqwest::Client::new();
    for (operation, status) in [("execute", 200), ("execute", 200), ("delete", 500)] {
        let answer = client
            .post(sidecar.url("/v1.0/bindings/echo"))
            .json(&json!({"operation": operation, "data": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{operation}");
    }
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let binding = |operation: &'static str, success: &'static str| {
        [
            ("app_id", "metered-binder"),
            ("component", "echo"),
            ("namespace", ""),
            ("operation", operation),
            ("success", success),
        ]
    };
    assert_eq!(
        scrape.value(
            "dapr_component_output_binding_count",
            &binding("execute", "true")
        ),
        Some(2.0)
    );
    assert_eq!(
        scrape.value(
            "dapr_component_output_binding_count",
            &binding("delete", "false")
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "dapr_component_output_binding_latencies_count",
            &binding("execute", "true")
        ),
        Some(2.0)
    );
    sidecar.stop().await;
}
