//! Pub/sub, one behaviour suite over every backend: CloudEvent delivery in
//! order, retries, DROP, 404, dead letters, a poison event that does not
//! block the events behind it, declarative subscriptions, the publish
//! API's errors; on brokers that keep events, a subscriber that was down,
//! and a subscriber's sidecar killed mid-stream; and each broker going
//! away and coming back under a running sidecar.
//!
//! The subscriber is a real HTTP app behind a real sidecar; what each event
//! asks the app to answer is in its data (`{"n": 1, "do": "retry_once"}`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sidecar::SidecarConfig;
use sidecar::args::RetryPolicy;
use test_support::metrics::Scrape;
use test_support::sidecar::*;
use test_support::wait_until;

/// Retries in this suite: three, 10 ms apart and doubling.
const RETRIES: u32 = 3;

/// Where the suite's events live.
#[derive(Clone)]
enum Backend {
    Memory,
    Redis(u16),
    JetStream(u16),
    RabbitMq(String),
    Mqtt(u16),
    /// `pubsub.sqlite`, the embedded broker, named in the component.
    Embedded,
    /// `pubsub.redis` on a port where nothing listens, with
    /// `--embedded-pubsub-fallback`: the embedded broker serves it.
    Unreachable,
}

/// One component metadata entry, as YAML.
fn entry(name: &str, value: &str) -> String {
    format!("  - name: {name}\n    value: \"{value}\"\n")
}

impl Backend {
    /// The `bus` component for this backend; events not acknowledged come
    /// again within a second.
    fn component(&self) -> String {
        let (kind, metadata) = match self {
            Backend::Memory => ("pubsub.in-memory", String::new()),
            Backend::Redis(port) => (
                "pubsub.redis",
                entry("redisHost", &format!("127.0.0.1:{port}"))
                    + &entry("processingTimeout", "300ms")
                    + &entry("redeliverInterval", "100ms")
                    + &in_order(self),
            ),
            Backend::JetStream(port) => (
                "pubsub.jetstream",
                entry("natsURL", &format!("nats://127.0.0.1:{port}")) + &entry("ackWait", "500ms"),
            ),
            Backend::RabbitMq(url) => (
                "pubsub.rabbitmq",
                entry("connectionString", url) + &in_order(self),
            ),
            Backend::Mqtt(port) => (
                "pubsub.mqtt3",
                entry("url", &format!("tcp://127.0.0.1:{port}")),
            ),
            Backend::Embedded => ("pubsub.sqlite", entry("pollInterval", "20ms")),
            Backend::Unreachable => (
                "pubsub.redis",
                entry("redisHost", &format!("127.0.0.1:{}", closed_port())),
            ),
        };
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\n\
             spec:\n  type: {kind}\n  version: v1\n  metadata:\n{metadata}\
             \x20 - name: allowedTopics\n    value: \"orders,dead,audit,late\"\n"
        )
    }
}

/// The metadata that makes `backend` deliver one event at a time, in
/// order (Redis and RabbitMQ deliver in parallel by default, as daprd).
fn in_order(backend: &Backend) -> String {
    match backend {
        Backend::Redis(_) => entry("concurrency", "1"),
        Backend::RabbitMq(_) => entry("concurrencyMode", "single"),
        _ => String::new(),
    }
}

/// What the subscriber app received, in order: `(path, event)`.
#[derive(Default)]
pub(crate) struct Received {
    events: Mutex<Vec<(String, Value)>>,
    /// Attempts per event id.
    attempts: Mutex<HashMap<String, u32>>,
    /// Bulk deliveries, in order: `(path, envelope)`.
    batches: Mutex<Vec<(String, Value)>>,
    /// Its programmatic subscriptions.
    subscriptions: Value,
}

impl Received {
    fn events(&self) -> Vec<(String, Value)> {
        self.events.lock().unwrap().clone()
    }

    /// The data of each event received on `path`, in order.
    fn data_at(&self, path: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(p, _)| p == path)
            .map(|(_, e)| e["data"].clone())
            .collect()
    }

    /// How many times events with data `n` were posted on `path`.
    fn count(&self, path: &str, n: i64) -> usize {
        self.data_at(path).iter().filter(|d| d["n"] == n).count()
    }

    /// Records `event`, posted on `path`; what the app is to answer: its
    /// `do`, or `ok` (`retry_once` and `hold` only the first time).
    fn take(&self, path: String, event: Value) -> &'static str {
        let id = event["id"].as_str().unwrap_or_default().to_string();
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let count = attempts.entry(id).or_default();
            *count += 1;
            *count
        };
        let action = match event["data"]["do"].as_str().unwrap_or("ok") {
            "retry_once" if attempt == 1 => "retry",
            "hold" if attempt == 1 => "hold",
            "poison" => "poison",
            "drop" => "drop",
            "missing" => "missing",
            "no_status" => "no_status",
            _ => "ok",
        };
        self.events.lock().unwrap().push((path, event));
        action
    }
}

