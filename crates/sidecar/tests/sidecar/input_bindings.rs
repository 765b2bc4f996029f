//! Input bindings (`bindings.cron`) triggering an HTTP app as daprd does:
//! the `OPTIONS` question first, then a `POST` per firing on the binding's
//! route, with the binding's metadata as headers; bindings the app does
//! not want are not read, `direction: input` skips the question, and each
//! event is counted in daprd's metrics. (A gRPC app's `ListInputBindings`
//! and `OnBindingEvent` are in `grpc_app`.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::{options, post};
use test_support::metrics::Scrape;
use test_support::sidecar::*;

use super::state::component_file;

/// One request the app got: method, path, headers.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An app that records every request. It wants `tick` (`OPTIONS /tick`
/// answers 200) and `/jobs/nightly` (only `POST` is routed: axum answers
/// `OPTIONS` 405, which daprd also takes as a yes); it does not want
/// `unwanted` (404); `POST /declared` fails with 500.
async fn start_app() -> (SocketAddr, Log) {
    async fn record(State(log): State<Log>, request: Request) -> StatusCode {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let status = match (parts.method.as_str(), parts.uri.path()) {
            (_, "/declared") | ("OPTIONS", "/unwanted") => {
                if parts.method == Method::POST {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NOT_FOUND
                }
            }
            _ => StatusCode::OK,
        };
        log.lock().unwrap().push(Seen {
            method: parts.method,
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
        });
        status
    }
    let log = Log::default();
    let app = axum::Router::new()
        .route("/tick", options(record).post(record))
        .route("/jobs/nightly", post(record))
        .fallback(record)
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, log)
}

fn requests(log: &Log, method: &str, path: &str) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|seen| seen.method == method && seen.path == path)
        .cloned()
        .collect()
}

/// Writes a `bindings.cron` component firing every second.
fn cron(dir: &std::path::Path, name: &str, more: &[(&str, &str)]) {
    let mut metadata = vec![("schedule", "@every 1s")];
    metadata.extend_from_slice(more);
    component_file(dir, name, "bindings.cron", &metadata);
}

#[tokio::test]
async fn cron_bindings_post_to_the_routes_the_app_wants() {
    let (app, log) = start_app().await;
    let resources = TestResources::new();
    let dir = resources.resources.path();
    cron(dir, "tick", &[]);
    cron(dir, "nightly", &[("route", "/jobs/nightly")]);
    cron(dir, "unwanted", &[]);
    cron(dir, "declared", &[("direction", "input")]);
    let mut config = resources.config("cron-app", Some(app.port()));
    config.app_api_token = Some("app-secret".into());
    let sidecar = RunningSidecar::start(config).await;

    test_support::wait_until(
        "three ticks, and the other wanted bindings' events",
        Duration::from_secs(30),
        || async {
            requests(&log, "POST", "/tick").len() >= 3
                && !requests(&log, "POST", "/jobs/nightly").is_empty()
                && !requests(&log, "POST", "/declared").is_empty()
        },
    )
    .await;

    // The app was asked about each binding but the declared one, once
    // (axum answers `OPTIONS /jobs/nightly` itself, unrecorded: 405, which
    // the events on that route show was taken as a yes).
    assert_eq!(requests(&log, "OPTIONS", "/tick").len(), 1);
    assert_eq!(requests(&log, "OPTIONS", "/unwanted").len(), 1);
    assert!(requests(&log, "OPTIONS", "/declared").is_empty());
    // The unwanted one fires every second too, but is never read: three
    // ticks are more than a second.
    assert!(requests(&log, "POST", "/unwanted").is_empty());

    let tick = &requests(&log, "POST", "/tick")[0];
    assert!(tick.body.is_empty(), "a cron event has no data");
    let header = |name: &str| tick.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("timeZone"), Some("Local"));
    let read_time = header("readTimeUTC").unwrap_or_default();
    assert!(
        read_time.len() >= 29 && read_time.ends_with(" +0000 UTC"),
        "Go's time format: {read_time}"
    );
    assert_eq!(header("dapr-api-token"), Some("app-secret"));
    assert!(header("traceparent").is_some());

    // Each event is counted, with whether the app took it.
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let count = |component: &str, success: &str| {
        scrape.sum(
            "dapr_component_input_binding_count",
            &[("component", component), ("success", success)],
        )
    };
    assert!(count("tick", "true") >= 3.0);
    assert!(count("declared", "false") >= 1.0, "the app answered 500");
    assert_eq!(count("unwanted", "true") + count("unwanted", "false"), 0.0);
    assert!(
        scrape.sum(
            "dapr_component_input_binding_latencies_count",
            &[("component", "tick")]
        ) >= 3.0
    );

    // The metadata API lists them as input bindings, as daprd.
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    let tick = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tick")
        .cloned()
        .unwrap();
    assert_eq!(tick["type"], "bindings.cron");
    assert_eq!(tick["capabilities"], serde_json::json!(["INPUT_BINDING"]));

    // Once the sidecar stops, so do the events.
    sidecar.stop().await;
    let after_stop = requests(&log, "POST", "/tick").len();
    // One more firing's time passes, measured by a second cron sidecar's
    // own events, not by a sleep.
    let (other_app, other_log) = start_app().await;
    let other = TestResources::new();
    cron(other.resources.path(), "tick", &[]);
    let other = RunningSidecar::start(other.config("cron-app-2", Some(other_app.port()))).await;
    test_support::wait_until(
        "two ticks of another sidecar",
        Duration::from_secs(30),
        || async { requests(&other_log, "POST", "/tick").len() >= 2 },
    )
    .await;
    // (One event sent as the sidecar stopped may land after it returned.)
    let late = requests(&log, "POST", "/tick").len() - after_stop;
    assert!(late <= 1, "{late} ticks after the sidecar stopped");
    other.stop().await;
}

