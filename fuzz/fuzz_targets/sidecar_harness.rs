//! The sidecar's HTTP API on arbitrary requests: the method, path and
//! query, headers and body all come from the input, and go through the real
//! router (token layer, body limit, state, secrets, metadata, invoke and
//! actors handlers) over an SQLite state store.
//!
//! Shared, by `#[path]`, by the fuzz target (`sidecar_request.rs`) and the
//! sidecar's tests, which replay every committed seed through it
//! (`crates/sidecar/tests/sidecar/fuzz_seeds.rs`). It needs only `sidecar`,
//! `axum`, `tower`, `tokio`, `serde_json` and `tempfile`.
//!
//! Input layout: byte 0 picks the method; then the target up to `\n`; then
//! `name: value` header lines up to an empty line; the rest is the body.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use tower::ServiceExt;

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    _data: tempfile::TempDir,
}

/// Writes a Dapr component file `NAME.yaml` into `dir`.
fn write_component(dir: &std::path::Path, name: &str, kind: &str, metadata: &[(&str, &str)]) {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  version: v1\n  metadata:\n"
    );
    for (key, value) in metadata {
        yaml += &format!("  - name: {key}\n    value: \"{value}\"\n");
    }
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let data = tempfile::tempdir().unwrap();
        // With a secret store beside the default state store.
        std::fs::write(
            data.path().join("secrets.json"),
            r#"{"a": "1", "b": {"c": "2"}}"#,
        )
        .unwrap();
        let dir = data.path();
        let secrets_file = dir.join("secrets.json").display().to_string();
        let database = dir.join("state.db").display().to_string();
        write_component(
            dir,
            "localsecrets",
            "secretstores.local.file",
            &[("secretsFile", &secrets_file), ("nestedSeparator", ":")],
        );
        write_component(
            dir,
            "statestore",
            "state.sqlite",
            &[("connectionString", &database)],
        );
        let config = sidecar::SidecarConfig {
            app_id: "fuzz".into(),
            app_port: None,
            dapr_http_port: 0,
            dapr_grpc_port: 0,
            metrics_port: None,
            app_protocol: Default::default(),
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            resources_paths: vec![data.path().to_path_buf()],
            max_body_size: 64 << 10,
            data_dir: data.path().to_path_buf(),
            invoke_timeout: std::time::Duration::from_secs(1),
            api_token: None,
            app_api_token: None,
            max_connections: Default::default(),
            app_health: None,
            app_max_concurrency: None,
            pubsub_retry: Default::default(),
            embedded_pubsub_fallback: false,
            tracing: Default::default(),
        };
        let app = runtime.block_on(async {
            sidecar::app(Arc::new(sidecar::Sidecar::new(config).await.unwrap()))
        });
        Harness {
            runtime,
            app,
            _data: data,
        }
    })
}

/// Whether `text` (a request target or a header value) could name a URL:
/// `http:` or `https:` in any case, percent-encoded or not. The sidecar
/// invokes an app id that is a URL (`/v1.0/invoke/http://.../method/x`,
/// or `dapr-app-id: http://...`) by calling it, as daprd does; a fuzz run
/// must not reach the network, so such inputs are left out.
pub fn names_a_url(text: &[u8]) -> bool {
    let mut decoded = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (text[i], text.get(i + 1).copied(), text.get(i + 2).copied()) {
            (b'%', Some(high), Some(low)) if hex(high).is_some() && hex(low).is_some() => {
                decoded.push((hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded.make_ascii_lowercase();
    decoded.windows(5).any(|w| w == b"http:") || decoded.windows(6).any(|w| w == b"https:")
}

/// Splits the input into a request; `None` if it is not a valid one (those
/// never get past hyper to the router), or if it could name a URL as the
/// app to invoke ([`names_a_url`]).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (&method, rest) = data.split_first()?;
    let method = METHODS[usize::from(method) % METHODS.len()].clone();
    let newline = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    if names_a_url(&rest[..newline]) {
        return None;
    }
    let target = std::str::from_utf8(&rest[..newline]).ok()?;
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("/{}", target.trim_start_matches('/')));
    let mut rest = rest.get(newline + 1..).unwrap_or_default();
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        if names_a_url(&line[colon + 1..]) {
            return None;
        }
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::from(rest.to_vec())).ok()
}

/// Sends the request `data` describes (if it is a valid one) through the
/// sidecar's router. Panics (the fuzzer's finding) unless the answer is a
/// 2xx, or an error carrying Dapr's JSON `{errorCode, message}`.
pub fn check(data: &[u8]) {
    let Some(request) = request(data) else {
        return;
    };
    let harness = harness();
    harness.runtime.block_on(async {
        let response = harness.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        if status.is_client_error() || status.is_server_error() {
            let error: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status} without a JSON body ({e}): {body:?}"));
            assert!(
                error["errorCode"].is_string() && error["message"].is_string(),
                "{status} {error}"
            );
        }
    });
}