/// The subscriber app: `GET /dapr/subscribe`, and every other path takes
/// events, answering what each event's `do` asks.
pub(crate) async fn start_subscriber(subscriptions: Value) -> (SocketAddr, Arc<Received>) {
    async fn take_event(State(received): State<Arc<Received>>, request: Request) -> Response {
        let path = request.uri().path().to_string();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap();
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        if envelope["type"] == "com.dapr.event.sent.bulk" {
            assert_eq!(content_type, "application/json");
            return take_bulk(&received, path, envelope);
        }
        assert_eq!(content_type, "application/cloudevents+json");
        match received.take(path, envelope) {
            "retry" => Json(json!({"status": "RETRY"})).into_response(),
            "poison" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            "drop" => Json(json!({"status": "DROP"})).into_response(),
            "missing" => StatusCode::NOT_FOUND.into_response(),
            // Held the first time (its sidecar is killed meanwhile).
            "hold" => std::future::pending().await,
            _ => Json(json!({"status": "SUCCESS"})).into_response(),
        }
    }
    /// A bulk delivery: each entry answered as its event asks (`poison`
    /// retries, `no_status` gets none).
    fn take_bulk(received: &Received, path: String, envelope: Value) -> Response {
        let entries = envelope["entries"].as_array().cloned().unwrap_or_default();
        received
            .batches
            .lock()
            .unwrap()
            .push((path.clone(), envelope.clone()));
        let statuses: Vec<Value> = entries
            .into_iter()
            .filter_map(|entry| {
                let status = match received.take(path.clone(), entry["event"].clone()) {
                    "retry" | "poison" => "RETRY",
                    "drop" => "DROP",
                    "no_status" => return None,
                    _ => "SUCCESS",
                };
                Some(json!({"entryId": entry["entryId"], "status": status}))
            })
            .collect();
        Json(json!({"statuses": statuses})).into_response()
    }
    async fn subscribe(State(received): State<Arc<Received>>) -> Json<Value> {
        Json(received.subscriptions.clone())
    }
    let received = Arc::new(Received {
        subscriptions,
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/dapr/subscribe", get(subscribe))
        .fallback(take_event)
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// The programmatic subscriptions most tests use.
fn orders_subscriptions() -> Value {
    json!([
        {"pubsubname": "bus", "topic": "orders", "route": "/orders", "deadLetterTopic": "dead"},
        {"pubsubname": "bus", "topic": "dead", "route": "/dead"},
    ])
}

/// A port where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A sidecar for `app_id` with the suite's components (on `backend`) and
/// retries.
fn sidecar_config(
    backend: &Backend,
    app_id: &str,
    app: Option<SocketAddr>,
    data: &Path,
    resources: &Path,
) -> SidecarConfig {
    let mut config = config(app_id, app.map(|a| a.port()), data);
    config.resources_paths = vec![resources.to_path_buf()];
    config.embedded_pubsub_fallback = matches!(backend, Backend::Unreachable);
    // The poison event's retries must outlast the time its followers take
    // to be published and fetched, or it could be dead-lettered before they
    // were even fetched, and "not held up" would not be what is tested. The
    // fallback's embedded broker sees another sidecar's publishes only by
    // polling (every 50 ms, its default), and with 10 ms (70 ms of retries
    // in all) it lost that race on a loaded machine: 100 + 200 + 400 ms
    // there. Elsewhere 70 ms, inside JetStream's `ackWait` of 500 ms here,
    // past which the broker itself would deliver the poison event again.
    let backoff = match backend {
        Backend::Unreachable => Duration::from_millis(100),
        _ => Duration::from_millis(10),
    };
    config.pubsub_retry = RetryPolicy {
        max_retries: RETRIES,
        backoff,
    };
    config
}

/// Folders with the backend's component (and `extra` YAML files).
fn folders(backend: &Backend, extra: &[(&str, &str)]) -> (tempfile::TempDir, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    std::fs::write(resources.path().join("pubsub.yaml"), backend.component()).unwrap();
    for (name, text) in extra {
        std::fs::write(resources.path().join(name), text).unwrap();
    }
    (data, resources)
}

/// A subscriber app answering `subscriptions`, behind its sidecar
/// `app_id` on `backend` (with `extra` resource files), once two topics
/// are subscribed; and the folders its components are in.
struct Subscribed {
    sidecar: RunningSidecar,
    received: Arc<Received>,
    data: tempfile::TempDir,
    resources: tempfile::TempDir,
}

async fn subscribed(
    backend: &Backend,
    app_id: &str,
    subscriptions: Value,
    extra: &[(&str, &str)],
) -> Subscribed {
    let (data, resources) = folders(backend, extra);
    let (app, received) = start_subscriber(subscriptions).await;
    let sidecar = RunningSidecar::start(sidecar_config(
        backend,
        app_id,
        Some(app),
        data.path(),
        resources.path(),
    ))
    .await;
    sidecar.wait_subscribed(2).await;
    Subscribed {
        sidecar,
        received,
        data,
        resources,
    }
}

async fn publish(sidecar: &RunningSidecar, topic: &str, data: Value) {
    let response = reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0/publish/bus/{topic}")))
        .json(&data)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

async fn wait_for(received: &Received, what: &str, done: impl Fn(&Received) -> bool) {
    wait_until(what, Duration::from_secs(20), || {
        let finished = done(received);
        async move { finished }
    })
    .await;
}

/// Delivery, order, retries, DROP, 404, dead letter and a poison event
/// that does not hold up the events behind it, on `backend`.
async fn behaviour_suite(backend: Backend) {
    let Subscribed {
        sidecar: subscriber,
        received,
        data,
        resources,
    } = subscribed(&backend, "subscriber", orders_subscriptions(), &[]).await;
    // In-memory events stay in one sidecar; a broker carries them from
    // another app's sidecar.
    let other_publisher = match backend {
        Backend::Memory => None,
        _ => Some(
            RunningSidecar::start(sidecar_config(
                &backend,
                "publisher",
                None,
                data.path(),
                resources.path(),
            ))
            .await,
        ),
    };
    let publisher = other_publisher.as_ref().unwrap_or(&subscriber);

    // A CloudEvent with daprd's fields.
    publish(publisher, "orders", json!({"n": 0})).await;
    wait_for(&received, "the first event", |r| r.count("/orders", 0) == 1).await;
    let (_, event) = received.events()[0].clone();
    let source = if other_publisher.is_some() {
        "publisher"
    } else {
        "subscriber"
    };
    assert_eq!(event["source"], source);
    assert_eq!(event["topic"], "orders");
    assert_eq!(event["pubsubname"], "bus");
    assert_eq!(event["type"], "com.dapr.event.sent");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["datacontenttype"], "application/json");
    for field in ["id", "traceid", "traceparent", "time"] {
        assert!(
            event[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {event}"
        );
    }

    // In order, as published.
    for n in 1..=20 {
        publish(publisher, "orders", json!({"n": n})).await;
    }
    wait_for(&received, "twenty events", |r| {
        r.data_at("/orders").len() == 21
    })
    .await;
    let order: Vec<i64> = received
        .data_at("/orders")
        .iter()
        .map(|d| d["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..=20).collect::<Vec<_>>());

    // RETRY once, then accepted; DROP and 404 are never retried; a poison
    // event is tried 1 + RETRIES times and then dead-lettered, while the
    // events behind it go through.
    publish(publisher, "orders", json!({"n": 100, "do": "retry_once"})).await;
    publish(publisher, "orders", json!({"n": 101, "do": "drop"})).await;
    publish(publisher, "orders", json!({"n": 102, "do": "missing"})).await;
    publish(publisher, "orders", json!({"n": 103, "do": "poison"})).await;
    for n in 104..110 {
        publish(publisher, "orders", json!({"n": n})).await;
    }
    wait_for(
        &received,
        "the poison event in the dead-letter topic",
        |r| r.count("/dead", 103) == 1,
    )
    .await;
    assert_eq!(received.count("/orders", 100), 2, "retried once");
    assert_eq!(received.count("/orders", 101), 1, "DROP is final");
    assert_eq!(received.count("/orders", 102), 1, "404 is final");
    assert_eq!(received.count("/orders", 103), 1 + RETRIES as usize);
    let events = received.events();
    let dead_at = events
        .iter()
        .position(|(p, e)| p == "/dead" && e["data"]["n"] == 103)
        .unwrap();
    for n in 104..110 {
        let at = events
            .iter()
            .position(|(p, e)| p == "/orders" && e["data"]["n"] == n)
            .unwrap_or_else(|| panic!("event {n} was not delivered"));
        assert!(at < dead_at, "event {n} waited for the poison event");
    }

    // daprd's pub/sub metrics: 31 events published on `orders`; each
    // delivery attempt by `process_status` (28 taken, RETRY once and the
    // poison event's 1 + RETRIES tries to retry, DROP and 404 dropped).
    let egress = Scrape::fetch(&format!("http://{}/metrics", publisher.metrics_address))
        .await
        .value(
            "dapr_component_pubsub_egress_count",
            &[
                ("app_id", source),
                ("component", "bus"),
                ("namespace", ""),
                ("success", "true"),
                ("topic", "orders"),
            ],
        );
    assert_eq!(egress, Some(31.0));
    let ingress = |scrape: &Scrape, topic: &str, process_status: &str| {
        scrape.value(
            "dapr_component_pubsub_ingress_count",
            &[
                ("app_id", "subscriber"),
                ("component", "bus"),
                ("namespace", ""),
                ("process_status", process_status),
                ("status", process_status),
                ("topic", topic),
            ],
        )
    };
    let metrics_url = format!("http://{}/metrics", subscriber.metrics_address);
    let retried = 1.0 + f64::from(1 + RETRIES);
    let expected = [("success", 28.0), ("retry", retried), ("drop", 2.0)];
    let attempts = |scrape: &Scrape| -> f64 {
        expected
            .iter()
            .filter_map(|(status, _)| ingress(scrape, "orders", status))
            .sum()
    };
    // An attempt is recorded once the app has answered it: the last ones
    // may still be on their way.
    let total: f64 = expected.iter().map(|(_, n)| n).sum();
    wait_until("every attempt is recorded", Duration::from_secs(10), || {
        let url = metrics_url.clone();
        async move { attempts(&Scrape::fetch(&url).await) >= total }
    })
    .await;
    let scrape = Scrape::fetch(&metrics_url).await;
    for (process_status, count) in expected {
        assert_eq!(
            ingress(&scrape, "orders", process_status),
            Some(count),
            "{process_status}"
        );
    }
    if let Some(publisher) = other_publisher {
        publisher.stop().await;
    }
    subscriber.stop().await;
}

#[tokio::test]
async fn in_memory_behaviour_suite() {
    behaviour_suite(Backend::Memory).await;
}

#[tokio::test]
async fn embedded_behaviour_suite() {
    behaviour_suite(Backend::Embedded).await;
}

/// A broker that cannot be reached at start, with
/// `--embedded-pubsub-fallback` (as `dapr-wasm up` runs sidecars): the
/// embedded broker serves the component, and the metadata says so.
#[tokio::test]
async fn an_unreachable_broker_falls_back_to_the_embedded_one() {
    let (data, resources) = folders(&Backend::Unreachable, &[]);
    let sidecar = RunningSidecar::start(sidecar_config(
        &Backend::Unreachable,
        "fallback",
        None,
        data.path(),
        resources.path(),
    ))
    .await;
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    let bus = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bus")
        .cloned();
    assert_eq!(bus.unwrap()["type"], "pubsub.sqlite", "{metadata}");
    sidecar.stop().await;
    behaviour_suite(Backend::Unreachable).await;

    // Without the flag, the same component stops the sidecar at start.
    let mut config = sidecar_config(
        &Backend::Memory,
        "strict",
        None,
        data.path(),
        resources.path(),
    );
    config.embedded_pubsub_fallback = false;
    let err = sidecar::Sidecar::new(config)
        .await
        .err()
        .expect("no fallback without the flag");
    assert!(format!("{err:#}").contains("pub/sub `bus`"), "{err:#}");
}

/// Under `CI` the broker suites below must be able to run: this fails
/// there when a broker is missing, even in a plain `cargo test` that leaves
/// those suites ignored.
#[test]
fn under_ci_the_brokers_are_there() {
    if std::env::var_os("CI").is_none() {
        return;
    }
    test_support::services::require_services_under_ci(&[("RabbitMQ", "127.0.0.1:5672")]);
    for program in ["redis-server", "nats-server", "mosquitto"] {
        let found = std::process::Command::new(program)
            .arg("--help")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "{program} is not installed: scripts/test.sh installs it"
        );
    }
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_behaviour_suite() {
    let redis = test_support::RedisServer::start();
    behaviour_suite(Backend::Redis(redis.port())).await;
}

#[tokio::test]
#[ignore = "needs nats-server installed (scripts/test.sh installs it and runs this)"]
async fn jetstream_behaviour_suite() {
    let nats = test_support::BrokerServer::nats();
    behaviour_suite(Backend::JetStream(nats.port())).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn rabbitmq_behaviour_suite() {
    let vhost = test_support::RabbitVhost::create();
    behaviour_suite(Backend::RabbitMq(vhost.url())).await;
}

#[tokio::test]
#[ignore = "needs mosquitto installed (scripts/test.sh installs it and runs this)"]
async fn mqtt_behaviour_suite() {
    let mosquitto = test_support::BrokerServer::mosquitto();
    behaviour_suite(Backend::Mqtt(mosquitto.port())).await;
}

/// Declarative subscriptions (both versions, with scopes), raw payloads,
/// a refused `match` rule, and the publish API's errors.
#[tokio::test]
async fn declarative_subscriptions_raw_payloads_and_publish_errors() {
    let subscriptions = "\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: audit
spec:
  pubsubname: bus
  topic: audit
  routes:
    rules:
    - match: event.type == \"big\"
      path: /big
    default: /audit
  metadata:
    rawPayload: \"true\"
scopes: [declared]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: late
spec:
  pubsubname: bus
  topic: late
  route: /late
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: not-mine
spec:
  pubsubname: bus
  topic: orders
  route: /never
scopes: [someone-else]
";
    let Subscribed {
        sidecar, received, ..
    } = subscribed(
        &Backend::Memory,
        "declared",
        json!([]),
        &[("subscriptions.yaml", subscriptions)],
    )
    .await;
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    let listed: Vec<(&str, &str)> = metadata["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["topic"].as_str().unwrap(), s["type"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("audit", "DECLARATIVE"), ("late", "DECLARATIVE")]);
    assert!(
        metadata["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "bus" && c["type"] == "pubsub.in-memory")
    );

    // rawPayload: the bytes as published, wrapped for the app as base64.
    let client = reqwest::Client::new();
    let response = client
        .post(sidecar.url("/v1.0/publish/bus/audit?metadata.rawPayload=true"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    wait_for(&received, "the raw event", |r| !r.events().is_empty()).await;
    let (path, event) = received.events()[0].clone();
    assert_eq!(
        path, "/audit",
        "the default route; the match rule is refused"
    );
    assert_eq!(event["data_base64"], "AAEC/w==");

    let post = |path: &str, content_type: &str, body: &'static str| {
        client
            .post(sidecar.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // A caller's own CloudEvent keeps its id and type.
    let response = post(
        "/v1.0/publish/bus/late",
        "application/cloudevents+json",
        r#"{"specversion":"1.0","id":"mine-1","type":"big","source":"shop","data":{"n":7}}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    wait_for(&received, "the caller's CloudEvent", |r| {
        r.count("/late", 7) == 1
    })
    .await;
    let (_, event) = received.events()[1].clone();
    assert_eq!(event["id"], "mine-1");
    assert_eq!(event["type"], "big");
    assert_eq!(event["source"], "shop");

    // `cloudevent.*` metadata replaces the fields the sidecar sets.
    let response = post(
        "/v1.0/publish/bus/late?metadata.cloudevent.id=order-8&metadata.cloudevent.type=order.placed",
        "application/json",
        r#"{"n":8}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    wait_for(&received, "the event with overrides", |r| {
        r.count("/late", 8) == 1
    })
    .await;
    let (_, event) = received.events()[2].clone();
    assert_eq!(event["id"], "order-8");
    assert_eq!(event["type"], "order.placed");
    assert_eq!(event["source"], "declared");

    // Errors, as daprd gives them.
    let unknown = post("/v1.0/publish/nope/orders", "application/json", "{}")
        .await
        .unwrap();
    assert_dapr_error(unknown, 404, "ERR_PUBSUB_NOT_FOUND").await;
    let forbidden = post("/v1.0/publish/bus/secret", "application/json", "{}")
        .await
        .unwrap();
    assert_dapr_error(forbidden, 403, "ERR_PUBSUB_FORBIDDEN").await;
    let broken = post(
        "/v1.0/publish/bus/orders",
        "application/cloudevents+json",
        "[1,",
    )
    .await
    .unwrap();
    assert_dapr_error(broken, 400, "ERR_PUBSUB_CLOUD_EVENTS_SER").await;

    // Bulk: every entry published, or the failed ones named.
    let bulk = client
        .post(sidecar.url("/v1.0-alpha1/publish/bulk/bus/late"))
        .json(&json!([
            {"entryId": "a", "event": {"n": 8}, "contentType": "application/json"},
            {"entryId": "b", "event": "plain text", "contentType": "text/plain"},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 204);
    wait_for(&received, "both bulk events", |r| {
        r.data_at("/late").len() == 4
    })
    .await;
    // Bulk publish keeps no order between its entries (as daprd).
    assert!(received.data_at("/late")[2..].contains(&json!("plain text")));
    let failing = client
        .post(sidecar.url("/v1.0-alpha1/publish/bulk/bus/late"))
        .json(&json!([
            {"entryId": "c", "event": "{", "contentType": "application/cloudevents+json"},
            {"entryId": "d", "event": {"n": 9}, "contentType": "application/json"},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 500);
    let answer: Value = failing.json().await.unwrap();
    assert_eq!(answer["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
    assert_eq!(answer["failedEntries"].as_array().unwrap().len(), 1);
    assert_eq!(answer["failedEntries"][0]["entryId"], "c");
    sidecar.stop().await;
}

/// No pub/sub component at all: publishing says so.
#[tokio::test]
async fn publishing_without_a_pubsub_component_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("lonely", None, data.path())).await;
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/publish/bus/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 400, "ERR_PUBSUB_NOT_CONFIGURED").await;
    sidecar.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_keeps_events_for_a_subscriber_that_was_down_or_killed() {
    let redis = test_support::RedisServer::start();
    nothing_lost(Backend::Redis(redis.port())).await;
}

#[tokio::test]
#[ignore = "needs nats-server installed (scripts/test.sh installs it and runs this)"]
async fn jetstream_keeps_events_for_a_subscriber_that_was_down_or_killed() {
    let nats = test_support::BrokerServer::nats();
    nothing_lost(Backend::JetStream(nats.port())).await;
}

#[tokio::test]
async fn the_embedded_broker_keeps_events_for_a_subscriber_that_was_down_or_killed() {
    nothing_lost(Backend::Embedded).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn rabbitmq_keeps_events_for_a_subscriber_that_was_down_or_killed() {
    let vhost = test_support::RabbitVhost::create();
    nothing_lost(Backend::RabbitMq(vhost.url())).await;
}

/// A broker of the test's own that can be stopped and started again.
trait Restartable {
    /// Stops it: the broker is down.
    fn kill(&mut self);
    /// Starts it again on its port.
    fn restart(&mut self);
}

impl Restartable for test_support::RedisServer {
    fn kill(&mut self) {
        test_support::RedisServer::kill(self);
    }
    fn restart(&mut self) {
        test_support::RedisServer::restart(self);
    }
}

impl Restartable for test_support::BrokerServer {
    fn kill(&mut self) {
        test_support::BrokerServer::kill(self);
    }
    fn restart(&mut self) {
        test_support::BrokerServer::restart(self);
    }
}

/// The broker restarts under a sidecar that publishes and subscribes (a
/// crash, an upgrade): while it is down, a publish gets Dapr's error; once
/// it is back on its port, the same sidecar publishes again and its
/// subscription delivers again, with no restart.
async fn back_after_a_broker_restart(backend: Backend, broker: &mut impl Restartable) {
    let Subscribed {
        sidecar,
        received,
        data: _data,
        resources: _resources,
    } = subscribed(&backend, "subscriber", orders_subscriptions(), &[]).await;
    publish(&sidecar, "orders", json!({"n": 1})).await;
    wait_for(&received, "the first event", |r| r.count("/orders", 1) == 1).await;

    broker.kill();
    let client = reqwest::Client::new();
    let publish_once = |n: i64| {
        client
            .post(sidecar.url("/v1.0/publish/bus/orders"))
            .json(&json!({ "n": n }))
            .send()
    };
    let refused = publish_once(2).await.unwrap();
    assert_dapr_error(refused, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;

    broker.restart();
    // The publisher and the subscription connect again in their own time,
    // and a broker restarted without its data (MQTT's) drops what is
    // published before the subscription is back: publish a new event until
    // one reaches the app (a refused or dropped one is the publisher's to
    // send again).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 100;
    let one_arrived = |r: &Received| {
        r.data_at("/orders")
            .iter()
            .any(|d| d["n"].as_i64().is_some_and(|k| k >= 100))
    };
    while !one_arrived(&received) {
        let response = publish_once(n).await.unwrap();
        if response.status() != 204 {
            assert_dapr_error(response, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event reached the app within 30 s of the broker's restart"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both ways are back: the next event is taken and delivered.
    publish(&sidecar, "orders", json!({"n": 1000})).await;
    wait_for(&received, "an event published once both are back", |r| {
        r.count("/orders", 1000) == 1
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_pubsub_is_back_after_a_redis_restart() {
    let mut redis = test_support::RedisServer::start();
    back_after_a_broker_restart(Backend::Redis(redis.port()), &mut redis).await;
}

#[tokio::test]
#[ignore = "needs nats-server installed (scripts/test.sh installs it and runs this)"]
async fn jetstream_pubsub_is_back_after_a_nats_restart() {
    let mut nats = test_support::BrokerServer::nats();
    back_after_a_broker_restart(Backend::JetStream(nats.port()), &mut nats).await;
}

#[tokio::test]
#[ignore = "needs mosquitto installed (scripts/test.sh installs it and runs this)"]
async fn mqtt_pubsub_is_back_after_a_mosquitto_restart() {
    let mut mosquitto = test_support::BrokerServer::mosquitto();
    back_after_a_broker_restart(Backend::Mqtt(mosquitto.port()), &mut mosquitto).await;
}

/// RabbitMQ closes the sidecar's connection (as an operator's
/// `close_all_connections` or a broker restart does): publishing goes on
/// over a new connection, and the subscription comes back with the event
/// published while it was gone. Then the broker is down (its vhost deleted
/// with the queue in it): a publish gets Dapr's error, and once the broker
/// is back the same sidecar publishes and delivers again, with no restart.
#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn rabbitmq_connections_come_back_after_the_broker_drops_them() {
    let vhost = test_support::RabbitVhost::create();
    let backend = Backend::RabbitMq(vhost.url());
    let Subscribed {
        sidecar,
        received,
        data: _data,
        resources: _resources,
    } = subscribed(&backend, "subscriber", orders_subscriptions(), &[]).await;
    publish(&sidecar, "orders", json!({"n": 1})).await;
    wait_for(&received, "the first event", |r| r.count("/orders", 1) == 1).await;

    vhost.close_connections().await;
    publish(&sidecar, "orders", json!({"n": 2})).await;
    wait_for(
        &received,
        "the event published while the subscription was gone",
        |r| r.count("/orders", 2) == 1,
    )
    .await;

    vhost.take_down().await;
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/publish/bus/orders"))
        .json(&json!({"n": 3}))
        .send()
        .await
        .unwrap();
    let message = assert_dapr_error(response, 500, "ERR_PUBSUB_PUBLISH_MESSAGE").await;
    assert!(message.contains("RabbitMQ"), "{message}");

    vhost.bring_back().await;
    // The subscription declares its queue again within its reconnect wait
    // (3 s); an event published before that would have nowhere to go.
    wait_until(
        "the subscription is back on the new vhost",
        Duration::from_secs(20),
        || async { vhost.consumers("subscriber-orders").await == 1 },
    )
    .await;
    publish(&sidecar, "orders", json!({"n": 4})).await;
    wait_for(
        &received,
        "the event published once the broker is back",
        |r| r.count("/orders", 4) == 1,
    )
    .await;
    assert_eq!(
        received.count("/orders", 3),
        0,
        "the refused event was not delivered"
    );
    sidecar.stop().await;
}

#[tokio::test]
#[ignore = "needs mosquitto installed (scripts/test.sh installs it and runs this)"]
async fn mqtt_keeps_events_for_a_subscriber_that_was_down_or_killed() {
    let mosquitto = test_support::BrokerServer::mosquitto();
    nothing_lost(Backend::Mqtt(mosquitto.port())).await;
}

/// A subscriber app `app_id` with `subscriptions` behind a sidecar on
/// `backend` whose component lets any topic be published to (the suite's
/// allows its own), once it has subscribed to all of them; and its data
/// and resources folders, to keep while it runs.
async fn subscribed_to_any_topic(
    backend: Backend,
    app_id: &str,
    subscriptions: Value,
) -> (
    RunningSidecar,
    Arc<Received>,
    (tempfile::TempDir, tempfile::TempDir),
) {
    let count = subscriptions.as_array().map_or(0, Vec::len);
    let (data, resources) = folders(&backend, &[]);
    let component = backend.component().replace("orders,dead,audit,late", "");
    std::fs::write(resources.path().join("pubsub.yaml"), component).unwrap();
    let (app, received) = start_subscriber(subscriptions).await;
    let config = sidecar_config(&backend, app_id, Some(app), data.path(), resources.path());
    let sidecar = RunningSidecar::start(config).await;
    sidecar.wait_subscribed(count).await;
    (sidecar, received, (data, resources))
}

/// A subscription to an MQTT topic filter gets the events of every topic
/// it matches, and only those.
#[tokio::test]
#[ignore = "needs mosquitto installed (scripts/test.sh installs it and runs this)"]
async fn mqtt_wildcard_subscriptions_get_every_matching_topic() {
    let mosquitto = test_support::BrokerServer::mosquitto();
    let subscriptions = json!([
        {"pubsubname": "bus", "topic": "sensors/+/temperature", "route": "/temperature"},
        {"pubsubname": "bus", "topic": "fleet/#", "route": "/fleet"},
    ]);
    let (sidecar, received, _folders) =
        subscribed_to_any_topic(Backend::Mqtt(mosquitto.port()), "watcher", subscriptions).await;
    // A topic's levels go in the URL as they are, or encoded.
    publish(&sidecar, "sensors/kitchen/humidity", json!({"n": 1})).await;
    publish(&sidecar, "sensors/kitchen/temperature", json!({"n": 2})).await;
    publish(&sidecar, "fleet%2Ftruck-7%2Fposition", json!({"n": 3})).await;
    publish(&sidecar, "fleet", json!({"n": 4})).await;
    wait_for(&received, "the events of the matching topics", |r| {
        r.count("/temperature", 2) == 1 && r.count("/fleet", 3) == 1 && r.count("/fleet", 4) == 1
    })
    .await;
    let events = received.events();
    let truck = events
        .iter()
        .find(|(path, e)| path == "/fleet" && e["data"]["n"] == 3);
    assert_eq!(truck.unwrap().1["topic"], "fleet/truck-7/position");
    // Had the humidity event matched `sensors/+/temperature`, it would have
    // come first on that subscription, which delivers in order.
    assert_eq!(received.events().len(), 3, "{:?}", received.events());
    sidecar.stop().await;
}

/// Two topics kept by one stream made beforehand, as daprd expects one to
/// be (`shop.>`): each subscription gets its own topic's events, and only
/// those.
#[tokio::test]
#[ignore = "needs nats-server installed (scripts/test.sh installs it and runs this)"]
async fn jetstream_topics_in_one_stream_each_get_their_own_events() {
    let nats = test_support::BrokerServer::nats();
    let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port()))
        .await
        .unwrap();
    async_nats::jetstream::new(client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SHOP".into(),
            subjects: vec!["shop.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let subscriptions = json!([
        {"pubsubname": "bus", "topic": "shop.orders", "route": "/orders"},
        {"pubsubname": "bus", "topic": "shop.refunds", "route": "/refunds"},
    ]);
    let (sidecar, received, _folders) =
        subscribed_to_any_topic(Backend::JetStream(nats.port()), "shop", subscriptions).await;
    publish(&sidecar, "shop.orders", json!({"n": 1})).await;
    publish(&sidecar, "shop.refunds", json!({"n": 2})).await;
    publish(&sidecar, "shop.orders", json!({"n": 3})).await;
    wait_for(&received, "each topic's events", |r| {
        r.data_at("/orders") == [json!({"n": 1}), json!({"n": 3})]
            && r.data_at("/refunds") == [json!({"n": 2})]
    })
    .await;
    assert_eq!(received.events().len(), 3, "{:?}", received.events());
    sidecar.stop().await;
}

/// Redis and RabbitMQ deliver in parallel by default, as daprd does: an
/// event the app holds on to does not hold up the events behind it.
async fn parallel_by_default(backend: Backend) {
    let (data, resources) = folders(&backend, &[]);
    let component = backend.component().replace(&in_order(&backend), "");
    std::fs::write(resources.path().join("pubsub.yaml"), component).unwrap();
    let (app, received) = start_subscriber(orders_subscriptions()).await;
    let mut config = sidecar_config(
        &backend,
        "parallel",
        Some(app),
        data.path(),
        resources.path(),
    );
    // The held event times out only after the events behind it must have
    // arrived (one at a time, they would wait for that timeout).
    config.invoke_timeout = Duration::from_secs(120);
    let sidecar = RunningSidecar::start(config).await;
    sidecar.wait_subscribed(2).await;
    publish(&sidecar, "orders", json!({"n": 1, "do": "hold"})).await;
    for n in 2..6 {
        publish(&sidecar, "orders", json!({"n": n})).await;
    }
    wait_for(&received, "the events behind the held one", |r| {
        (1..6).all(|n| r.count("/orders", n) == 1)
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_delivers_in_parallel_by_default() {
    let redis = test_support::RedisServer::start();
    parallel_by_default(Backend::Redis(redis.port())).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn rabbitmq_delivers_in_parallel_by_default() {
    let vhost = test_support::RabbitVhost::create();
    parallel_by_default(Backend::RabbitMq(vhost.url())).await;
}

/// A subscriber whose sidecar is down while events are published gets
/// them all once it is back; then its sidecar dies (its runtime is torn
/// down, as by SIGKILL: no acks, no goodbye) with events in the app's
/// hands, and a new sidecar delivers those again.
async fn nothing_lost(backend: Backend) {
    let (data, resources) = folders(&backend, &[]);
    let (app, received) = start_subscriber(orders_subscriptions()).await;
    let subscriber_config = || {
        sidecar_config(
            &backend,
            "subscriber",
            Some(app),
            data.path(),
            resources.path(),
        )
    };
    let publisher = RunningSidecar::start(sidecar_config(
        &backend,
        "publisher",
        None,
        data.path(),
        resources.path(),
    ))
    .await;

    // The consumer group exists once the subscriber has subscribed.
    let subscriber = RunningSidecar::start(subscriber_config()).await;
    subscriber.wait_subscribed(2).await;
    subscriber.stop().await;
    for n in 0..10 {
        publish(&publisher, "orders", json!({"n": n})).await;
    }
    let subscriber = RunningSidecar::start(subscriber_config()).await;
    wait_for(&received, "the events published while it was down", |r| {
        (0..10).all(|n| r.count("/orders", n) >= 1)
    })
    .await;
    subscriber.stop().await;

    // Killed mid-stream: event 20 is in the app's hands (it never answers
    // it), events 22..30 wait behind it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let doomed = runtime
        .spawn(RunningSidecar::start(subscriber_config()))
        .await
        .unwrap();
    doomed.wait_subscribed(2).await;
    publish(&publisher, "orders", json!({"n": 20, "do": "hold"})).await;
    for n in 22..30 {
        publish(&publisher, "orders", json!({"n": n})).await;
    }
    wait_for(&received, "the held event reaches the app", |r| {
        r.count("/orders", 20) == 1
    })
    .await;
    runtime.shutdown_background();
    drop(doomed);

    let subscriber = RunningSidecar::start(subscriber_config()).await;
    wait_for(&received, "every event, the held one again", |r| {
        r.count("/orders", 20) >= 2 && (22..30).all(|n| r.count("/orders", n) >= 1)
    })
    .await;
    subscriber.stop().await;
    publisher.stop().await;
}

/// Bulk subscribe: events reach the app many per request, in daprd's
/// envelope, and each entry's status settles that event alone: SUCCESS
/// delivers, DROP drops, RETRY or no status retries it (in a smaller
/// batch), and after the last retry it is dead-lettered.
async fn bulk_suite(backend: Backend) {
    let subscriptions = json!([
        {"pubsubname": "bus", "topic": "orders", "route": "/orders", "deadLetterTopic": "dead",
         "bulkSubscribe": {"enabled": true, "maxMessagesCount": 10, "maxAwaitDurationMs": 200}},
        {"pubsubname": "bus", "topic": "dead", "route": "/dead"},
    ]);
    let Subscribed {
        sidecar: subscriber,
        received,
        ..
    } = subscribed(&backend, "subscriber", subscriptions, &[]).await;
    let entries: Vec<Value> = (1..=25)
        .map(|n| {
            let action = match n {
                3 => "retry_once",
                5 => "drop",
                7 => "poison",
                9 => "no_status",
                _ => "ok",
            };
            json!({"entryId": format!("e{n}"), "event": {"n": n, "do": action},
                   "contentType": "application/json"})
        })
        .collect();
    let response = reqwest::Client::new()
        .post(subscriber.url("/v1.0-alpha1/publish/bulk/bus/orders"))
        .json(&entries)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{:?}", response.text().await);

    wait_for(&received, "every event settled", |r| {
        (1..=25).all(|n| r.count("/orders", n) >= 1)
            && r.count("/orders", 3) == 2
            && r.count("/dead", 7) >= 1
            && r.count("/dead", 9) == 1
    })
    .await;
    for n in (1..=25).filter(|n| ![3, 7, 9].contains(n)) {
        assert_eq!(received.count("/orders", n), 1, "event {n} once");
    }
    for n in [7, 9] {
        assert_eq!(
            received.count("/orders", n),
            1 + RETRIES as usize,
            "event {n}: the first attempt and every retry"
        );
    }
    // (On `dead`, an ordinary subscription, 7 is poison again.)
    assert!(
        received
            .data_at("/dead")
            .iter()
            .all(|d| d["n"] == 7 || d["n"] == 9),
        "only the events that were never accepted are dead-lettered"
    );

    let batches = received.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|(path, _)| path == "/orders"));
    let sizes: Vec<usize> = batches
        .iter()
        .map(|(_, b)| b["entries"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(sizes.iter().all(|&n| (1..=10).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "events are delivered many at a time: {sizes:?}"
    );
    // The entries to retry go again in batches of their own, without the
    // events that were settled.
    let numbers = |batch: &Value| -> Vec<Value> {
        batch["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["data"]["n"].clone())
            .collect()
    };
    let with_7: Vec<Vec<Value>> = batches
        .iter()
        .map(|(_, b)| numbers(b))
        .filter(|ns| ns.contains(&json!(7)))
        .collect();
    assert_eq!(with_7.len(), 1 + RETRIES as usize, "{with_7:?}");
    // (3, `retry_once`, and 9 may be in them; nothing settled.)
    for retried in &with_7[1..] {
        assert!(
            retried
                .iter()
                .all(|n| [3, 7, 9].map(|n| json!(n)).contains(n)),
            "{with_7:?}"
        );
    }
    let (_, first) = &batches[0];
    assert_eq!(first["pubsubname"], "bus");
    assert_eq!(first["topic"], "orders");
    assert_eq!(first["metadata"]["pubsubName"], "bus");
    let entry = &first["entries"][0];
    assert_eq!(entry["contentType"], "application/cloudevents+json");
    assert!(entry["entryId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(entry["event"]["specversion"], "1.0");
    assert_eq!(entry["event"]["topic"], "orders");
    subscriber.stop().await;
}

#[tokio::test]
async fn in_memory_bulk_subscribe() {
    bulk_suite(Backend::Memory).await;
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_bulk_subscribe() {
    let redis = test_support::RedisServer::start();
    bulk_suite(Backend::Redis(redis.port())).await;
}

/// `PublishEvent` and `BulkPublishEvent` over gRPC, what the SDKs call by
/// default: the same events and errors as over HTTP.
#[tokio::test]
async fn publishing_over_grpc() {
    use dapr::dapr::proto::runtime::v1 as pb;
    use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
    let Subscribed {
        sidecar, received, ..
    } = subscribed(&Backend::Memory, "grpc-pub", orders_subscriptions(), &[]).await;
    let mut dapr = DaprClient::connect(format!("http://{}", sidecar.grpc_address))
        .await
        .unwrap();
    let event = |topic: &str, pubsub: &str| crate::grpc::json_event(pubsub, topic, br#"{"n": 1}"#);
    dapr.publish_event(event("orders", "bus")).await.unwrap();
    wait_for(&received, "the gRPC event", |r| r.count("/orders", 1) == 1).await;
    assert_eq!(received.events()[0].1["source"], "grpc-pub");

    let entry = |id: &str, n: i64| pb::BulkPublishRequestEntry {
        entry_id: id.into(),
        event: json!({"n": n}).to_string().into_bytes(),
        content_type: "application/json".into(),
        metadata: HashMap::new(),
    };
    let answer = dapr
        .bulk_publish_event(pb::BulkPublishRequest {
            pubsub_name: "bus".into(),
            topic: "orders".into(),
            entries: vec![entry("a", 2), entry("b", 3)],
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.failed_entries.is_empty());
    wait_for(&received, "both bulk events", |r| {
        r.count("/orders", 2) == 1 && r.count("/orders", 3) == 1
    })
    .await;

    // `cloudevent.*` metadata replaces the fields the sidecar sets.
    let mut overridden = event("orders", "bus");
    overridden.data = br#"{"n": 4}"#.to_vec();
    overridden.metadata = HashMap::from([
        ("cloudevent.id".to_string(), "invoice-4".to_string()),
        ("cloudevent.source".to_string(), "billing".to_string()),
    ]);
    dapr.publish_event(overridden).await.unwrap();
    wait_for(&received, "the event with overrides", |r| {
        r.count("/orders", 4) == 1
    })
    .await;
    let (_, sent) = received
        .events()
        .into_iter()
        .find(|(_, event)| event["data"]["n"] == 4)
        .unwrap();
    assert_eq!(sent["id"], "invoice-4");
    assert_eq!(sent["source"], "billing");
    assert_eq!(sent["type"], "com.dapr.event.sent");

    let unknown = dapr
        .publish_event(event("orders", "nope"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");
    let forbidden = dapr
        .publish_event(event("secret", "bus"))
        .await
        .unwrap_err();
    assert_eq!(
        forbidden.code(),
        tonic::Code::PermissionDenied,
        "{forbidden:?}"
    );
    sidecar.stop().await;
}
