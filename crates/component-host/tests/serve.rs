//! wasi:http components served for real: `components/probes` (and the
//! crates.io `wstd` crate's own example server) on a real listener, called
//! over HTTP. Each test names what it proves.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use component_host::outbound::{Destination, Outbound};
use component_host::{
    ComponentHost, ComponentHostConfig, ComponentSettings, RequestLimits, ServedComponent,
};
use function_host::cache::CacheOutcome;
use reqwest::StatusCode;
use test_support::component_path;
use test_support::wait::wait_until;

/// A served component and its address; the server stops when dropped.
struct Served {
    address: SocketAddr,
    component: ServedComponent,
    _server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self._server.abort();
    }
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

async fn serve_router(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(service_kit::serve::serve(
        listener,
        router,
        service_kit::serve::ConnectionLimit::default(),
        std::future::pending(),
    ));
    (address, server)
}

async fn serve(name: &str, settings: ComponentSettings) -> Served {
    serve_on(ComponentHostConfig::default(), name, settings).await
}

async fn serve_on(config: ComponentHostConfig, name: &str, settings: ComponentSettings) -> Served {
    let path = component_path(name);
    let component = tokio::task::spawn_blocking(move || {
        ComponentHost::new(config)
            .expect("the host starts")
            .load_file(&path, settings)
            .expect("the component loads")
    })
    .await
    .expect("loading does not panic");
    let (address, server) = serve_router(component_host::app::router(component.clone())).await;
    Served {
        address,
        component,
        _server: server,
    }
}

fn limits() -> RequestLimits {
    RequestLimits {
        max_memory_bytes: 64 << 20,
        deadline: Duration::from_secs(2),
        max_request_body_bytes: 8 << 20,
        max_response_body_bytes: 8 << 20,
    }
}

fn settings() -> ComponentSettings {
    ComponentSettings {
        limits: limits(),
        ..ComponentSettings::default()
    }
}

