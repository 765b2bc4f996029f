//! The configuration API (`configuration.redis`) over HTTP and gRPC:
//! reading items, subscriptions that the app (HTTP) or a gRPC stream is
//! told of, unsubscribing, and daprd's errors, against a Redis of the
//! test's own (so that "every key" and its subscriptions are the test's
//! alone) that is also restarted and stopped mid-test.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use dapr::dapr::proto::runtime::v1 as pb;
use redis::AsyncCommands;
use serde_json::{Value, json};
use test_support::metrics::Scrape;
use test_support::sidecar::*;
use tokio::sync::mpsc;
use tonic::Code;

use super::grpc::client;
use super::state::{component_file, unique};

/// The database the test's items are in (so keyspace channels name it).
const DB: &str = "3";

/// An app that records every `POST` it gets: `(path, JSON body)`.
async fn start_recording_app() -> (SocketAddr, mpsc::UnboundedReceiver<(String, Value)>) {
    async fn record(
        State(sender): State<mpsc::UnboundedSender<(String, Value)>>,
        request: Request,
    ) -> &'static str {
        // Only what the sidecar posts (not its `GET /dapr/config`, which
        // every HTTP app gets at start, as from daprd).
        if request.method() != axum::http::Method::POST {
            return "ok";
        }
        let path = request.uri().path().to_string();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let _ = sender.send((path, body));
        "ok"
    }
    let (sender, received) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(record).with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// A sidecar with a `configuration.redis` named `config` on `redis_port`,
/// and an app on `app_port` if any.
async fn sidecar_with_configuration(
    app_id: &str,
    redis_port: u16,
    app_port: Option<u16>,
) -> (RunningSidecar, [tempfile::TempDir; 2]) {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    component_file(
        resources.path(),
        "config",
        "configuration.redis",
        &[
            ("redisHost", &format!("127.0.0.1:{redis_port}")),
            ("redisDB", DB),
            ("dialTimeout", "500ms"),
            ("readTimeout", "500ms"),
        ],
    );
    let mut c = config(app_id, app_port, data.path());
    c.resources_paths = vec![resources.path().to_path_buf()];
    (RunningSidecar::start(c).await, [data, resources])
}

async fn get(sidecar: &RunningSidecar, path_and_query: &str) -> reqwest::Response {
    reqwest::get(sidecar.url(path_and_query)).await.unwrap()
}

/// How many subscribers the keyspace channel of `key` has.
async fn subscribers(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("__keyspace@{DB}__:{key}"))
        .query_async(redis)
        .await
        .unwrap();
    counts[0].1
}

/// Waits until nobody watches `key` (a subscription has ended in Redis).
async fn wait_unwatched(redis: &redis::aio::MultiplexedConnection, key: &str) {
    test_support::wait_until(
        &format!("no subscriber of {key}"),
        Duration::from_secs(10),
        || {
            let mut redis = redis.clone();
            async move { subscribers(&mut redis, key).await == 0 }
        },
    )
    .await;
}

/// The next `POST` the app got, within 10 s.
async fn next_post(received: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("an update within 10 s")
        .expect("the app is running")
}

/// The next message of a configuration stream, within 10 s.
async fn next_message(
    stream: &mut tonic::Streaming<pb::SubscribeConfigurationResponse>,
) -> pb::SubscribeConfigurationResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .expect("a message, not a failure")
        .expect("a message, not the end of the stream")
}

/// A `SubscribeConfiguration` stream of `keys` in `config`, and its first
/// message (the subscription's id).
async fn open_stream(
    dapr: &mut dapr::dapr::proto::runtime::v1::dapr_client::DaprClient<tonic::transport::Channel>,
    keys: &[&str],
) -> (
    tonic::Streaming<pb::SubscribeConfigurationResponse>,
    pb::SubscribeConfigurationResponse,
) {
    let mut stream = dapr
        .subscribe_configuration(subscribe_request("config", keys))
        .await
        .unwrap()
        .into_inner();
    let first = next_message(&mut stream).await;
    (stream, first)
}

/// A `GetConfiguration` of `keys` in `store`.
fn get_request(store: &str, keys: &[&str]) -> pb::GetConfigurationRequest {
    pb::GetConfigurationRequest {
        store_name: store.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        metadata: Default::default(),
    }
}

