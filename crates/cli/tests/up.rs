//! `dapr-wasm up` end to end: the whole image demo from a run file, with
//! real processes, through web-port, then `list`, `invoke`, a killed app,
//! and a clean stop that leaves no process behind.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{DemoSpec, EventsApp, Up, free_port, wait_gone};
use test_support::metrics::Scrape;
use test_support::otlp::{ReceivedSpan, SpanReceiver};
use test_support::repo_path;

async fn hello(client: &reqwest::Client, web: &str, api: &str, photo: &str) -> reqwest::Response {
    hello_at(client, &format!("{web}/api/hello"), api, photo).await
}

async fn hello_at(
    client: &reqwest::Client,
    url: &str,
    api: &str,
    photo: &str,
) -> reqwest::Response {
    client
        .post(url)
        .header("api", api)
        .body(test_support::photo(photo))
        .send()
        .await
        .unwrap()
}

/// An upload's `Server-Timing`, in the order the hops added it on the way
/// back: the image app's stages, its sidecar's hop, web-port's sidecar's
/// hop, then web-port's own; each hop's time covers the hops inside it.
fn every_hop_says_where_the_time_went(
    headers: &reqwest::header::HeaderMap,
    image_app: &str,
    inference: Option<&str>,
) {
    let entries: Vec<(String, f64, Option<String>)> = headers
        .get_all("server-timing")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|entry| {
            let mut parts = entry.trim().split(';');
            let name = parts.next().unwrap().to_string();
            let (mut dur, mut desc) = (None, None);
            for param in parts {
                match param.split_once('=') {
                    Some(("dur", v)) => dur = Some(v.parse::<f64>().unwrap()),
                    Some(("desc", v)) => desc = Some(v.trim_matches('"').to_string()),
                    _ => panic!("unexpected parameter {param} in {entry}"),
                }
            }
            (
                name,
                dur.unwrap_or_else(|| panic!("no dur in {entry}")),
                desc,
            )
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut expected = vec!["queue", "instantiate", "wasm"];
    expected.extend(inference.map(|_| "inference"));
    expected.extend(["app", "dapr", "dapr", "stats", "web-port"]);
    assert_eq!(names, expected, "{entries:?}");
    let at = |i: usize| &entries[i];
    let n = entries.len();
    let (app, callee, caller, web_port) = (at(n - 5), at(n - 4), at(n - 3), at(n - 1));
    assert_eq!(callee.2.as_deref(), Some(image_app), "{entries:?}");
    assert_eq!(caller.2.as_deref(), Some("web-port"), "{entries:?}");
    if let Some(described) = inference {
        assert_eq!(at(3).2.as_deref(), Some(described), "{entries:?}");
        assert!(at(3).1 <= at(2).1, "inference within wasm: {entries:?}");
    }
    // Each hop contains the next one in.
    assert!(at(1).1 <= at(2).1, "instantiate within wasm: {entries:?}");
    assert!(at(2).1 <= app.1, "wasm within app: {entries:?}");
    assert!(app.1 <= callee.1, "app within its sidecar: {entries:?}");
    assert!(callee.1 <= caller.1, "callee within caller: {entries:?}");
    assert!(
        caller.1 <= web_port.1,
        "sidecars within web-port: {entries:?}"
    );
}

/// The issue's acceptance, after one grayscale and two classify uploads
/// (efficientnet-lite0, then lite2): every app and every sidecar serves its
/// own metrics port, and each counted them.
async fn uploads_show_on_every_metrics_port(up: &Up) {
    let records = up.records();
    let scrape = |app_id: &str, port: &str| {
        let record = records
            .iter()
            .find(|r| r["app_id"] == app_id)
            .unwrap_or_else(|| panic!("no record of {app_id}"));
        let port = record[port].as_u64().unwrap();
        Scrape::fetch_owned(format!("http://127.0.0.1:{port}/metrics"))
    };
    let web = scrape("web-port", "app_metrics_port").await;
    let uploads =
        |api: &str| web.value("web_port_uploads_total", &[("api", api), ("status", "200")]);
    assert_eq!(uploads("grayscale"), Some(1.0));
    assert_eq!(uploads("classify"), Some(2.0));
    let answered = web.value(
        "http_server_requests_total",
        &[
            ("http_request_method", "POST"),
            ("http_route", "/api/hello"),
            ("http_response_status_code", "200"),
        ],
    );
    assert_eq!(answered, Some(3.0));

    let gray = scrape("image-api-grayscale", "app_metrics_port").await;
    let ok = [("function", "grayscale"), ("outcome", "ok")];
    assert_eq!(gray.value("dapr_wasm_function_calls_total", &ok), Some(1.0));
    let classify = scrape("image-api-classify", "app_metrics_port").await;
    let ok = [("function", "classify"), ("outcome", "ok")];
    assert_eq!(
        classify.value("dapr_wasm_function_calls_total", &ok),
        Some(2.0)
    );
    for model in ["efficientnet-lite0", "efficientnet-lite2"] {
        let inferences = classify.value(
            "dapr_wasm_nn_inference_duration_seconds_count",
            &[("model", model), ("backend", "onnxruntime")],
        );
        assert_eq!(inferences, Some(1.0), "{model}");
    }

    // Each sidecar: web-port's invoked the image apps, theirs were invoked.
    let invoked = |scrape: &Scrape, app_id: &str| {
        scrape.sum(
            "dapr_http_client_completed_count",
            &[("app_id", app_id), ("status", "200")],
        )
    };
    let web_sidecar = scrape("web-port", "metrics_port").await;
    let state = web_sidecar.sum(
        "dapr_component_state_count",
        &[("app_id", "web-port"), ("success", "true")],
    );
    assert!(state >= 2.0, "the stats were read and written: {state}");
    let gray_sidecar = scrape("image-api-grayscale", "metrics_port").await;
    assert_eq!(invoked(&gray_sidecar, "image-api-grayscale"), 1.0);
    let classify_sidecar = scrape("image-api-classify", "metrics_port").await;
    assert_eq!(invoked(&classify_sidecar, "image-api-classify"), 2.0);
}

/// The trace of one classify upload whose client sent `traceparent`
/// `00-{trace_id}-{client_span}-01`: every hop recorded its span in that
/// trace, each the child of the hop before, within its parent's time, and
/// the function call's stages add up to no more than the call.
async fn one_upload_is_one_trace_through_every_hop(
    collector: &SpanReceiver,
    trace_id: &str,
    client_span: &str,
) {
    const SERVER: i32 = 2;
    const CLIENT: i32 = 3;
    let find = |spans: &[ReceivedSpan], service: &str, parent: &str, name: &str| {
        spans
            .iter()
            .find(|s| s.service == service && s.parent_span_id == parent && s.name == name)
            .cloned()
    };
    let stage = |spans: &[ReceivedSpan], name: &str| spans.iter().find(|s| s.name == name).cloned();
    // Each process sends its spans when it will: wait for all of them.
    let expected = [
        "POST /api/hello",
        "invoke image-api-classify",
        "POST /_dapr-wasm/internal/invoke/{app_id}/{*method}",
        "POST /api/image",
        "function classify",
        "queue",
        "instantiate",
        "wasm",
        "inference",
        "decode",
        "preprocess",
        "stats",
        "GET /v1.0/state/{store}/{key}",
        "POST /v1.0/state/{store}",
    ];
    let spans = collector
        .wait_for_trace(
            trace_id,
            "every hop's span",
            Duration::from_secs(30),
            |spans| {
                expected.iter().all(|name| stage(spans, name).is_some())
                    && spans.iter().any(|s| {
                        s.name == "POST /v1.0/invoke/{app_id}/method/{*method}"
                            || s.name == "/dapr.proto.runtime.v1.Dapr/InvokeService"
                    })
            },
        )
        .await;
    let web = find(&spans, "web-port", client_span, "POST /api/hello").expect("web-port's span");
    assert_eq!(web.kind, SERVER);
    assert_eq!(web.attribute("http.response.status_code"), Some("200"));
    let call = find(
        &spans,
        "web-port",
        &web.span_id,
        "invoke image-api-classify",
    )
    .expect("web-port's call to the app");
    assert_eq!(call.kind, CLIENT);
    let caller = spans
        .iter()
        .find(|s| s.service == "web-port" && s.parent_span_id == call.span_id)
        .expect("web-port's sidecar's span");
    assert!(
        [
            "POST /v1.0/invoke/{app_id}/method/{*method}",
            "/dapr.proto.runtime.v1.Dapr/InvokeService"
        ]
        .contains(&caller.name.as_str()),
        "{caller:?}"
    );
    let callee = find(
        &spans,
        "image-api-classify",
        &caller.span_id,
        "POST /_dapr-wasm/internal/invoke/{app_id}/{*method}",
    )
    .expect("the classify sidecar's span");
    let app = find(
        &spans,
        "image-api-classify",
        &callee.span_id,
        "POST /api/image",
    )
    .expect("the classify app's span");
    let function = find(
        &spans,
        "image-api-classify",
        &app.span_id,
        "function classify",
    )
    .expect("the function call's span");
    let stages: Vec<ReceivedSpan> = ["queue", "instantiate", "wasm"]
        .iter()
        .map(|name| {
            find(&spans, "image-api-classify", &function.span_id, name)
                .unwrap_or_else(|| panic!("the call's {name} span"))
        })
        .collect();
    let inference = find(
        &spans,
        "image-api-classify",
        &stages[2].span_id,
        "inference",
    )
    .expect("the inference's span, in the guest's run");
    assert_eq!(
        inference.attribute("dapr_wasm.model"),
        Some("efficientnet-lite0")
    );
    assert_eq!(
        inference.attribute("dapr_wasm.nn_backend"),
        Some("onnxruntime")
    );
    for (inner, outer) in [
        (&call, &web),
        (caller, &call),
        (&callee, caller),
        (&app, &callee),
        (&function, &app),
        (&stages[0], &function),
        (&stages[1], &function),
        (&stages[2], &function),
        (&inference, &stages[2]),
    ] {
        assert!(inner.within(outer), "{inner:?} within {outer:?}");
    }
    // Inside the guest's run: the stages classify timed itself, before the
    // inference.
    for name in ["decode", "preprocess"] {
        let guest = find(&spans, "image-api-classify", &stages[2].span_id, name)
            .unwrap_or_else(|| panic!("the guest's {name} span"));
        assert_eq!(guest.attribute("dapr_wasm.timed_by"), Some("guest"));
        assert!(guest.within(&stages[2]), "{guest:?} within {:?}", stages[2]);
        assert!(
            guest.end <= inference.start,
            "{guest:?} before {inference:?}"
        );
    }
    let staged: Duration = stages.iter().map(ReceivedSpan::duration).sum();
    assert!(
        staged <= function.duration(),
        "{stages:?} add up to more than {function:?}"
    );
    // The stats: web-port's span, and the state calls its sidecar served.
    let stats = find(&spans, "web-port", &web.span_id, "stats").expect("the stats span");
    for name in ["GET /v1.0/state/{store}/{key}", "POST /v1.0/state/{store}"] {
        let state = find(&spans, "web-port", &stats.span_id, name)
            .unwrap_or_else(|| panic!("the sidecar's {name} span under the stats"));
        assert!(state.within(&stats), "{state:?} within {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_the_whole_demo_and_stops_without_leftovers() {
    let collector = SpanReceiver::start().await;
    let spec = DemoSpec {
        tracing_to: Some(collector.address()),
        ..DemoSpec::default()
    };
    let (up, ports, _dir) = Up::start_demo_with(&spec);
    let web = up.wait_ready();
    assert_eq!(web, format!("http://127.0.0.1:{}", ports[0]));

    let client = reqwest::Client::new();
    let gray = hello(&client, &web, "grayscale", "cat.jpg").await;
    assert_eq!(gray.status(), 200);
    assert_eq!(gray.headers()["content-type"], "image/png");
    every_hop_says_where_the_time_went(gray.headers(), "image-api-grayscale", None);
    let gray = image::load_from_memory(&gray.bytes().await.unwrap()).unwrap();
    assert!(gray.as_luma8().is_some());
    let (trace_id, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let answer = client
        .post(format!("{web}/api/hello"))
        .header("api", "classify")
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .body(test_support::photo("coffee.png"))
        .send()
        .await
        .unwrap();
    one_upload_is_one_trace_through_every_hop(&collector, trace_id, client_span).await;
    every_hop_says_where_the_time_went(
        answer.headers(),
        "image-api-classify",
        Some("onnxruntime/efficientnet-lite0"),
    );
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["label"], "espresso", "{answer}");
    // The issue's acceptance: a model chosen per request, named in the answer.
    let url = format!("{web}/api/hello?model=efficientnet-lite2");
    let answer: Value = hello_at(&client, &url, "classify", "cat.jpg")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["model"], "efficientnet-lite2", "{answer}");
    assert!(
        (281..=285).contains(&answer["index"].as_u64().unwrap()),
        "{answer}"
    );
    let stats = test_support::get_json(format!("{web}/api/invokecount")).await;
    assert_eq!(stats["count"], 3, "{stats}");
    uploads_show_on_every_metrics_port(&up).await;
    // The System panel's data: every app and sidecar answers.
    let system = test_support::get_json(format!("{web}/api/system")).await;
    let processes = system["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 6, "{system}");
    assert!(processes.iter().all(|p| p["healthy"] == true), "{system}");
    assert_eq!(processes[1]["name"], "web-port sidecar", "{system}");

    // `list` shows the three apps; `invoke` calls one through its sidecar.
    let list = up.cli(&["list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    for id in ["web-port", "image-api-grayscale", "image-api-classify"] {
        assert!(list.contains(id), "{list}");
    }
    let cat = repo_path("testdata/cat.jpg");
    let invoked = up.cli(&[
        "invoke",
        "--app-id",
        "image-api-classify",
        "--method",
        "api/image",
        "--data-file",
        cat.to_str().unwrap(),
    ]);
    assert!(
        invoked.status.success(),
        "{}",
        String::from_utf8_lossy(&invoked.stderr)
    );
    let answer: Value = serde_json::from_slice(&invoked.stdout).unwrap();
    assert!(
        (281..=285).contains(&answer["index"].as_u64().unwrap()),
        "{answer}"
    );

    // Kill the classify app: a clear 503 for classify, grayscale unaffected.
    let records = up.records();
    let classify = records
        .iter()
        .find(|r| r["app_id"] == "image-api-classify")
        .unwrap();
    let pid = classify["app_pid"].as_u64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    up.wait_for("image-api-classify exited");
    let failed = hello(&client, &web, "classify", "cat.jpg").await;
    assert_eq!(failed.status(), 503);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_IMAGE_APP_UNAVAILABLE", "{body}");
    assert_eq!(
        hello(&client, &web, "grayscale", "cat.jpg").await.status(),
        200
    );

    // SIGTERM stops everything.
    let pids: Vec<u64> = records
        .iter()
        .flat_map(|r| {
            [
                r["app_pid"].as_u64().unwrap(),
                r["sidecar_pid"].as_u64().unwrap(),
            ]
        })
        .collect();
    let mut up = up;
    unsafe { libc::kill(up.child.id() as i32, libc::SIGTERM) };
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let left = wait_gone(&pids, Duration::from_secs(5));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(up.records().is_empty(), "run records removed");
}

/// The issue's acceptance: under `dapr-wasm up`, an app's client code that
/// uses the official Python SDK with its defaults (gRPC) and only
/// `DAPR_HTTP_PORT` and `DAPR_GRPC_PORT` saves and reads state and invokes
/// image-api-classify.
#[test]
#[ignore = "needs the Dapr Python SDK in build/test-venv (scripts/test.sh installs it and runs this)"]
fn the_python_sdk_works_against_up_over_grpc() {
    let python = repo_path("build/test-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/test.sh creates it",
        python.display()
    );
    let (up, ports, _dir) = Up::start_demo();
    up.wait_ready();
    // web-port's sidecar: HTTP port 1, gRPC port 6.
    let output = Command::new(python)
        .arg(repo_path("crates/cli/tests/python/sdk_client.py"))
        .arg(repo_path("testdata/coffee-1024x768.jpg"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DAPR_HTTP_PORT", ports[1].to_string())
        .env("DAPR_GRPC_PORT", ports[6].to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "espresso", "{stderr}");
    // `list` shows the gRPC and metrics ports.
    let list = String::from_utf8_lossy(&up.cli(&["list"]).stdout).into_owned();
    assert!(list.contains("GRPC PORT"), "{list}");
    assert!(list.contains("METRICS PORT"), "{list}");
    for grpc in &ports[6..] {
        assert!(list.contains(&grpc.to_string()), "{list}");
    }
    // Each sidecar has its own metrics port (one `up` picked); web-port's
    // counted the SDK's calls with daprd's names.
    let records = up.records();
    let metrics_ports: std::collections::HashSet<u64> = records
        .iter()
        .map(|r| r["metrics_port"].as_u64().unwrap())
        .collect();
    assert_eq!(metrics_ports.len(), records.len(), "{records:?}");
    let web_port = records
        .iter()
        .find(|r| r["app_id"] == "web-port")
        .expect("web-port's record");
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        web_port["metrics_port"].as_u64().unwrap()
    );
    let scrape = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(test_support::metrics::Scrape::fetch(&url));
    let rpc = |method: &str| {
        scrape.value(
            "dapr_grpc_io_server_completed_rpcs",
            &[
                ("app_id", "web-port"),
                ("grpc_server_method", method),
                ("grpc_server_status", "OK"),
            ],
        )
    };
    assert_eq!(rpc("dapr.proto.runtime.v1.Dapr/InvokeService"), Some(1.0));
    assert_eq!(rpc("dapr.proto.runtime.v1.Dapr/SaveState"), Some(1.0));
}

/// The demo with its fifth app, events, on a machine whose broker is down:
/// `up` runs every sidecar with `--embedded-pubsub-fallback`, so the
/// `pubsub.redis` component is served by the embedded broker, and every
/// upload is recorded: `GET /events` on web-port lists both uploads.
#[tokio::test(flavor = "multi_thread")]
async fn up_records_every_upload_in_the_events_app_even_without_a_broker() {
    let nothing_listens = free_port();
    let spec = DemoSpec {
        events: Some(EventsApp {
            ports: [(); 3].map(|()| free_port()),
            pubsub_spec: format!(
                "  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"127.0.0.1:{nothing_listens}\"\n"
            ),
        }),
        ..DemoSpec::default()
    };
    let (up, _ports, _dir) = Up::start_demo_with(&spec);
    let web = up.wait_ready();
    let client = reqwest::Client::new();
    assert_eq!(
        hello(&client, &web, "grayscale", "cat.jpg").await.status(),
        200
    );
    assert_eq!(
        hello(&client, &web, "classify", "coffee.png")
            .await
            .status(),
        200
    );
    let events = test_support::sidecar::wait_for_json(
        "both uploads in the events app",
        &format!("{web}/events"),
        |page| page["events"].as_array().is_some_and(|e| e.len() == 2),
    )
    .await;
    let apis: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["api"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(apis, ["classify", "grayscale"], "{events}");
    let summary = test_support::get_json(format!("{web}/events/summary")).await;
    assert_eq!(summary["total"], 2, "{summary}");
    let list = String::from_utf8_lossy(&up.cli(&["list"]).stdout).into_owned();
    assert!(list.contains("events"), "{list}");
}

/// A function in each example language (C, AssemblyScript, JavaScript)
/// under `dapr-wasm up`, as deploy/examples.yaml runs them: invoked through
/// the sidecar from the function app (deploy/functions/examples.yaml), and
/// run by the sidecar itself as `bindings.wasm` components
/// (deploy/examples/components).
#[tokio::test(flavor = "multi_thread")]
async fn up_serves_a_function_in_each_language_invoked_and_as_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let [app, http, grpc] = [(); 3].map(|()| free_port());
    let root = repo_path("").canonicalize().unwrap();
    let run_file = dir.path().join("examples.yaml");
    std::fs::write(
        &run_file,
        format!(
            "version: 1\ncommon:\n  resourcesPath: {root}/deploy/examples/components\napps:\n\
             - appID: functions-examples\n  appDirPath: {root}\n  appPort: {app}\n  daprHTTPPort: {http}\n  daprGRPCPort: {grpc}\n  \
             command: [\"dapr-wasm\", \"functions\", \"--config\", \"deploy/functions/examples.yaml\"]\n",
            root = root.display()
        ),
    )
    .unwrap();
    let up = Up::start_with(&run_file, tempfile::tempdir().unwrap(), &["--watch"]);
    up.wait_for("up: the app and its sidecar are ready");
    let client = reqwest::Client::new();
    let sidecar = format!("http://127.0.0.1:{http}");
    // `up --watch`: the function app rebuilds each function with a
    // `build` section when its sources change.
    let listing = test_support::get_json(format!(
        "{sidecar}/v1.0/invoke/functions-examples/method/fn"
    ))
    .await;
    assert_eq!(listing["watch"], true, "{listing}");
    let wordcount = &listing["functions"][0];
    assert_eq!(wordcount["name"], "wordcount");
    assert_eq!(
        wordcount["build"]["command"],
        "bash ../../scripts/build-functions.sh"
    );
    let invoke = |method: &str, body: &'static str| {
        client
            .post(format!(
                "{sidecar}/v1.0/invoke/functions-examples/method/fn/{method}"
            ))
            .body(body)
            .send()
    };
    let bind = |name: &str, call: Value| {
        client
            .post(format!("{sidecar}/v1.0/bindings/{name}"))
            .json(&call)
            .send()
    };
    let json = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };

    let counts = json(invoke("wordcount", "to be or not to be").await.unwrap()).await;
    assert_eq!(counts["words"], 6, "{counts}");
    let rows = json(invoke("csv2json", "a,b\n1,2\n").await.unwrap()).await;
    assert_eq!(rows, serde_json::json!([{"a": "1", "b": "2"}]));
    let groups = json(
        invoke(
            "summarize",
            r#"[{"city":"Porto","cups":1},{"city":"Porto","cups":2}]"#,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        groups,
        serde_json::json!([{"city": "Porto", "count": 2, "cups": 3}])
    );

    let execute = |data: Value, args: &str| serde_json::json!({"operation": "execute", "data": data, "metadata": {"args": args}});
    let counts = json(
        bind("wordcount", execute("to be or not to be".into(), "--top,1"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        counts["top"],
        serde_json::json!([{"word": "be", "count": 2}])
    );
    // `data` arrives JSON-encoded: one line, so a header and no rows.
    let rows = json(bind("csv2json", execute("a,b".into(), "")).await.unwrap()).await;
    assert_eq!(rows, serde_json::json!([]));
    let groups = json(
        bind(
            "summarize",
            execute(
                serde_json::json!([{"kind": "tea"}, {"kind": "tea"}]),
                "kind",
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(groups, serde_json::json!([{"kind": "tea", "count": 2}]));

    // `up` killed outright: its apps and sidecars are told to stop (their
    // parent-death signal) and do, though the pipe their logs went to is
    // gone with it.
    let pids: Vec<u64> = up
        .records()
        .iter()
        .flat_map(|r| {
            [
                r["app_pid"].as_u64().unwrap(),
                r["sidecar_pid"].as_u64().unwrap(),
            ]
        })
        .collect();
    assert_eq!(pids.len(), 2);
    let mut up = up;
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let left = wait_gone(&pids, Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// The UI in a real browser (Debian's Chromium via playwright-core; see
/// crates/web-port/tests/browser/ui.mjs). Screenshots go to
/// `<target dir>/ui-screenshots/`.
#[test]
#[ignore = "needs Debian's chromium and npm's playwright-core (scripts/test.sh installs them and runs this)"]
fn the_ui_works_in_a_real_browser() {
    let browser_dir = repo_path("crates/web-port/tests/browser");
    assert!(
        Path::new("/usr/bin/chromium").exists()
            && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium or playwright-core is missing: scripts/test.sh installs them"
    );
    let (up, _ports, _dir) = Up::start_demo();
    let line = up.wait_for("up: open http://");
    let url = line.trim_start_matches("up: open ").to_string();
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target"))
        .join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let output = Command::new("node")
        .arg(browser_dir.join("ui.mjs"))
        .arg(&url)
        .arg(repo_path("testdata/cat.jpg"))
        .arg(&shots)
        .output()
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // What the browser saw (shown with `--no-capture`).
    println!("{stdout}");
    assert!(stdout.contains("grayscale shown: 451x300"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    assert!(shots.join("ui-classify.png").exists());
}