/// An HTTP server standing in for a sidecar (or any destination): it
/// answers `GET /hello` with `hello from PORT`.
async fn destination() -> (u16, tokio::task::JoinHandle<()>) {
    let (address, server) = serve_router(Router::new().route(
        "/hello",
        axum::routing::get(|| async { "hello from the destination" }),
    ))
    .await;
    (address.port(), server)
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    (
        status,
        body["errorCode"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn round_trips_keep_the_method_query_headers_and_body() {
    let served = serve("probes", settings()).await;
    let client = reqwest::Client::new();
    let body = pattern(3 << 20);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ] {
        let response = client
            .request(method.clone(), served.url("/echo?a=1&b=two%20words"))
            .header("x-echo-token", "t-123")
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .expect("the request is answered");
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["x-method"], method.as_str());
        assert_eq!(headers["x-query"], "a=1&b=two%20words");
        assert_eq!(headers["x-echo-token"], "t-123");
        assert_eq!(headers["content-type"], "application/octet-stream");
        let echoed = response.bytes().await.expect("the body arrives");
        assert!(echoed == body, "{method}: the body came back changed");
    }
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = client
            .request(method.clone(), served.url("/echo"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-method"], method.as_str());
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let missing = client
        .get(served.url("/no/such/path"))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "the component's own statuses pass through"
    );
    assert_eq!(missing.text().await.expect("body"), "no such probe\n");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let served = serve("probes", settings()).await;
    let client = reqwest::Client::new();
    // A chunked upload (no Content-Length), read by the component chunk by
    // chunk.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(pattern(64 << 10))).collect();
    let response = client
        .post(served.url("/count"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.expect("body"),
        format!("{}\n", 64 * (64 << 10))
    );
    // A response made chunk by chunk.
    let response = client
        .get(served.url("/stream?bytes=5000000"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.expect("the whole body arrives");
    assert_eq!(bytes.len(), 5_000_000);
    assert!(bytes.iter().all(|&b| b == 0));
}

/// The most this process's resident memory ever reached (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
async fn a_one_gib_response_streams_without_a_one_gib_buffer() {
    const GIB: u64 = 1 << 30;
    let served = serve(
        "probes",
        ComponentSettings {
            limits: RequestLimits {
                deadline: Duration::from_secs(120),
                max_response_body_bytes: 2 * GIB,
                ..limits()
            },
            ..ComponentSettings::default()
        },
    )
    .await;
    let before = peak_rss();
    let mut response = reqwest::get(served.url(&format!("/stream?bytes={GIB}")))
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.expect("the body streams") {
        received += chunk.len() as u64;
    }
    assert_eq!(received, GIB);
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 256 << 20,
        "serving 1 GiB raised the peak resident memory by {} MiB",
        grew >> 20
    );
}

#[tokio::test]
async fn outbound_requests_reach_the_sidecar_and_allowed_destinations_only() {
    let (sidecar_port, _sidecar) = destination().await;
    let (other_port, _other) = destination().await;
    let (allowed_port, _allowed) = destination().await;
    let served = serve(
        "probes",
        ComponentSettings {
            outbound: Outbound::sidecar_and(
                Some(sidecar_port),
                vec![Destination::new("127.0.0.1", allowed_port)],
            ),
            ..settings()
        },
    )
    .await;
    let fetch = |port: u16| {
        let url = served.url(&format!("/fetch?url=http://127.0.0.1:{port}/hello"));
        async move { reqwest::get(url).await.expect("answered") }
    };
    for port in [sidecar_port, allowed_port] {
        let response = fetch(port).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.text().await.expect("body"),
            "200\nhello from the destination"
        );
    }
    let denied = fetch(other_port).await;
    assert_eq!(denied.status(), StatusCode::BAD_GATEWAY);
    let reason = denied.text().await.expect("body");
    assert!(
        reason.contains("HttpRequestDenied"),
        "the guest sees wasi:http's denial, got {reason:?}"
    );
}

#[tokio::test]
async fn a_component_sees_only_the_documented_environment_and_no_files_or_sockets() {
    let served = serve(
        "probes",
        ComponentSettings {
            env: vec![
                ("APP_ID".into(), "probe-app".into()),
                ("DAPR_HTTP_PORT".into(), "3512".into()),
            ],
            ..settings()
        },
    )
    .await;
    let seen = reqwest::get(served.url("/env"))
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..3],
        ["APP_ID=probe-app", "DAPR_HTTP_PORT=3512", "file:unreadable"]
    );
    assert_eq!(lines.len(), 4, "{seen}");
    assert!(
        lines[3].starts_with("socket:") && lines[3] != "socket:connected",
        "{seen}"
    );
}

#[tokio::test]
async fn each_limit_fails_only_its_own_request() {
    let served = serve("probes", settings()).await;
    let client = reqwest::Client::new();
    let echo_works = || async {
        let response = client
            .post(served.url("/echo"))
            .body("still here")
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.expect("body"), "still here");
    };

    // A guest that loops: 504, while other requests are answered meanwhile.
    let spin = tokio::spawn(client.get(served.url("/spin")).send());
    wait_until(
        "the looping request holds its slot",
        Duration::from_secs(10),
        || async {
            served.component.host().free_slots()
                < served.component.host().config().max_concurrent_requests
        },
    )
    .await;
    echo_works().await;
    let spun = spin.await.expect("joined").expect("answered");
    let (status, code, _) = error_code(spun).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "ERR_COMPONENT_TIMEOUT")
    );
    echo_works().await;

    let (status, code, message) = error_code(
        client
            .get(served.url("/hog"))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_COMPONENT_MEMORY_LIMIT"
        ),
        "{message}"
    );
    echo_works().await;

    let (status, code, message) = error_code(
        client
            .get(served.url("/trap"))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "ERR_COMPONENT_TRAP"),
        "{message}"
    );
    echo_works().await;

    // A body over the limit, declared and chunked.
    let over = pattern((8 << 20) + 1);
    let (status, code, _) = error_code(
        client
            .post(served.url("/count"))
            .body(over.clone())
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_TOO_LARGE")
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let (status, code, _) = error_code(
        client
            .post(served.url("/count"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "ERR_BODY_TOO_LARGE")
    );
    echo_works().await;

    // A response over the limit is cut off: the client never gets it whole.
    let cut = client
        .get(served.url(&format!("/stream?bytes={}", (8 << 20) + (1 << 20))))
        .send()
        .await
        .expect("the response starts");
    assert_eq!(cut.status(), StatusCode::OK);
    assert!(
        cut.bytes().await.is_err(),
        "an over-limit body must not arrive whole"
    );
    echo_works().await;
}

#[tokio::test]
async fn requests_beyond_the_slots_get_503_with_retry_after() {
    let served = serve_on(
        ComponentHostConfig {
            max_concurrent_requests: 1,
            queue_timeout: Duration::from_millis(50),
            ..ComponentHostConfig::default()
        },
        "probes",
        settings(),
    )
    .await;
    let client = reqwest::Client::new();
    let sleeper = tokio::spawn(client.get(served.url("/sleep?ms=1500")).send());
    wait_until(
        "the first request holds the only slot",
        Duration::from_secs(10),
        || async { served.component.host().free_slots() == 0 },
    )
    .await;
    let busy = client
        .get(served.url("/echo"))
        .send()
        .await
        .expect("answered");
    assert_eq!(busy.headers()["retry-after"], "1");
    let (status, code, _) = error_code(busy).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "ERR_BUSY")
    );
    let slept = sleeper.await.expect("joined").expect("answered");
    assert_eq!(slept.status(), StatusCode::OK);
    wait_until(
        "the slot is free again",
        Duration::from_secs(10),
        || async { served.component.host().free_slots() == 1 },
    )
    .await;
    let after = client
        .get(served.url("/echo"))
        .send()
        .await
        .expect("answered");
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = component_path("hello");
    let cached = dir.path().to_path_buf();
    let outcomes = tokio::task::spawn_blocking(move || {
        let host = ComponentHost::new(ComponentHostConfig {
            cache_dir: Some(cached),
            ..ComponentHostConfig::default()
        })
        .expect("host");
        let load = || {
            host.load_file(&path, ComponentSettings::default())
                .expect("loads")
        };
        let first = load().cache_outcome();
        let second = load().cache_outcome();
        (first, second)
    })
    .await
    .expect("joined");
    assert_eq!(outcomes, (CacheOutcome::Miss, CacheOutcome::Hit));
}