/// A `SubscribeConfiguration` of `keys` in `store`.
fn subscribe_request(store: &str, keys: &[&str]) -> pb::SubscribeConfigurationRequest {
    pb::SubscribeConfigurationRequest {
        store_name: store.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        metadata: Default::default(),
    }
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn redis_configuration_is_read_and_watched_as_daprd_s() {
    let mut server = test_support::RedisServer::start();
    let redis_client =
        redis::Client::open(format!("redis://127.0.0.1:{}/{DB}", server.port())).unwrap();
    let mut redis = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis.set("limit", "10||v1").await.unwrap();
    let _: () = redis.set("color", "blue").await.unwrap();
    let _: () = redis.hset("not-a-string", "f", "v").await.unwrap();
    let (app, mut posts) = start_recording_app().await;
    let app_id = unique("config-suite");
    let (sidecar, _dirs) =
        sidecar_with_configuration(&app_id, server.port(), Some(app.port())).await;

    // Named keys, under both API versions, with metadata passed along.
    let both = json!({"limit": {"value": "10", "version": "v1"}, "color": {"value": "blue"}});
    for version in ["v1.0", "v1.0-alpha1"] {
        let response = get(
            &sidecar,
            &format!("/{version}/configuration/config?key=limit&key=color&metadata.m=1"),
        )
        .await;
        assert_eq!(response.status(), 200, "{version}");
        assert_eq!(response.json::<Value>().await.unwrap(), both, "{version}");
    }
    // Every key that holds an item (not the hash); no item is a 204.
    let every = get(&sidecar, "/v1.0/configuration/config").await;
    assert_eq!(every.json::<Value>().await.unwrap(), both);
    let none = get(&sidecar, "/v1.0/configuration/config?key=missing").await;
    assert_eq!(none.status(), 204);

    // Subscribed over HTTP: each change is posted to the app.
    let subscribed = get(&sidecar, "/v1.0/configuration/config/subscribe?key=limit").await;
    assert_eq!(subscribed.status(), 200);
    let id = subscribed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let _: () = redis.set("limit", "11||v2").await.unwrap();
    let (path, body) = next_post(&mut posts).await;
    assert_eq!(path, "/configuration/config/limit");
    assert_eq!(
        body,
        json!({"id": id, "items": {"limit": {"value": "11", "version": "v2"}}})
    );
    let _: () = redis.del("limit").await.unwrap();
    let (path, body) = next_post(&mut posts).await;
    assert_eq!(path, "/configuration/config/limit");
    assert_eq!(body, json!({"id": id, "items": {"limit": {}}}), "deleted");
    // Unsubscribed: the watch ends in Redis, and the id is gone.
    let unsubscribe = format!("/v1.0/configuration/config/{id}/unsubscribe");
    let done = get(&sidecar, &unsubscribe).await;
    assert_eq!(done.status(), 200);
    assert_eq!(done.json::<Value>().await.unwrap(), json!({"ok": true}));
    wait_unwatched(&redis, "limit").await;
    let again = get(&sidecar, &unsubscribe).await;
    let message = assert_dapr_error(again, 500, "ERR_CONFIGURATION_UNSUBSCRIBE").await;
    assert!(message.contains("does not exist"), "{message}");

    // Over gRPC: the same items.
    let mut dapr = client(&sidecar).await;
    let request = |keys: &[&str]| get_request("config", keys);
    let _: () = redis.set("limit", "12||v3").await.unwrap();
    let items = dapr
        .get_configuration(request(&["limit", "color", "missing"]))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items["limit"].value, "12");
    assert_eq!(items["limit"].version, "v3");
    assert_eq!(items["color"].value, "blue");
    let every = dapr
        .get_configuration_alpha1(request(&[]))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(every.len(), 2, "{every:?}");

    // A gRPC stream: its id first, then each change; unsubscribing by id
    // ends the stream.
    let subscribe = |keys: &[&str]| subscribe_request("config", keys);
    let (mut stream, first) = open_stream(&mut dapr, &["color"]).await;
    assert!(!first.id.is_empty());
    assert!(first.items.is_empty(), "{first:?}");
    let _: () = redis.set("color", "green||2").await.unwrap();
    let change = next_message(&mut stream).await;
    assert_eq!(change.id, first.id);
    assert_eq!(change.items.len(), 1, "{change:?}");
    assert_eq!(change.items["color"].value, "green");
    assert_eq!(change.items["color"].version, "2");
    let unsubscribe = pb::UnsubscribeConfigurationRequest {
        store_name: "config".into(),
        id: first.id.clone(),
    };
    let unsubscribed = dapr
        .unsubscribe_configuration(unsubscribe.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(unsubscribed.ok, "{unsubscribed:?}");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
    assert!(
        end.expect("the end within 10 s").unwrap().is_none(),
        "the stream ends"
    );
    wait_unwatched(&redis, "color").await;
    let unknown = dapr
        .unsubscribe_configuration_alpha1(unsubscribe)
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.ok);
    assert!(unknown.message.contains("does not exist"), "{unknown:?}");

    // Every key, over the alpha name; a client that goes ends it.
    let mut every_key = dapr
        .subscribe_configuration_alpha1(subscribe(&[]))
        .await
        .unwrap()
        .into_inner();
    let first = next_message(&mut every_key).await;
    let _: () = redis.set("fresh", "new").await.unwrap();
    let change = next_message(&mut every_key).await;
    assert_eq!(change.id, first.id);
    assert_eq!(change.items["fresh"].value, "new", "{change:?}");
    let pattern = || async {
        let mut redis = redis.clone();
        let count: i64 = redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut redis)
            .await
            .unwrap();
        count
    };
    assert_eq!(pattern().await, 1);
    drop(every_key);
    test_support::wait_until(
        "the every-key watch to end with its client",
        Duration::from_secs(10),
        || async { pattern().await == 0 },
    )
    .await;

    // Nothing else reached the app (the HTTP subscription ended).
    assert!(posts.try_recv().is_err(), "no post after unsubscribing");

    // A watch outlives a Redis restart: it subscribes again.
    let (mut stream, first) = open_stream(&mut dapr, &["color"]).await;
    server.kill();
    server.restart();
    let mut redis = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    test_support::wait_until(
        "the watch to subscribe to the restarted Redis",
        Duration::from_secs(20),
        || {
            let mut redis = redis.clone();
            async move { subscribers(&mut redis, "color").await == 1 }
        },
    )
    .await;
    let _: () = redis.set("color", "red").await.unwrap();
    let change = next_message(&mut stream).await;
    assert_eq!(change.id, first.id);
    assert_eq!(change.items["color"].value, "red", "{change:?}");

    // Every call above, in daprd's metrics: six reads, four subscriptions,
    // two unsubscriptions, and one of an unknown id over HTTP (over gRPC an
    // unknown id names no store to count it against).
    let metrics = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let calls = |operation: &'static str, success: &'static str| {
        let labels = [
            ("app_id", app_id.as_str()),
            ("component", "config"),
            ("namespace", ""),
            ("operation", operation),
            ("success", success),
        ];
        metrics.value("dapr_component_configuration_count", &labels)
    };
    assert_eq!(calls("get", "true"), Some(6.0));
    assert_eq!(calls("subscribe", "true"), Some(4.0));
    assert_eq!(calls("unsubscribe", "true"), Some(2.0));
    assert_eq!(calls("unsubscribe", "false"), Some(1.0));
    sidecar.stop().await;
}

