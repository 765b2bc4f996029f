//! Sidecars for tests: started on ephemeral ports with the production
//! `run_on`, beside an app that reports what it received.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;
use serde_json::{Value, json};
use sidecar::{Sidecar, SidecarConfig, SidecarListeners};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::wait::wait_until;

/// An app whose every route answers with JSON describing the request, and
/// whose `/status/{code}` routes answer with that status and a custom header.
pub async fn start_echo_app() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (address, serve_echo(listener))
}

/// Serves the echo app on `listener` until the sender is dropped or sent
/// to.
pub(crate) fn serve_echo<L>(listener: L) -> oneshot::Sender<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (tx, rx) = oneshot::channel::<()>();
    let app = Router::new().fallback(any(echo));
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

/// Asserts that `response` is the echo app's answer to `/status/{status}`
/// as the app gave it: that status, its header and its body.
pub async fn assert_echo_status_passed_back(response: reqwest::Response, status: u16) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["x-from-app"], "yes");
    assert_eq!(response.text().await.unwrap(), "custom");
}

/// The echo app's one handler ([`start_echo_app`]).
async fn echo(request: Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        return (
            status,
            [("x-from-app", "yes")],
            Bytes::from_static(b"custom"),
        )
            .into_response();
    }
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
        .collect();
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

/// A sidecar configuration for tests: data in `data_dir` (shared by the
/// sidecars of one test, like one machine), no tokens.
pub fn config(app_id: &str, app_port: Option<u16>, data_dir: &Path) -> SidecarConfig {
    SidecarConfig {
        app_id: app_id.into(),
        app_port,
        dapr_http_port: 0,
        dapr_grpc_port: 0,
        metrics_port: Some(0),
        app_protocol: Default::default(),
        bind: "127.0.0.1".parse().unwrap(),
        resources_paths: Vec::new(),
        max_body_size: 1 << 20,
        data_dir: data_dir.to_path_buf(),
        invoke_timeout: Duration::from_secs(5),
        api_token: None,
        app_api_token: None,
        max_connections: Default::default(),
        app_health: None,
        app_max_concurrency: None,
        pubsub_retry: Default::default(),
        embedded_pubsub_fallback: false,
        tracing: Default::default(),
    }
}

/// A running sidecar; dropping `shutdown` (or sending on it) stops it.
pub struct RunningSidecar {
    pub base: String,
    pub address: SocketAddr,
    /// Its gRPC API.
    pub grpc_address: SocketAddr,
    /// Its `GET /metrics`.
    pub metrics_address: SocketAddr,
    pub shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningSidecar {
    pub async fn start(config: SidecarConfig) -> RunningSidecar {
        let sidecar = Arc::new(Sidecar::new(config).await.expect("sidecar starts"));
        let listeners = SidecarListeners {
            http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            metrics: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let address = listeners.http.local_addr().unwrap();
        let grpc_address = listeners.grpc.local_addr().unwrap();
        let metrics_address = listeners
            .metrics
            .as_ref()
            .and_then(|m| m.local_addr().ok())
            .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sidecar::run_on(listeners, sidecar, async {
            let _ = rx.await;
        }));
        let running = RunningSidecar {
            base: format!("http://{address}"),
            address,
            grpc_address,
            metrics_address,
            shutdown: Some(tx),
            task,
        };
        // Registration happens before serving: once health answers, the
        // sidecar is registered.
        let client = reqwest::Client::new();
        let health = running.url("/v1.0/healthz");
        wait_until(
            "the sidecar answers its health check",
            Duration::from_secs(10),
            || {
                let request = client.get(&health).send();
                async move { request.await.is_ok_and(|r| r.status() == 204) }
            },
        )
        .await;
        running
    }

    /// Stops the sidecar cleanly and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until its metadata lists `count` subscriptions (they start
    /// after the sidecar serves).
    pub async fn wait_subscribed(&self, count: usize) {
        wait_for_json("the sidecar subscribes", &self.url("/v1.0/metadata"), |m| {
            m["subscriptions"].as_array().map(Vec::len) == Some(count)
        })
        .await;
    }
}

/// A status a test expects: a number (`404`) or a `StatusCode`.
pub trait ExpectedStatus {
    /// The status as a number.
    fn code(self) -> u16;
}

impl ExpectedStatus for u16 {
    fn code(self) -> u16 {
        self
    }
}

impl ExpectedStatus for reqwest::StatusCode {
    fn code(self) -> u16 {
        self.as_u16()
    }
}

/// A response's `Content-Type` (empty when it has none).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Asserts a Dapr error response: `status`, a JSON body
/// `{errorCode, message}` with `code` and a message; returns the message.
pub async fn assert_dapr_error(
    response: reqwest::Response,
    status: impl ExpectedStatus,
    code: &str,
) -> String {
    assert_eq!(response.status().as_u16(), status.code());
    let content_type = content_type(&response);
    assert!(
        content_type.starts_with("application/json"),
        "errors are JSON, not {content_type:?}"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["errorCode"], code, "{body}");
    let message = body["message"]
        .as_str()
        .expect("a message in the error body")
        .to_string();
    assert!(!message.is_empty(), "{body}");
    message
}

/// GETs `url` until it answers a 200 with a JSON body that `done` accepts
/// (within 20 s, else panics naming `what`); returns that body.
pub async fn wait_for_json(what: &str, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let client = reqwest::Client::new();
    let last = std::sync::Mutex::new(Value::Null);
    wait_until(what, Duration::from_secs(20), || async {
        let Ok(response) = client.get(url).send().await else {
            return false;
        };
        if response.status() != 200 {
            return false;
        }
        let body: Value = response.json().await.unwrap_or_default();
        let accepted = done(&body);
        *last.lock().unwrap() = body;
        accepted
    })
    .await;
    last.into_inner().unwrap()
}

/// GETs `url`, asserts a 200, and returns the JSON body.
pub async fn get_json(url: String) -> Value {
    let response = reqwest::get(&url).await.expect("the request is sent");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("a JSON body")
}

/// A header of what [`start_echo_app`]'s app received.
pub fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

/// A data folder and a resources folder written by [`write_resources`]
/// (SQLite `statestore`, `localsecrets`), removed when dropped.
pub struct TestResources {
    /// The sidecars' data folder (also holds the state and secrets files).
    pub data: tempfile::TempDir,
    /// The components.
    pub resources: tempfile::TempDir,
}

impl TestResources {
    /// Writes both folders.
    pub fn new() -> TestResources {
        let data = tempfile::tempdir().expect("a temporary folder");
        let resources = tempfile::tempdir().expect("a temporary folder");
        write_resources(
            resources.path(),
            &data.path().join("state.db"),
            &data.path().join("secrets.json"),
        );
        TestResources { data, resources }
    }