#[tokio::test]
async fn a_bad_cron_binding_stops_the_sidecar_at_start_with_the_reason() {
    let resources = TestResources::new();
    component_file(
        resources.resources.path(),
        "broken",
        "bindings.cron",
        &[("schedule", "61 * * * * *")],
    );
    let error = match sidecar::Sidecar::new(resources.config("cron-bad", None)).await {
        Ok(_) => panic!("a bad schedule was accepted"),
        Err(error) => format!("{error:#}"),
    };
    assert_eq!(
        error,
        "binding `broken` (bindings.cron): invalid schedule format '61 * * * * *': end of range (61) above maximum (59): 61"
    );
}

/// `bindings.rabbitmq` both ways: the app's `create` calls publish to the
/// queue, with their metadata as headers; the sidecar reads the queue and
/// sends each message to the app, acknowledging it once the app took it
/// and returning it to the queue when the app failed, as daprd does.
#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn a_rabbitmq_queue_binding_publishes_and_delivers_with_acknowledgements() {
    test_support::require_service("RabbitMQ", "127.0.0.1:5672");
    // The app fails a message whose body says so, the first time only.
    let log = Log::default();
    let failed_once = Arc::new(Mutex::new(false));
    let app = {
        let (log, failed_once) = (log.clone(), failed_once.clone());
        let handler = move |request: Request| {
            let (log, failed_once) = (log.clone(), failed_once.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let fail = body.as_ref() == b"\"fail-once\""
                    && !std::mem::replace(&mut *failed_once.lock().unwrap(), true);
                log.lock().unwrap().push(Seen {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    headers: parts.headers,
                    body,
                });
                if fail {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    };
    let queue = super::state::unique("binding_queue");
    let resources = TestResources::new();
    component_file(
        resources.resources.path(),
        "orders",
        "bindings.rabbitmq",
        &[
            ("host", "amqp://guest:guest@127.0.0.1:5672"),
            ("queueName", &queue),
        ],
    );
    let sidecar = RunningSidecar::start(resources.config("rabbit-app", Some(app.port()))).await;

    let client = reqwest::Client::new();
    for (n, body) in [(1, "first"), (2, "fail-once"), (3, "third")] {
        let published = client
            .post(sidecar.url("/v1.0/bindings/orders"))
            .json(&serde_json::json!({
                "operation": "create",
                "data": body,
                "metadata": {"order-id": n.to_string()}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 204);
    }
    let bodies = || -> Vec<String> {
        requests(&log, "POST", "/orders")
            .iter()
            .map(|seen| String::from_utf8_lossy(&seen.body).into_owned())
            .collect()
    };
    test_support::wait_until(
        "every message taken, the failed one again",
        Duration::from_secs(30),
        || async {
            let bodies = bodies();
            ["\"first\"", "\"third\""]
                .iter()
                .all(|b| bodies.iter().filter(|x| x == b).count() == 1)
                && bodies.iter().filter(|x| *x == "\"fail-once\"").count() == 2
        },
    )
    .await;
    let first = requests(&log, "POST", "/orders")
        .into_iter()
        .find(|seen| seen.body.as_ref() == b"\"first\"")
        .unwrap();
    assert_eq!(
        first.headers.get("order-id").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    // Nothing is left in the queue once the app took everything.
    let connection = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672",
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    test_support::wait_until("the queue is empty", Duration::from_secs(10), || async {
        let declared = channel
            .queue_declare(queue.as_str().into(), passive, Default::default())
            .await
            .unwrap();
        declared.message_count() == 0
    })
    .await;
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let count = |success: &str| {
        scrape.sum(
            "dapr_component_input_binding_count",
            &[("component", "orders"), ("success", success)],
        )
    };
    assert_eq!((count("true"), count("false")), (3.0, 1.0));
    sidecar.stop().await;
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
}

/// `bindings.rabbitmq` after RabbitMQ closed its connection (an operator's
/// `close_all_connections`, a broker restart): `create` publishes over a
/// new connection and the reading comes back, so the message reaches the
/// app. While the broker is down (its vhost deleted), `create` gets Dapr's
/// error; once it is back, the bindings declare their queues again (one
/// that only publishes too) and work, with no restart.
#[tokio::test]
#[ignore = "needs RabbitMQ on 127.0.0.1:5672 (scripts/test.sh starts it and runs this)"]
async fn a_rabbitmq_binding_comes_back_after_the_broker_drops_its_connection() {
    let vhost = test_support::RabbitVhost::create();
    let (app, log) = start_app().await;
    let resources = TestResources::new();
    let url = vhost.url();
    component_file(
        resources.resources.path(),
        "orders",
        "bindings.rabbitmq",
        &[
            ("host", &url),
            ("queueName", "orders-queue"),
            ("reconnectWaitInSeconds", "1"),
        ],
    );
    component_file(
        resources.resources.path(),
        "outbox",
        "bindings.rabbitmq",
        &[
            ("host", &url),
            ("queueName", "outbox-queue"),
            ("durable", "true"),
            ("direction", "output"),
        ],
    );
    let sidecar = RunningSidecar::start(resources.config("rabbit-app", Some(app.port()))).await;
    let create = |body: &'static str| {
        reqwest::Client::new()
            .post(sidecar.url("/v1.0/bindings/orders"))
            .json(&serde_json::json!({"operation": "create", "data": body}))
            .send()
    };
    let delivered = |body: &'static str| {
        let log = log.clone();
        async move {
            let expected = format!("\"{body}\"");
            test_support::wait_until(
                &format!("message {body} reaches the app"),
                Duration::from_secs(20),
                || {
                    let seen = requests(&log, "POST", "/orders")
                        .iter()
                        .any(|seen| seen.body == expected.as_bytes());
                    async move { seen }
                },
            )
            .await;
        }
    };
    assert_eq!(create("one").await.unwrap().status(), 204);
    delivered("one").await;

    vhost.close_connections().await;
    assert_eq!(create("two").await.unwrap().status(), 204);
    delivered("two").await;

    vhost.take_down().await;
    let refused = create("three").await.unwrap();
    let message = assert_dapr_error(refused, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert!(message.contains("RabbitMQ"), "{message}");

    vhost.bring_back().await;
    test_support::wait_until(
        "the binding reads its queue again",
        Duration::from_secs(20),
        || async { vhost.consumers("orders-queue").await == 1 },
    )
    .await;
    assert_eq!(create("four").await.unwrap().status(), 204);
    delivered("four").await;

    // A binding that only publishes declares its queue again on its new
    // connection, so what it publishes is kept for a reader to come.
    let kept = reqwest::Client::new()
        .post(sidecar.url("/v1.0/bindings/outbox"))
        .json(&serde_json::json!({"operation": "create", "data": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 204);
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare("outbox-queue".into(), passive, Default::default())
        .await
        .expect("the queue was declared again");
    assert_eq!(declared.message_count(), 1);
    sidecar.stop().await;
}

/// `bindings.mqtt3` both ways, on a Mosquitto of the test's own: `create`
/// publishes to the component's topic or the request's `topic`; a binding
/// reading a topic filter sends each message to the app with the topic it
/// came on; a message the app fails is sent again `backOffMaxRetries`
/// times, then dropped, and does not hold up the next one.
#[tokio::test]
#[ignore = "needs mosquitto installed (scripts/test.sh installs it and runs this)"]
async fn an_mqtt_binding_publishes_and_delivers_with_retries() {
    let mosquitto = test_support::BrokerServer::mosquitto();
    let url = format!("tcp://127.0.0.1:{}", mosquitto.port());
    let (app, log) = start_app().await;
    let resources = TestResources::new();
    let dir = resources.resources.path();
    let mqtt = |name: &str, more: &[(&str, &str)]| {
        let mut metadata = vec![("url", url.as_str()), ("consumerID", name)];
        metadata.extend_from_slice(more);
        component_file(dir, name, "bindings.mqtt3", &metadata);
    };
    mqtt(
        "readings",
        &[("topic", "sensors/+/temp"), ("direction", "input")],
    );
    mqtt(
        "thermometer",
        &[("topic", "sensors/hall/temp"), ("direction", "output")],
    );
    // The app answers 500 on `/declared` (and 404 to the question, which
    // `direction: input` skips).
    mqtt(
        "alerts",
        &[
            ("topic", "alerts"),
            ("direction", "input, output"),
            ("route", "/declared"),
            ("backOffMaxRetries", "2"),
            ("backOffDuration", "50ms"),
        ],
    );
    let sidecar = RunningSidecar::start(resources.config("mqtt-app", Some(app.port()))).await;
    let client = reqwest::Client::new();
    let create = |binding: &str, data: &str, metadata: serde_json::Value| {
        client
            .post(sidecar.url(&format!("/v1.0/bindings/{binding}")))
            .json(&serde_json::json!({"operation": "create", "data": data, "metadata": metadata}))
            .send()
    };
    let posted = |path: &str| -> Vec<(String, Option<String>)> {
        requests(&log, "POST", path)
            .iter()
            .map(|seen| {
                (
                    String::from_utf8_lossy(&seen.body).into_owned(),
                    seen.headers
                        .get("topic")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                )
            })
            .collect()
    };

    // The reading binding subscribes once the sidecar has asked the app;
    // until then a message to its topic would go nowhere (MQTT keeps
    // nothing for a subscription not yet made), so publish until one lands.
    test_support::wait_until(
        "a message reaches the app through the topic filter",
        Duration::from_secs(20),
        || async {
            let sent = create("thermometer", "21", serde_json::json!({})).await;
            assert_eq!(sent.unwrap().status(), 204);
            !posted("/readings").is_empty()
        },
    )
    .await;
    assert_eq!(
        posted("/readings")[0],
        ("\"21\"".to_string(), Some("sensors/hall/temp".to_string()))
    );
    let sent = create(
        "thermometer",
        "19",
        serde_json::json!({"topic": "sensors/kitchen/temp"}),
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), 204);
    test_support::wait_until(
        "the message sent to the request's topic",
        Duration::from_secs(20),
        || async {
            posted("/readings").contains(&(
                "\"19\"".to_string(),
                Some("sensors/kitchen/temp".to_string()),
            ))
        },
    )
    .await;

    // Failed three times (once and two retries), then dropped: the next
    // message gets its own three tries.
    for body in ["first-alert", "second-alert"] {
        let sent = create("alerts", body, serde_json::json!({})).await.unwrap();
        assert_eq!(sent.status(), 204);
    }
    let tries = |body: &str| {
        let body = format!("\"{body}\"");
        posted("/declared")
            .iter()
            .filter(|(b, _)| *b == body)
            .count()
    };
    test_support::wait_until(
        "both alerts tried three times",
        Duration::from_secs(20),
        || async { tries("first-alert") >= 3 && tries("second-alert") >= 3 },
    )
    .await;
    assert_eq!((tries("first-alert"), tries("second-alert")), (3, 3));

    // Operations other than `create` are refused as daprd refuses them.
    let refused = client
        .post(sidecar.url("/v1.0/bindings/thermometer"))
        .json(&serde_json::json!({"operation": "get"}))
        .send()
        .await
        .unwrap();
    let message = assert_dapr_error(refused, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
    assert!(
        message.ends_with("does not support operation get. supported operations:create"),
        "{message}"
    );
    sidecar.stop().await;
}

/// A `bindings.mqtt3` without its required metadata stops the sidecar at
/// start, naming what is missing.
#[tokio::test]
async fn an_mqtt_binding_without_a_topic_is_refused_at_start() {
    let resources = TestResources::new();
    component_file(
        resources.resources.path(),
        "sensors",
        "bindings.mqtt3",
        &[("url", "tcp://127.0.0.1:1883"), ("consumerID", "app")],
    );
    let refused = sidecar::Sidecar::new(resources.config("mqtt-app", None)).await;
    let message = format!("{:#}", refused.err().expect("the sidecar refuses to start"));
    assert!(
        message.contains("binding `sensors` (bindings.mqtt3): metadata `topic` is required"),
        "{message}"
    );
}
