//! web-port with the real system around it, in one process: both image
//! apps (real wasm functions, the real model), one sidecar per app sharing a
//! name registry (like one machine), and web-port talking only to its own
//! sidecar.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use function_host::nn::{Backend, NnConfig};
use function_host::{Function, FunctionHost, HostConfig};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use web_port::WebPortConfig;
use web_port::dapr::InvokeProtocol;

use test_support::sidecar::{self as sidecar_support, RunningSidecar};
use test_support::{assert_dapr_error as assert_error, photo, repo_path};

/// The image apps' host configuration in these tests.
fn host_config() -> HostConfig {
    HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    }
}

/// A running image app: its address, the function it serves, and its stop.
struct ImageApp {
    address: SocketAddr,
    function: Function,
    stop: oneshot::Sender<()>,
}

/// Starts an image app on `port` (0 for any).
async fn start_image_app(function: &str, port: u16) -> ImageApp {
    start_image_app_with(function, port, host_config()).await
}

/// [`start_image_app`] with its own host configuration.
async fn start_image_app_with(function: &str, port: u16, host: HostConfig) -> ImageApp {
    let host = FunctionHost::new(host).unwrap();
    let path = repo_path(&format!("build/functions/{function}.wasm"));
    let mut loaded = host
        .load_file(function, &path)
        .expect("build the functions first");
    if loaded.uses_wasi_nn() {
        let files = model_files::ModelFiles::in_dir(&local_dirs::models_dir().unwrap());
        let nn = NnConfig {
            models: function_host::nn::prepared_models(&files.dir),
            backend: Backend::Auto,
            onnxruntime_lib: files.onnxruntime,
            threads: 1,
            sessions: 1,
        };
        loaded =
            tokio::task::spawn_blocking(move || function_host::nn::load_models_for(loaded, &nn))
                .await
                .unwrap()
                .expect("models (run `dapr-wasm models fetch`)");
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let app = function_app::single_function_app(
        loaded.clone(),
        service_kit::body::BodyLimits::max_bytes(16 << 20),
    );
    tokio::spawn(function_app::serve(
        listener,
        app,
        Default::default(),
        async {
            let _ = rx.await;
        },
    ));
    ImageApp {
        address,
        function: loaded,
        stop: tx,
    }
}

struct System {
    web: String,
    client: reqwest::Client,
    classify_app: SocketAddr,
    classify_stop: Option<oneshot::Sender<()>>,
    grayscale_function: Function,
    _grayscale_stop: oneshot::Sender<()>,
    _web_stop: oneshot::Sender<()>,
    _sidecars: Vec<RunningSidecar>,
    /// The components folder, when the system has pub/sub.
    resources: Option<tempfile::TempDir>,
    data: tempfile::TempDir,
}

impl System {
    /// The system as deployed: grayscale over the sidecar's HTTP API,
    /// classify over its gRPC API (as the seed did).
    async fn start() -> System {
        System::start_with("grayscale", host_config()).await
    }

    /// The system with `function` as the grayscale app, on `host`.
    async fn start_with(function: &str, host: HostConfig) -> System {
        System::start_with_protocols(function, host, (InvokeProtocol::Http, InvokeProtocol::Grpc))
            .await
    }

    /// The same, with each app reached through the given protocol
    /// (grayscale, classify).
    async fn start_with_protocols(
        function: &str,
        host: HostConfig,
        protocols: (InvokeProtocol, InvokeProtocol),
    ) -> System {
        System::start_full(function, host, protocols, None).await
    }

    /// The same, and when `pubsub` (a component's YAML) is given, every
    /// sidecar loads it beside the usual state store and secret store.
    async fn start_full(
        function: &str,
        host: HostConfig,
        protocols: (InvokeProtocol, InvokeProtocol),
        pubsub: Option<String>,
    ) -> System {
        let data = tempfile::tempdir().unwrap();
        let resources = pubsub.map(|yaml| {
            let dir = tempfile::tempdir().unwrap();
            sidecar_support::write_resources(
                dir.path(),
                &data.path().join("state.db"),
                &data.path().join("secrets.json"),
            );
            std::fs::write(dir.path().join("pubsub.yaml"), yaml).unwrap();
            dir
        });
        let grayscale = start_image_app_with(function, 0, host).await;
        let classify = start_image_app("classify", 0).await;
        let sidecar =
            |id: &str, port: Option<u16>, dir: &Path| sidecar_support::config(id, port, dir);
        let mut sidecars = Vec::new();
        for (id, port) in [
            ("image-api-grayscale", Some(grayscale.address.port())),
            ("image-api-classify", Some(classify.address.port())),
            ("web-port", None),
        ] {
            let mut config = sidecar(id, port, data.path());
            config.max_body_size = 16 << 20;
            config.resources_paths = resources.iter().map(|r| r.path().to_path_buf()).collect();
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
            pubsub: "pubsub".into(),
            events_topic: "image-events".into(),
            events_app_id: "events".into(),
            body_limits: service_kit::body::BodyLimits::max_bytes(16 << 20),
            max_image_pixels: 50_000_000,
            invoke_timeout: Duration::from_secs(30),
            max_connections: Default::default(),
            metrics: Default::default(),
            system_metrics: Vec::new(),
            dapr_grpc_port: sidecars[2].grpc_address.port(),
            grayscale_protocol: protocols.0,
            classify_protocol: protocols.1,
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(web_port::serve(listener, config, async {
            let _ = rx.await;
        }));
        System {
            web,
            client: reqwest::Client::new(),
            classify_app: classify.address,
            classify_stop: Some(classify.stop),
            grayscale_function: grayscale.function,
            _grayscale_stop: grayscale.stop,
            _web_stop: tx,
            _sidecars: sidecars,
            resources,
            data,
        }
    }

    async fn hello(&self, api: &str, body: Vec<u8>) -> reqwest::Response {
        self.hello_at("/api/hello", api, body).await
    }

    /// An upload to `path` (`/api/hello` with a query string).
    async fn hello_at(&self, path: &str, api: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.web))
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

/// Either app through either of the sidecar's APIs; an app's error over
/// gRPC keeps its status and, from the bytes daprd passes on, its
/// `errorCode`.
#[tokio::test(flavor = "multi_thread")]
async fn each_app_works_through_either_sidecar_api() {
    for protocols in [
        (InvokeProtocol::Grpc, InvokeProtocol::Http),
        (InvokeProtocol::Http, InvokeProtocol::Grpc),
    ] {
        let system = System::start_with_protocols("grayscale", host_config(), protocols).await;
        let response = system.hello("grayscale", photo("cat.jpg")).await;
        assert_eq!(response.status(), StatusCode::OK, "{protocols:?}");
        assert_eq!(response.headers()["content-type"], "image/png");
        let gray = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
        assert_eq!((gray.width(), gray.height()), (451, 300));
        let response = system.hello("classify", photo("coffee-1024x768.jpg")).await;
        assert_eq!(response.status(), StatusCode::OK, "{protocols:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["label"], "espresso", "{answer}");
        assert_eq!(answer["model"], "efficientnet-lite0", "{answer}");
        // The model query parameter goes through to the classify app.
        let response = system
            .hello_at(
                "/api/hello?model=efficientnet-lite2",
                "classify",
                photo("coffee-1024x768.jpg"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{protocols:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["label"], "espresso", "{answer}");
        assert_eq!(answer["model"], "efficientnet-lite2", "{answer}");
        assert_error(
            system
                .hello_at("/api/hello?model=no%20such", "classify", photo("cat.jpg"))
                .await,
            StatusCode::BAD_REQUEST,
            "ERR_UNKNOWN_MODEL",
        )
        .await;
        let models = test_support::get_json(format!("{}/api/models", system.web)).await;
        assert_eq!(models["models"].as_array().unwrap().len(), 3, "{models}");
        assert_eq!(models["models"][2]["name"], "efficientnet-lite2");
        for api in ["grayscale", "classify"] {
            assert_error(
                system.hello(api, b"text".to_vec()).await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ERR_UNSUPPORTED_IMAGE",
            )
            .await;
        }
    }
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
    let classify_app = system.classify_app;
    test_support::wait_until(
        "the classify app stops listening",
        Duration::from_secs(5),
        || async move { tokio::net::TcpStream::connect(classify_app).await.is_err() },
    )
    .await;
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
    let restarted = start_image_app("classify", system.classify_app.port()).await;
    system.classify_stop = Some(restarted.stop);
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
    test_support::wait_until(
        "the first upload holds the slot",
        Duration::from_secs(5),
        || {
            let free = system.grayscale_function.free_slots();
            async move { free == 0 }
        },
    )
    .await;
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
    // The icon and the example photos are embedded too; the page reads
    // the limits it checks photos against.
    for (path, media_type) in [
        ("/static/favicon.svg", "image/svg+xml"),
        ("/static/examples/cat.jpg", "image/jpeg"),
        ("/static/examples/coffee.jpg", "image/jpeg"),
        ("/static/examples/rocket.webp", "image/webp"),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], media_type, "{path}");
    }
    let cat = get("/static/examples/cat.jpg").await.unwrap();
    assert_eq!(cat.bytes().await.unwrap(), test_support::photo("cat.jpg"));
    let limits: serde_json::Value = get("/api/limits").await.unwrap().json().await.unwrap();
    assert_eq!(limits["maxUploadBytes"], 16 << 20, "{limits}");
    assert_eq!(limits["maxImagePixels"], 50_000_000, "{limits}");
    for path in [
        "/static/examples/%2e%2e%2fapp.js",
        "/static/examples/nope.jpg",
        "/static/../Cargo.toml",
        "/static/%2e%2e%2fCargo.toml",
        "/static/nope.js",
        "/etc/passwd",
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Starts the events service on `listener`, behind the sidecar on
/// `dapr_http_port`, keeping events in `database`.
async fn start_events(
    listener: TcpListener,
    dapr_http_port: u16,
    database: &Path,
) -> oneshot::Sender<()> {
    let config = events::EventsConfig {
        listen: listener.local_addr().unwrap(),
        dapr_http_port,
        pubsub: "pubsub".into(),
        topic: "image-events".into(),
        database: events::config::DatabaseSource::Url(format!("sqlite:{}", database.display())),
        max_connections: Default::default(),
        metrics: Default::default(),
    };
    let store = events::store::open(&config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(events::serve(listener, config, store, async {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn the_history_comes_from_the_events_service_and_nothing_is_lost_while_it_is_down() {
    let redis = test_support::RedisServer::start();
    let pubsub = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n\
         spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n\
         \x20 - name: redisHost\n    value: \"127.0.0.1:{}\"\n",
        redis.port()
    );
    let system = System::start_full(
        "grayscale",
        host_config(),
        (InvokeProtocol::Http, InvokeProtocol::Grpc),
        Some(pubsub),
    )
    .await;
    // The events app behind its sidecar, which probes its health.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let events_app = listener.local_addr().unwrap();
    let mut config = sidecar_support::config("events", Some(events_app.port()), system.data.path());
    config.resources_paths = vec![system.resources.as_ref().unwrap().path().to_path_buf()];
    config.app_health = Some(sidecar::args::AppHealthConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        threshold: 1,
    });
    let events_sidecar = RunningSidecar::start(config).await;
    let database = system.data.path().join("events.db");
    let stop_events = start_events(listener, events_sidecar.address.port(), &database).await;

    for _ in 0..2 {
        let response = system.hello("grayscale", photo("cat.jpg")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let history = system.wait_for_history(2).await;
    assert_eq!(history["events"][0]["api"], "grayscale");
    assert_eq!(history["events"][0]["client"], "127.0.0.1");
    assert_eq!(history["events"][0]["status"], 200);

    // The events app stops: uploads still work, the history says why it is
    // missing, and the event published meanwhile waits in the broker.
    let _ = stop_events.send(());
    sidecar_support::wait_for_json(
        "the events sidecar stops taking events",
        &events_sidecar.url("/v1.0/metadata"),
        |m| m["subscriptions"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    let response = system.hello("grayscale", photo("cat.jpg")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let missing = system
        .client
        .get(format!("{}/api/events", system.web))
        .send()
        .await
        .unwrap();
    assert_error(missing, 503, "ERR_EVENTS_UNAVAILABLE").await;

    let listener = TcpListener::bind(events_app).await.unwrap();
    let _events = start_events(listener, events_sidecar.address.port(), &database).await;
    let history = system.wait_for_history(3).await;
    assert_eq!(history["total"], 3);
    let summary: Value = system
        .client
        .get(format!("{}/api/events/summary", system.web))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["counts"][0]["count"], 3, "{summary}");
}

impl System {
    /// Waits until web-port's history (from the events service) holds
    /// `total` events; returns it.
    async fn wait_for_history(&self, total: u64) -> Value {
        let url = format!("{}/api/events", self.web);
        sidecar_support::wait_for_json("the events service lists every upload", &url, |v| {
            v["total"] == total
        })
        .await
    }
}