    /// Adds an in-memory pub/sub component named `name`.
    pub fn add_in_memory_pubsub(&self, name: &str) {
        write_in_memory_pubsub(self.resources.path(), name);
    }

    /// Adds a component of `component_type` (`lock.redis`,
    /// `configuration.redis`, ...) named `name` on the machine's Redis
    /// (127.0.0.1:6379).
    pub fn add_redis_component(&self, name: &str, component_type: &str) {
        std::fs::write(
            self.resources.path().join(format!("{name}.yaml")),
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
                 spec:\n  type: {component_type}\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n"
            ),
        )
        .unwrap();
    }

    /// A sidecar configuration that loads these components.
    pub fn config(&self, app_id: &str, app_port: Option<u16>) -> SidecarConfig {
        let mut config = config(app_id, app_port, self.data.path());
        config.resources_paths = vec![self.resources.path().to_path_buf()];
        config
    }
}

impl Default for TestResources {
    fn default() -> Self {
        TestResources::new()
    }
}

/// Writes a resources folder: a SQLite `statestore` at `state_db`, a
/// local-file `localsecrets` store (with its JSON file at `secrets_file`),
/// a component scoped to another app, and a non-component document.
pub fn write_resources(dir: &Path, state_db: &Path, secrets_file: &Path) {
    std::fs::write(
        dir.join("statestore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n\
             spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: tableName\n    value: state\n",
            state_db.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("secrets.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: localsecrets\n\
             spec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{}\"\n  - name: nestedSeparator\n    value: \":\"\n\
             ---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: someone-elses\n\
             spec:\n  type: state.sqlite\n  version: v1\nscopes:\n- another-app\n\
             ---\napiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: ignored\nspec: {{}}\n",
            secrets_file.display()
        ),
    )
    .unwrap();
    std::fs::write(
        secrets_file,
        r#"{"db": {"password": "p4ss", "ports": [5432, 5433]}, "token": "t0k"}"#,
    )
    .unwrap();
}

/// Writes an in-memory pub/sub component named `name` into `dir`.
pub fn write_in_memory_pubsub(dir: &Path, name: &str) {
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
             spec:\n  type: pubsub.in-memory\n  version: v1\n"
        ),
    )
    .expect("write the pub/sub component");
}
