//! Output bindings: `bindings.wasm` components run on the function host,
//! over HTTP and gRPC, field by field as daprd runs them (stdin is the
//! JSON-encoded `data`, argv the name and the comma-split `args`), with
//! our limits and errors, `strictSandbox`, metadata, and live reload.

use std::path::Path;

use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use serde_json::{Value, json};
use test_support::metrics::Scrape;
use test_support::sidecar::*;
use tonic::Code;

/// A `bindings.wasm` component named `name` for the wasm file at `wasm`,
/// with more metadata items.
fn binding_yaml(name: &str, wasm: &Path, metadata: &[(&str, &str)]) -> String {
    binding_yaml_at(name, &format!("file://{}", wasm.display()), metadata)
}

/// A `bindings.wasm` component named `name` for the wasm file at `url`.
fn binding_yaml_at(name: &str, url: &str, metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: \"{url}\"\n"
    );
    for (key, value) in metadata {
        yaml.push_str(&format!("  - name: {key}\n    value: \"{value}\"\n"));
    }
    yaml
}

/// Copies the built guest `guest` into `dir` as `name` and returns its path.
fn copy_guest(dir: &Path, guest: &str, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy(test_support::wasm_path(guest), &path).unwrap();
    path
}

/// A sidecar with the bindings `wordcount` (C), `csv2json`
/// (AssemblyScript), `summarize` (JavaScript: the QuickJS function with
/// `data/scripts`, a copy of functions/summarize-js, as its /app), `echo`,
/// `slow` (200 ms), `strict` and `loose` (the entropy guest with and
/// without `strictSandbox`).
async fn sidecar_with_bindings(resources: &TestResources) -> RunningSidecar {
    let data = resources.data.path();
    let scripts = data.join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    std::fs::copy(
        test_support::repo_path("functions/summarize-js/index.js"),
        scripts.join("index.js"),
    )
    .unwrap();
    let scripts_dir = format!("{}:/app", scripts.display());
    let components = [
        binding_yaml(
            "summarize",
            &copy_guest(data, "quickjs", "quickjs.wasm"),
            &[("dirs", &scripts_dir)],
        ),
        binding_yaml(
            "wordcount",
            &copy_guest(data, "wordcount-c", "wordcount.wasm"),
            &[],
        ),
        binding_yaml(
            "echo",
            &copy_guest(data, "echo", "echo.wasm"),
            &[("maxInput", "1Ki")],
        ),
        binding_yaml(
            "slow",
            &copy_guest(data, "spin", "spin.wasm"),
            &[("timeout", "200ms")],
        ),
        binding_yaml(
            "strict",
            &copy_guest(data, "entropy", "entropy.wasm"),
            &[("strictSandbox", "true")],
        ),
        binding_yaml("loose", &data.join("entropy.wasm"), &[]),
        binding_yaml(
            "csv2json",
            &copy_guest(data, "csv2json-as", "csv2json.wasm"),
            &[],
        ),
    ];
    std::fs::write(
        resources.resources.path().join("bindings.yaml"),
        components.join("---\n"),
    )
    .unwrap();
    RunningSidecar::start(resources.config("binder", None)).await
}

