//! `bindings.http` as Dapr's HTTP binding calls an endpoint: against the
//! echo app (which answers with what it was sent), over HTTP and gRPC,
//! with an endpoint that never answers, one that is not there, and one
//! behind mutual TLS.

use dapr::dapr::proto::runtime::v1 as pb;
use serde_json::{Value, json};
use test_support::sidecar::*;

use super::grpc::client;
use super::state::component_file;
use super::store_bindings::{call, metadata_header};

/// A sidecar with the `bindings.http` component `name` of `metadata`.
async fn sidecar_with(name: &str, metadata: &[(&str, &str)]) -> (RunningSidecar, TestResources) {
    let resources = TestResources::new();
    component_file(resources.resources.path(), name, "bindings.http", metadata);
    let sidecar = RunningSidecar::start(resources.config("http-binder", None)).await;
    (sidecar, resources)
}

#[tokio::test]
async fn the_http_binding_calls_its_endpoint_with_each_method_and_passes_the_answer_back() {
    let (echo, _stop) = start_echo_app().await;
    let url = format!("http://{echo}/");
    let (sidecar, _resources) = sidecar_with(
        "web",
        &[
            ("url", &url),
            ("securityToken", "s3cret"),
            ("securityTokenHeader", "X-Token"),
        ],
    )
    .await;

    // `get`: the path after the URL, headers from the capitalised keys, the
    // defaults, the token and the call's trace context.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let answer = reqwest::Client::new()
        .post(sidecar.url("/v1.0/bindings/web"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .header("baggage", "tenant=7")
        .json(&json!({
            "operation": "get",
            "metadata": {"path": "/items/7", "X-Custom": "yes", "lowercase": "not a header"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(metadata_header(&answer, "statusCode"), Some("200"));
    assert_eq!(metadata_header(&answer, "status"), Some("200 OK"));
    assert_eq!(
        metadata_header(&answer, "Content-Type"),
        Some("application/json")
    );
    let echoed: Value = answer.json().await.unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/items/7", "one slash between url and path");
    let headers = &echoed["headers"];
    assert_eq!(headers["x-custom"], "yes");
    assert_eq!(headers["x-token"], "s3cret");
    assert_eq!(headers["accept"], "application/json; charset=utf-8");
    assert!(headers.get("lowercase").is_none(), "{headers}");
    assert!(headers.get("content-type").is_none(), "a GET has no body");
    let traceparent = headers["traceparent"].as_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "the sidecar's span of the call, in the caller's trace: {traceparent}"
    );
    assert_ne!(traceparent, format!("00-{trace_id}-b7ad6b7169203331-01"));
    assert_eq!(headers["baggage"], "tenant=7");

    // `create` is POST, with the data as daprd marshals it.
    let created = call(&sidecar, "web", "create", json!({"a": 1}), json!({})).await;
    let echoed: Value = created.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/");
    assert_eq!(echoed["body"], r#"{"a":1}"#);
    assert_eq!(
        echoed["headers"]["content-type"],
        "application/json; charset=utf-8"
    );

    // Every other method by its name; the request's Content-Type wins.
    for method in ["post", "put", "patch", "delete", "options", "trace"] {
        let answer = call(
            &sidecar,
            "web",
            method,
            json!("text"),
            json!({"path": "m", "Content-Type": "text/plain"}),
        )
        .await;
        assert_eq!(answer.status(), 200, "{method}");
        let echoed: Value = answer.json().await.unwrap();
        assert_eq!(echoed["method"], method.to_uppercase());
        assert_eq!(echoed["path"], "/m");
        if matches!(method, "post" | "put" | "patch") {
            assert_eq!(echoed["body"], r#""text""#, "{method}");
            assert_eq!(echoed["headers"]["content-type"], "text/plain");
        } else {
            assert_eq!(echoed["body"], "", "{method} sends no body");
        }
    }
    let head = call(&sidecar, "web", "head", Value::Null, json!({})).await;
    assert_eq!(metadata_header(&head, "statusCode"), Some("200"));

    // An answer other than 2xx is daprd's error, its status and headers
    // coming back with it; with errorIfNot2XX false it is an answer.
    let failed = call(
        &sidecar,
        "web",
        "get",
        Value::Null,
        json!({"path": "/status/404"}),
    )
    .await;
    assert_eq!(metadata_header(&failed, "statusCode"), Some("404"));
    assert_eq!(metadata_header(&failed, "X-From-App"), Some("yes"));
    let message = assert_dapr_error(failed, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert_eq!(
        message,
        "error invoking output binding web: received status code 404"
    );
    let passed = call(
        &sidecar,
        "web",
        "get",
        Value::Null,
        json!({"path": "/status/404", "errorIfNot2XX": "false"}),
    )
    .await;
    assert_eq!(passed.status(), 200);
    assert_eq!(metadata_header(&passed, "status"), Some("404 Not Found"));
    assert_eq!(passed.text().await.unwrap(), "custom");

    let unknown = call(&sidecar, "web", "connect", Value::Null, json!({})).await;
    let message = assert_dapr_error(unknown, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert_eq!(
        message,
        "error invoking output binding web: binding web does not support operation connect. supported operations:create get head post put patch delete options trace"
    );

    // gRPC: the metadata in the answer and as its response metadata; a
    // failure's metadata with its status.
    let mut grpc = client(&sidecar).await;
    let answer = grpc
        .invoke_binding(pb::InvokeBindingRequest {
            name: "web".into(),
            operation: "post".into(),
            data: b"raw bytes".to_vec(),
            metadata: [("path".to_string(), "g".to_string())].into(),
        })
        .await
        .unwrap();
    assert_eq!(answer.metadata().get("metadata.statuscode").unwrap(), "200");
    let answer = answer.into_inner();
    assert_eq!(answer.metadata["statusCode"], "200");
    let echoed: Value = serde_json::from_slice(&answer.data).unwrap();
    assert_eq!(echoed["path"], "/g");
    assert_eq!(echoed["body"], "raw bytes");
    let status = grpc
        .invoke_binding(pb::InvokeBindingRequest {
            name: "web".into(),
            operation: "get".into(),
            data: Vec::new(),
            metadata: [("path".to_string(), "status/503".to_string())].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(
        status.message(),
        "error invoking output binding web: received status code 503"
    );
    assert_eq!(status.metadata().get("metadata.statuscode").unwrap(), "503");
    assert_eq!(status.metadata().get("metadata.x-from-app").unwrap(), "yes");

    // The sidecar served all of it and goes on serving.
    let again = call(&sidecar, "web", "get", Value::Null, json!({})).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn the_http_binding_cuts_long_answers_and_times_out_and_says_why_an_endpoint_failed() {
    let (echo, _stop) = start_echo_app().await;
    // An endpoint that takes connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    // A port with nothing on it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);

    let resources = TestResources::new();
    let dir = resources.resources.path();
    let echo_url = format!("http://{echo}");
    component_file(
        dir,
        "short",
        "bindings.http",
        &[("url", &echo_url), ("maxResponseBodySize", "10")],
    );
    component_file(
        dir,
        "silent",
        "bindings.http",
        &[("url", &silent_url), ("responseTimeout", "200ms")],
    );
    component_file(dir, "gone", "bindings.http", &[("url", &closed_url)]);
    let sidecar = RunningSidecar::start(resources.config("http-binder", None)).await;

    let cut = call(&sidecar, "short", "get", Value::Null, json!({})).await;
    assert_eq!(cut.status(), 200);
    let whole = reqwest::get(&echo_url).await.unwrap().text().await.unwrap();
    assert_eq!(cut.text().await.unwrap(), whole[..10]);

    let timed_out = call(&sidecar, "silent", "get", Value::Null, json!({"path": "x"})).await;
    let message = assert_dapr_error(timed_out, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert_eq!(
        message,
        format!(
            "error invoking output binding silent: Get \"{silent_url}/x\": context deadline exceeded"
        )
    );

    let refused = call(&sidecar, "gone", "delete", Value::Null, json!({})).await;
    let message = assert_dapr_error(refused, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert!(
        message.starts_with(&format!(
            "error invoking output binding gone: Delete \"{closed_url}\": "
        )) && message.contains("Connection refused"),
        "{message}"
    );
    drop(silent);
}

#[tokio::test]
async fn the_http_binding_shows_its_client_certificate_to_an_mtls_endpoint() {
    let (address, _stop) = test_support::tls::start_mtls_echo_app().await;
    let url = format!("https://{address}");
    let resources = TestResources::new();
    let dir = resources.resources.path();
    // The root CA as PEM text, the certificate and key as files.
    let ca = test_support::tls::CA_PEM.replace('\n', "\\n");
    let cert = dir.join("client.pem");
    let key = dir.join("client.key");
    std::fs::write(&cert, test_support::tls::CLIENT_PEM).unwrap();
    std::fs::write(&key, test_support::tls::CLIENT_KEY).unwrap();
    component_file(
        dir,
        "secure",
        "bindings.http",
        &[
            ("url", &url),
            ("MTLSRootCA", &ca),
            ("MTLSClientCert", cert.to_str().unwrap()),
            ("MTLSClientKey", key.to_str().unwrap()),
        ],
    );
    component_file(
        dir,
        "anonymous",
        "bindings.http",
        &[("url", &url), ("MTLSRootCA", &ca)],
    );
    let sidecar = RunningSidecar::start(resources.config("http-binder", None)).await;

    let answer = call(
        &sidecar,
        "secure",
        "get",
        Value::Null,
        json!({"path": "hi"}),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let echoed: Value = answer.json().await.unwrap();
    assert_eq!(echoed["path"], "/hi");

    let refused = call(&sidecar, "anonymous", "get", Value::Null, json!({})).await;
    let message = assert_dapr_error(refused, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert!(
        message.starts_with(&format!(
            "error invoking output binding anonymous: Get \"{url}\": "
        )),
        "{message}"
    );
}

#[tokio::test]
async fn an_http_binding_with_bad_metadata_is_refused_at_start() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("responseTimeout", "1s")], "metadata `url` is required"),
        (
            &[("url", "ftp://example.com")],
            "url `ftp://example.com` is not an http:// or https:// URL",
        ),
        (
            &[("url", "http://127.0.0.1:1"), ("responseTimeout", "soon")],
            "responseTimeout: `soon` is not a duration",
        ),
        (
            &[
                ("url", "http://127.0.0.1:1"),
                ("maxResponseBodySize", "lots"),
            ],
            "invalid value for maxResponseBodySize",
        ),
        (
            &[
                ("url", "http://127.0.0.1:1"),
                ("MTLSRootCA", "/no/such/ca.pem"),
            ],
            "provided \"MTLSRootCA\" value is neither a valid file path or nor a valid pem encoded string",
        ),
    ];
    for (metadata, expected) in cases {
        let resources = TestResources::new();
        component_file(resources.resources.path(), "web", "bindings.http", metadata);
        let error = match sidecar::Sidecar::new(resources.config("http-binder", None)).await {
            Ok(_) => panic!("a binding with {metadata:?} was opened"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.starts_with(&format!("binding `web` (bindings.http): {expected}")),
            "{metadata:?}: {error}"
        );
    }
}