/// daprd's errors over both APIs: no store, an unknown store, no app to
/// tell, and a Redis that stops; the sidecar goes on serving.
#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn configuration_errors_are_daprd_s() {
    let data = tempfile::tempdir().unwrap();
    let bare = RunningSidecar::start(config("no-config", None, data.path())).await;
    let response = get(&bare, "/v1.0/configuration/config?key=a").await;
    assert_dapr_error(response, 500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED").await;
    let refused = client(&bare)
        .await
        .get_configuration(get_request("config", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    bare.stop().await;

    let mut server = test_support::RedisServer::start();
    let (sidecar, _dirs) =
        sidecar_with_configuration(&unique("config-down"), server.port(), None).await;
    let mut dapr = client(&sidecar).await;
    let response = get(&sidecar, "/v1.0/configuration/other?key=a").await;
    assert_dapr_error(response, 400, "ERR_CONFIGURATION_STORE_NOT_FOUND").await;
    let refused = dapr
        .subscribe_configuration(subscribe_request("other", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // Subscribing over HTTP needs an app to post changes to.
    let response = get(&sidecar, "/v1.0/configuration/config/subscribe?key=a").await;
    assert_dapr_error(response, 500, "ERR_APP_CHANNEL_NIL").await;

    server.kill();
    let response = get(&sidecar, "/v1.0/configuration/config?key=a").await;
    let message = assert_dapr_error(response, 500, "ERR_CONFIGURATION_GET").await;
    assert!(
        message.starts_with("failed to get [a] from Configuration store config: "),
        "{message}"
    );
    let refused = dapr
        .get_configuration(get_request("config", &["a"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    let refused = dapr
        .subscribe_configuration(subscribe_request("config", &["a"]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("failed to subscribe [a] from Configuration store config: "),
        "{refused:?}"
    );
    let health = get(&sidecar, "/v1.0/healthz").await;
    assert_eq!(health.status(), 204);
    sidecar.stop().await;
}