async fn invoke(sidecar: &RunningSidecar, name: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0/bindings/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn execute_runs_the_function_as_daprd_does_stdin_json_data_and_argv_args() {
    let resources = TestResources::new();
    let sidecar = sidecar_with_bindings(&resources).await;

    // `data` arrives JSON-encoded: a string with its quotes.
    let response = invoke(
        &sidecar,
        "echo",
        json!({"operation": "execute", "data": "hello"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "\"hello\"");
    let response = invoke(
        &sidecar,
        "echo",
        json!({"operation": "execute", "data": {"a": [1, 2]}}),
    )
    .await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"a":[1,2]}"#);

    // argv: the name, then `args` split at commas.
    let response = invoke(
        &sidecar,
        "wordcount",
        json!({"operation": "execute", "data": "to be or not to be", "metadata": {"args": "--top,1"}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let counts: Value = response.json().await.unwrap();
    assert_eq!(counts["words"], 6, "{counts}");
    assert_eq!(counts["top"], json!([{"word": "be", "count": 2}]));

    // No `args`: the function's defaults (top 5).
    let counts: Value = invoke(
        &sidecar,
        "wordcount",
        json!({"operation": "execute", "data": "to be or not to be"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(counts["top"].as_array().unwrap().len(), 4, "{counts}");

    // An AssemblyScript function: `data` is a JSON string, so the CSV
    // arrives quoted; over gRPC (below) it would arrive as it is.
    let response = invoke(
        &sidecar,
        "csv2json",
        json!({"operation": "execute", "data": {"ignored": true}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "[]\n");

    // A JavaScript function: the script from the component's `dirs`, the
    // JSON `data` its input, `args` its arguments.
    let response = invoke(
        &sidecar,
        "summarize",
        json!({"operation": "execute", "data": [{"kind": "tea"}, {"kind": "coffee"}, {"kind": "tea"}], "metadata": {"args": "kind"}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let groups: Value = response.json().await.unwrap();
    assert_eq!(
        groups,
        json!([{"kind": "tea", "count": 2}, {"kind": "coffee", "count": 1}])
    );

    // The metadata API lists the bindings.
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    let components = metadata["components"].as_array().unwrap();
    for name in [
        "wordcount",
        "csv2json",
        "summarize",
        "echo",
        "slow",
        "strict",
        "loose",
    ] {
        assert!(
            components
                .iter()
                .any(|c| c["name"] == name && c["type"] == "bindings.wasm"),
            "{name} missing from {metadata}"
        );
    }

    // The function host's metrics are on the sidecar's metrics port.
    let scrape = Scrape::fetch_owned(format!("http://{}/metrics", sidecar.metrics_address)).await;
    let ok = |function: &str| {
        scrape.value(
            "dapr_wasm_function_calls_total",
            &[("function", function), ("outcome", "ok")],
        )
    };
    assert_eq!(ok("wordcount"), Some(2.0));
    assert_eq!(ok("echo"), Some(2.0));
    assert_eq!(ok("summarize"), Some(1.0));
    sidecar.stop().await;
}

#[tokio::test]
async fn failures_get_daprds_error_or_ours_where_daprd_loses_the_reason() {
    let resources = TestResources::new();
    let sidecar = sidecar_with_bindings(&resources).await;

    let message = assert_dapr_error(
        invoke(&sidecar, "nope", json!({"operation": "execute", "data": 1})).await,
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
    )
    .await;
    assert!(
        message.contains("couldn't find output binding nope"),
        "{message}"
    );
    let message = assert_dapr_error(
        invoke(&sidecar, "echo", json!({"operation": "create", "data": 1})).await,
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
    )
    .await;
    assert_eq!(
        message,
        "error invoking output binding echo: binding echo does not support operation create. supported operations:execute"
    );
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/bindings/echo"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 400, "ERR_MALFORMED_REQUEST").await;
    // As daprd, the body is JSON whatever its content type says (`curl -d`
    // sends application/x-www-form-urlencoded).
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/bindings/echo"))
        .body(r#"{"operation":"execute","data":"as a form"}"#)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "\"as a form\"");

    // The function said no: its exit code and stderr line.
    let message = assert_dapr_error(
        invoke(
            &sidecar,
            "wordcount",
            json!({"operation": "execute", "data": "x", "metadata": {"args": "--top,many"}}),
        )
        .await,
        422,
        "ERR_FUNCTION_REJECTED",
    )
    .await;
    assert!(
        message.contains("function `wordcount` exited with code 1: --top must be a number"),
        "{message}"
    );
    // A guest that loops meets its component's timeout.
    let message = assert_dapr_error(
        invoke(&sidecar, "slow", json!({"operation": "execute", "data": 1})).await,
        504,
        "ERR_FUNCTION_TIMEOUT",
    )
    .await;
    assert!(message.contains("200ms"), "{message}");
    // Over the component's maxInput.
    assert_dapr_error(
        invoke(
            &sidecar,
            "echo",
            json!({"operation": "execute", "data": "x".repeat(2000)}),
        )
        .await,
        413,
        "ERR_BODY_TOO_LARGE",
    )
    .await;

    // The same over gRPC: daprd's codes, ErrorInfo carrying our errorCode.
    let mut client = DaprClient::connect(format!("http://{}", sidecar.grpc_address))
        .await
        .unwrap();
    let call = |name: &str, data: &[u8], args: Option<&str>| pb::InvokeBindingRequest {
        name: name.into(),
        data: data.to_vec(),
        metadata: args
            .map(|a| [("args".to_string(), a.to_string())].into())
            .unwrap_or_default(),
        operation: "execute".into(),
    };
    let answer = client
        .invoke_binding(call("wordcount", b"to be or not to be", Some("--top,1")))
        .await
        .unwrap()
        .into_inner();
    // gRPC passes the bytes as they are: no JSON quoting.
    let counts: Value = serde_json::from_slice(&answer.data).unwrap();
    assert_eq!(counts["words"], 6);
    let status = client
        .invoke_binding(call("nope", b"", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let status = client
        .invoke_binding(call("wordcount", b"x", Some("--top,many")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = client
        .invoke_binding(call("slow", b"", None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Still serving.
    let response = invoke(&sidecar, "echo", json!({"operation": "execute", "data": 7})).await;
    assert_eq!(response.text().await.unwrap(), "7");
    sidecar.stop().await;
}

#[tokio::test]
async fn a_strict_sandbox_cannot_tell_two_calls_apart() {
    let resources = TestResources::new();
    let sidecar = sidecar_with_bindings(&resources).await;
    let run = |name: &'static str| {
        let sidecar = &sidecar;
        async move {
            let response = invoke(sidecar, name, json!({"operation": "execute"})).await;
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let strict = (run("strict").await, run("strict").await);
    assert_eq!(
        strict.0, strict.1,
        "a strict sandbox differed between calls"
    );
    assert!(strict.0.starts_with("wall=0 "), "{}", strict.0);
    let loose = (run("loose").await, run("loose").await);
    assert_ne!(
        loose.0, loose.1,
        "the same guest without strictSandbox saw no change"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn a_wasm_file_replaced_on_disk_is_served_without_a_restart() {
    let resources = TestResources::new();
    let sidecar = sidecar_with_bindings(&resources).await;
    let echo = resources.data.path().join("echo.wasm");
    let replacement = resources.data.path().join("echo.wasm.new");
    std::fs::copy(test_support::wasm_path("wordcount-c"), &replacement).unwrap();
    std::fs::rename(&replacement, &echo).unwrap();
    let client = reqwest::Client::new();
    let url = sidecar.url("/v1.0/bindings/echo");
    test_support::wait_until(
        "the replaced echo binding counts words",
        std::time::Duration::from_secs(30),
        || {
            let request = client
                .post(&url)
                .json(&json!({"operation": "execute", "data": "one two"}))
                .send();
            async move {
                let Ok(response) = request.await else {
                    return false;
                };
                let text = response.text().await.unwrap_or_default();
                text.starts_with("{\"bytes\":9,\"lines\":1,\"words\":2")
            }
        },
    )
    .await;
    sidecar.stop().await;
}

/// A JavaScript function reads its script at each call: a changed script
/// answers the next call, and a broken one is an error naming the file
/// and line, not a broken binding.
#[tokio::test]
async fn a_changed_script_answers_the_next_call() {
    let resources = TestResources::new();
    let sidecar = sidecar_with_bindings(&resources).await;
    let script = resources.data.path().join("scripts/index.js");
    let call = || {
        invoke(
            &sidecar,
            "summarize",
            json!({"operation": "execute", "data": "hi"}),
        )
    };
    std::fs::write(&script, "function handle(input) { return `v2 ${input}`; }").unwrap();
    let response = call().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "v2 \"hi\"");

    std::fs::write(&script, "function handle(input) {\n  return input +;\n}").unwrap();
    let message = assert_dapr_error(call().await, 422, "ERR_FUNCTION_REJECTED").await;
    assert!(
        message.contains("function `summarize` exited with code 1: /app/index.js: SyntaxError: "),
        "{message}"
    );
    assert!(message.contains("(at /app/index.js:2:"), "{message}");

    std::fs::write(
        &script,
        "function handle() { throw new Error('no, thanks'); }",
    )
    .unwrap();
    let message = assert_dapr_error(call().await, 422, "ERR_FUNCTION_REJECTED").await;
    assert!(
        message.ends_with("function `summarize` exited with code 2: no, thanks"),
        "{message}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn a_bad_component_stops_the_sidecar_at_start_naming_it() {
    let resources = TestResources::new();
    std::fs::write(
        resources.resources.path().join("bindings.yaml"),
        binding_yaml("ghost", &resources.data.path().join("missing.wasm"), &[]),
    )
    .unwrap();
    let error = sidecar::Sidecar::new(resources.config("binder", None))
        .await
        .err()
        .expect("a missing wasm file is refused");
    let error = format!("{error:#}");
    assert!(error.contains("binding `ghost`"), "{error}");
    assert!(error.contains("missing.wasm does not exist"), "{error}");

    std::fs::write(
        resources.resources.path().join("bindings.yaml"),
        binding_yaml(
            "ghost",
            &copy_guest(resources.data.path(), "echo", "echo.wasm"),
            &[("memory", "lots")],
        ),
    )
    .unwrap();
    let error = sidecar::Sidecar::new(resources.config("binder", None))
        .await
        .err()
        .expect("a bad limit is refused");
    let error = format!("{error:#}");
    assert!(
        error.contains("binding `ghost`: metadata memory: "),
        "{error}"
    );

    std::fs::write(
        resources.resources.path().join("bindings.yaml"),
        binding_yaml(
            "ghost",
            &resources.data.path().join("echo.wasm"),
            &[("dirs", "/nowhere/at/all:/app")],
        ),
    )
    .unwrap();
    let error = sidecar::Sidecar::new(resources.config("binder", None))
        .await
        .err()
        .expect("a missing directory is refused");
    let error = format!("{error:#}");
    assert!(
        error.contains("binding `ghost`: metadata dirs: /nowhere/at/all is not a directory"),
        "{error}"
    );
}

#[tokio::test]
async fn an_http_url_is_fetched_at_start_and_its_copy_serves_when_the_server_is_gone() {
    let resources = TestResources::new();
    let wasm = std::fs::read(test_support::wasm_path("echo")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let files = axum::Router::new().route(
        "/echo.wasm",
        axum::routing::get(move || {
            let wasm = wasm.clone();
            async move { wasm }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, files).await });
    let components = resources.resources.path().join("bindings.yaml");
    std::fs::write(
        &components,
        binding_yaml_at("remote", &format!("http://{address}/echo.wasm"), &[]),
    )
    .unwrap();
    let call = json!({"operation": "execute", "data": "fetched"});
    let sidecar = RunningSidecar::start(resources.config("binder", None)).await;
    let response = invoke(&sidecar, "remote", call.clone()).await;
    assert_eq!(response.text().await.unwrap(), "\"fetched\"");
    sidecar.stop().await;

    // The server is gone: the copy kept in the data directory serves.
    server.abort();
    let _ = server.await;
    let sidecar = RunningSidecar::start(resources.config("binder", None)).await;
    let response = invoke(&sidecar, "remote", call).await;
    assert_eq!(response.text().await.unwrap(), "\"fetched\"");
    sidecar.stop().await;

    // A URL never fetched, from a server that is not there: a start-up
    // error naming the binding.
    std::fs::write(
        &components,
        binding_yaml_at("never", &format!("http://{address}/other.wasm"), &[]),
    )
    .unwrap();
    let error = sidecar::Sidecar::new(resources.config("binder", None))
        .await
        .err()
        .expect("an unreachable URL without a copy is refused");
    let error = format!("{error:#}");
    assert!(
        error.contains(&format!(
            "binding `never`: cannot fetch http://{address}/other.wasm"
        )),
        "{error}"
    );
}