#[tokio::test]
async fn a_file_that_is_not_a_wasi_http_component_is_refused_with_the_reason() {
    let module = test_support::wasm_path("noop");
    let host = ComponentHost::new(ComponentHostConfig::default()).expect("host");
    let err = host
        .load_file(&module, ComponentSettings::default())
        .err()
        .expect("a core module is refused");
    assert!(
        err.to_string().contains("is not a valid wasm component"),
        "{err}"
    );
    let err = host
        .load_bytes("garbage", b"\0asm garbage", ComponentSettings::default())
        .err()
        .expect("garbage is refused");
    assert!(
        err.to_string()
            .contains("garbage is not a valid wasm component"),
        "{err}"
    );
}

/// A component written and built outside this repository: the `wstd`
/// crate's own `http_server` example, compiled from the crates.io package
/// by scripts/lib.sh's build_components.
#[tokio::test]
async fn a_component_built_elsewhere_runs_unchanged() {
    let served = serve("wstd-http-server", settings()).await;
    let client = reqwest::Client::new();
    let home = client.get(served.url("/")).send().await.expect("answered");
    assert_eq!(home.status(), StatusCode::OK);
    assert_eq!(
        home.text().await.expect("body"),
        "Hello, wasi:http/proxy world!\n"
    );
    let echoed = client
        .post(served.url("/echo"))
        .body(pattern(1 << 20))
        .send()
        .await
        .expect("answered");
    assert_eq!(echoed.status(), StatusCode::OK);
    assert!(echoed.bytes().await.expect("body") == pattern(1 << 20));
    let status = client
        .get(served.url("/response-status"))
        .header("x-response-status", "418")
        .send()
        .await
        .expect("answered");
    assert_eq!(status.status(), StatusCode::IM_A_TEAPOT);
}
