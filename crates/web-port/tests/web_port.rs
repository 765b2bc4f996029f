//! web-port with the real system around it, in one process: both image
//! apps (real wasm functions, the real model), one sidecar per app sharing a
//! name registry (like one machine), and web-port talking only to its own
//! sidecar.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use function_host::nn::{Backend, ModelSpec, NnConfig};
use function_host::{FunctionHost, HostConfig};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use web_port::WebPortConfig;

#[path = "../../sidecar/tests/support/mod.rs"]
mod sidecar_support;
use sidecar_support::RunningSidecar;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(repo_path("testdata").join(name)).unwrap()
}

/// The image apps' host configuration in these tests.
fn host_config() -> HostConfig {
    HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    }
}

/// Starts an image app on `port` (0 for any); returns its address and stop.
async fn start_image_app(function: &str, port: u16) -> (SocketAddr, oneshot::Sender<()>) {
    start_image_app_with(function, port, host_config()).await
}

/// [`start_image_app`] with its own host configuration.
async fn start_image_app_with(
    function: &str,
    port: u16,
    host: HostConfig,
) -> (SocketAddr, oneshot::Sender<()>) {
    let host = FunctionHost::new(host).unwrap();
    let path = repo_path(&format!("build/functions/{function}.wasm"));
    let mut loaded = host
        .load_file(function, &path)
        .expect("build the functions first");
    if loaded.uses_wasi_nn() {
        let files = models::ModelFiles::in_dir(&models::default_models_dir().unwrap());
        let nn = NnConfig {
            models: vec![ModelSpec {
                name: models::MODEL_NAME.into(),
                path: files.onnx,
            }],
            backend: Backend::Auto,
            onnxruntime_lib: files.onnxruntime,
            threads: 1,
        };
        loaded = tokio::task::spawn_blocking(move || image_api::with_models(loaded, &nn))
            .await
            .unwrap()
            .expect("models (run `dapr-wasm models fetch`)");
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let app = image_api::routes::app(loaded, service_kit::body::BodyLimits::max_bytes(16 << 20));
    tokio::spawn(image_api::serve(listener, app, async {
        let _ = rx.await;
    }));
    (address, tx)
}

struct System {
    web: String,
    client: reqwest::Client,
    classify_app: SocketAddr,
    classify_stop: Option<oneshot::Sender<()>>,
    _grayscale_stop: oneshot::Sender<()>,
    _web_stop: oneshot::Sender<()>,
    _sidecars: Vec<RunningSidecar>,
    _data: tempfile::TempDir,
}

impl System {
    async fn start() -> System {
        System::start_with("grayscale", host_config()).await
    }

    /// The system with `function` as the grayscale app, on `host`.
    async fn start_with(function: &str, host: HostConfig) -> System {
        let data = tempfile::tempdir().unwrap();
        let (gray_addr, gray_stop) = start_image_app_with(function, 0, host).await;
        let (classify_addr, classify_stop) = start_image_app("classify", 0).await;
        let sidecar =
            |id: &str, port: Option<u16>, dir: &Path| sidecar_support::config(id, port, dir);
        let mut sidecars = Vec::new();
        for (id, port) in [
            ("image-api-grayscale", Some(gray_addr.port())),
            ("image-api-classify", Some(classify_addr.port())),
            ("web-port", None),
        ] {
            let mut config = sidecar(id, port, data.path());
            config.max_body_size = 16 << 20;
            sidecars.push(RunningSidecar::start(config).await);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web = format!("http://{}", listener.local_addr().unwrap());
        let config = WebPortConfig {
            listen: listener.local_addr().unwrap(),
            dapr_http_port: sidecars[2].address.port(),
            grayscale_app_id: "image-api-grayscale".into(),
            classify_app_id: "image-api-classify".into(),
            state_store: "statestore".into(),
            body_limits: service_kit::body::BodyLimits::max_bytes(16 << 20),
            invoke_timeout: Duration::from_secs(30),
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(web_port::serve(listener, config, async {
            let _ = rx.await;
        }));
        System {
            web,
            client: reqwest::Client::new(),
            classify_app: classify_addr,
            classify_stop: Some(classify_stop),
            _grayscale_stop: gray_stop,
            _web_stop: tx,
            _sidecars: sidecars,
            _data: data,
        }
    }

    async fn hello(&self, api: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}/api/hello", self.web))
            .header("api", api)
            .header("content-type", "image/jpeg")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/api/invokecount", self.web))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

async fn assert_error(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], code, "{body}");
    body["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_reach_both_apps_through_the_sidecars_and_are_counted() {
    let system = System::start().await;
    assert_eq!(system.stats().await["count"], 0);

    let response = system.hello("grayscale", photo("cat.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let gray = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((gray.width(), gray.height()), (451, 300));
    assert!(gray.as_luma8().is_some(), "a gray PNG");

    let response = system.hello("classify", photo("coffee-1024x768.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["label"], "espresso", "{answer}");

    // The seed's header values still work.
    assert_eq!(
        system.hello("rs", photo("cat.jpg")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        system.hello("go", photo("cat.jpg")).await.status(),
        StatusCode::OK
    );
    // Errors from the image app pass through as its JSON.
    assert_error(
        system.hello("grayscale", b"text".to_vec()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ERR_UNSUPPORTED_IMAGE",
    )
    .await;
    assert_error(
        system.hello("sepia", photo("cat.jpg")).await,
        StatusCode::BAD_REQUEST,
        "ERR_UNKNOWN_API",
    )
    .await;

    let stats = system.stats().await;
    assert_eq!(stats["count"], 4, "{stats}");
    assert_eq!(stats["failed"], 1, "{stats}");
    let events = stats["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["status"], 415);
    assert_eq!(events[0]["api"], "grayscale");
    assert_eq!(events[3]["api"], "classify");
    assert_eq!(events[3]["status"], 200);
    assert!(events[3]["outputBytes"].as_u64().unwrap() > 0);
    assert_eq!(
        events[3]["inputBytes"].as_u64().unwrap() as usize,
        photo("coffee-1024x768.jpg").len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_uploads_add_exactly_fifty() {
    let system = System::start().await;
    let before = system.stats().await["count"].as_u64().unwrap();
    let small = photo("rocket.bmp");
    let uploads = (0..50).map(|_| system.hello("grayscale", small.clone()));
    let responses = futures::future::join_all(uploads).await;
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
    }
    let stats = system.stats().await;
    assert_eq!(stats["count"].as_u64().unwrap(), before + 50, "{stats}");
    assert_eq!(stats["events"].as_array().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_image_app_gives_a_clear_503_and_comes_back_after_a_restart() {
    let mut system = System::start().await;
    let _ = system.classify_stop.take().unwrap().send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let message = assert_error(
        system.hello("classify", photo("cat.jpg")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_IMAGE_APP_UNAVAILABLE",
    )
    .await;
    assert!(
        message.contains("classify service is unavailable"),
        "{message}"
    );
    // The other API is unaffected.
    assert_eq!(
        system.hello("grayscale", photo("cat.jpg")).await.status(),
        StatusCode::OK
    );

    // Restarted on the same port, it is reachable again with no other step.
    let (_, stop) = start_image_app("classify", system.classify_app.port()).await;
    system.classify_stop = Some(stop);
    let response = system.hello("classify", photo("coffee.png")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_image_app_answers_503_with_retry_after_through_web_port() {
    // One call slot, almost no queue, and a guest that loops to its deadline.
    let busy = HostConfig {
        max_concurrent_calls: 1,
        queue_timeout: Duration::from_millis(10),
        limits: function_host::CallLimits {
            deadline: Duration::from_secs(3),
            ..function_host::CallLimits::default()
        },
        ..host_config()
    };
    let system = std::sync::Arc::new(System::start_with("spin", busy).await);
    let holder = {
        let system = system.clone();
        tokio::spawn(async move { system.hello("grayscale", photo("cat.jpg")).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = system.hello("grayscale", photo("cat.jpg")).await;
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_error(busy, StatusCode::SERVICE_UNAVAILABLE, "ERR_BUSY").await;
    // The call holding the slot ran out of time, and said so.
    assert_error(
        holder.await.unwrap(),
        StatusCode::GATEWAY_TIMEOUT,
        "ERR_FUNCTION_TIMEOUT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_is_served_from_the_binary_and_nothing_else_is() {
    let system = System::start().await;
    let get = |path: &str| system.client.get(format!("{}{path}", system.web)).send();
    let index = get("/").await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = index.text().await.unwrap();
    assert!(
        html.contains("/static/app.js") && !html.contains("http://") && !html.contains("https://")
    );
    assert_eq!(
        get("/static/app.js").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/static/style.css").await.unwrap().status(),
        StatusCode::OK
    );
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e%2fCargo.toml",
        "/static/nope.js",
        "/etc/passwd",
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
