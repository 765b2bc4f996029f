//! Actors: an HTTP app hosting the `Counter` type (as the SDKs' actor
//! runtimes host one: `GET /dapr/config`, `PUT /actors/{type}/{id}/method/
//! {method}`, `DELETE /actors/{type}/{id}`) is called through its sidecar,
//! one call at a time per actor; it keeps its count in actor state; its
//! reminders and timers fire; idle actors are deactivated; actors spread
//! over two hosting sidecars and are reached from a third; the gRPC API
//! does the same; and bad requests get daprd's errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dapr::dapr::proto::runtime::v1 as pb;
use reqwest::Client;
use serde_json::{Value, json};
use test_support::sidecar::*;
use tokio::sync::mpsc;

use super::grpc::client;

/// What the app saw: a reminder or a timer, of an actor id, with its
/// name and body.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: &'static str,
    id: String,
    name: String,
    body: Value,
}

/// The actor app's shared state.
#[derive(Clone)]
struct CounterApp {
    /// Which app this is (answered by `whoami`).
    label: &'static str,
    /// Its `actorIdleTimeout`.
    idle_timeout: &'static str,
    /// Its reentrancy `maxStackDepth`, when reentrancy is on.
    reentrancy: Option<u32>,
    /// Its sidecar's HTTP API, once it runs.
    sidecar: Arc<OnceLock<String>>,
    seen: mpsc::UnboundedSender<Seen>,
    /// The actors deactivated, in order.
    deactivated: Arc<Mutex<Vec<String>>>,
    /// Calls in progress, and the most at once, per actor id (`slow`).
    in_flight: Arc<Mutex<HashMap<String, (u32, u32)>>>,
}

async fn dapr_config(State(app): State<CounterApp>) -> axum::Json<Value> {
    axum::Json(json!({
        "entities": ["Counter"],
        "actorIdleTimeout": app.idle_timeout,
        "reentrancy": {"enabled": app.reentrancy.is_some(), "maxStackDepth": app.reentrancy},
        "actorScanInterval": "0h0m0s500ms0μs",
        "drainRebalancedActors": true,
    }))
}

async fn actor_method(
    State(app): State<CounterApp>,
    Path((actor_type, id, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    assert_eq!(actor_type, "Counter");
    let sidecar = app.sidecar.get().cloned().unwrap_or_default();
    let state_url = format!("{sidecar}/v1.0/actors/Counter/{id}/state");
    match method.as_str() {
        "add" => {
            let client = Client::new();
            let current = client
                .get(format!("{state_url}/count"))
                .send()
                .await
                .unwrap();
            let count: i64 = match current.status().as_u16() {
                204 => 0,
                200 => current.text().await.unwrap().parse().unwrap(),
                other => panic!("reading the count: {other}"),
            };
            let added: i64 = body.trim().parse().unwrap_or(0);
            let saved = client
                .post(&state_url)
                .json(&json!([
                    {"operation": "upsert", "request": {"key": "count", "value": count + added}},
                    {"operation": "upsert", "request": {"key": "last", "value": {"added": added},
                        "metadata": {"ttlInSeconds": "3600"}}},
                ]))
                .send()
                .await
                .unwrap();
            assert_eq!(saved.status(), 204, "{}", saved.text().await.unwrap());
            axum::Json(json!(count + added)).into_response()
        }
        "slow" => {
            {
                let mut in_flight = app.in_flight.lock().unwrap();
                let entry = in_flight.entry(id.clone()).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(entry.0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            app.in_flight.lock().unwrap().get_mut(&id).unwrap().0 -= 1;
            StatusCode::OK.into_response()
        }
        "whoami" => app.label.into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        // Calls the same actor's method named first in the body (with the
        // rest as its body), in the same call chain, as an SDK does.
        "call-self" => {
            let (next, rest) = body.split_once(',').unwrap_or((body.as_str(), ""));
            let mut inner = Client::new()
                .put(format!("{sidecar}/v1.0/actors/Counter/{id}/method/{next}"))
                .body(rest.to_string());
            if let Some(chain) = headers.get("dapr-reentrancy-id") {
                inner = inner.header("dapr-reentrancy-id", chain.to_str().unwrap());
            }
            match inner.send().await {
                Ok(answer) => format!(
                    "inner:{}:{}",
                    answer.status().as_u16(),
                    answer.text().await.unwrap_or_default()
                )
                .into_response(),
                Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
            }
        }
        "echo-header" => headers
            .get("x-order")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
            .into_response(),
        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "dotnet-error" => (
            StatusCode::BAD_REQUEST,
            [("X-DaprErrorResponseHeader", "true")],
            "actor said no",
        )
            .into_response(),
        _ => {
            let (kind, name) = if let Some(name) = method.strip_prefix("remind/") {
                ("remind", name)
            } else if let Some(name) = method.strip_prefix("timer/") {
                ("timer", name)
            } else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let _ = app.seen.send(Seen {
                kind,
                id,
                name: name.to_string(),
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
            });
            if name == "stopme" {
                return (StatusCode::OK, [("X-DaprReminderCancel", "true")]).into_response();
            }
            StatusCode::OK.into_response()
        }
    }
}

async fn deactivate(
    State(app): State<CounterApp>,
    Path((_, id)): Path<(String, String)>,
) -> StatusCode {
    app.deactivated.lock().unwrap().push(id);
    StatusCode::OK
}

/// Starts the actor app labelled `label`; its sidecar's URL is set later
/// (the app asks its sidecar for state).
async fn start_actor_app(
    label: &'static str,
    idle_timeout: &'static str,
) -> (SocketAddr, CounterApp, mpsc::UnboundedReceiver<Seen>) {
    start_reentrant_app(label, idle_timeout, None).await
}

/// [`start_actor_app`], with reentrancy on (`Some(maxStackDepth)`) or off.
async fn start_reentrant_app(
    label: &'static str,
    idle_timeout: &'static str,
    reentrancy: Option<u32>,
) -> (SocketAddr, CounterApp, mpsc::UnboundedReceiver<Seen>) {
    let (seen, events) = mpsc::unbounded_channel();
    let app = CounterApp {
        label,
        idle_timeout,
        reentrancy,
        sidecar: Arc::new(OnceLock::new()),
        seen,
        deactivated: Arc::default(),
        in_flight: Arc::default(),
    };
    let router = axum::Router::new()
        .route("/dapr/config", axum::routing::get(dapr_config))
        .route(
            "/actors/{actor_type}/{id}/method/{*method}",
            axum::routing::put(actor_method),
        )
        .route(
            "/actors/{actor_type}/{id}",
            axum::routing::delete(deactivate),
        )
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (address, app, events)
}

/// Starts a sidecar for the actor app, and waits until it hosts actors.
async fn start_host(config: sidecar::SidecarConfig, app: &CounterApp) -> RunningSidecar {
    let sidecar = RunningSidecar::start(config).await;
    let _ = app.sidecar.set(sidecar.base.clone());
    wait_for_json(
        "the sidecar hosts the app's actors",
        &sidecar.url("/v1.0/metadata"),
        |m| m["actorRuntime"]["hostReady"] == true,
    )
    .await;
    sidecar
}

/// The actor app (`one`, an idle timeout of 2 s) and a sidecar hosting
/// its actors, on a data folder of their own.
struct CounterHost {
    data: tempfile::TempDir,
    app_address: SocketAddr,
    app: CounterApp,
    events: mpsc::UnboundedReceiver<Seen>,
    sidecar: RunningSidecar,
}

/// Starts a [`CounterHost`] whose sidecar has `app_id`.
async fn start_counter_host(app_id: &str) -> CounterHost {
    let (app_address, app, events) = start_actor_app("one", "0h0m2s0ms0μs").await;
    let data = tempfile::tempdir().unwrap();
    let sidecar = start_host(config(app_id, Some(app_address.port()), data.path()), &app).await;
    CounterHost {
        data,
        app_address,
        app,
        events,
        sidecar,
    }
}

/// The next thing of `kind` the app saw, within 10 s.
async fn next_seen(events: &mut mpsc::UnboundedReceiver<Seen>, kind: &str) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let seen = events.recv().await.expect("the app is running");
            if seen.kind == kind {
                return seen;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a {kind} within 10 s"))
}

fn actor_url(sidecar: &RunningSidecar, id: &str, rest: &str) -> String {
    sidecar.url(&format!("/v1.0/actors/Counter/{id}/{rest}"))
}

/// Waits (10 s at most) until `GET` of the actor's `rest` is a 404.
async fn wait_until_gone(sidecar: &RunningSidecar, id: &str, rest: &str) {
    let client = Client::new();
    test_support::wait_until(
        &format!("{rest} of actor {id} is gone"),
        Duration::from_secs(10),
        || {
            let request = client.get(actor_url(sidecar, id, rest)).send();
            async move { request.await.unwrap().status() == 404 }
        },
    )
    .await;
}

async fn call(sidecar: &RunningSidecar, id: &str, method: &str, body: &str) -> reqwest::Response {
    Client::new()
        .put(actor_url(sidecar, id, &format!("method/{method}")))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_app_hosts_actors_with_state_reminders_timers_and_deactivation() {
    let CounterHost {
        data,
        app_address,
        app,
        mut events,
        sidecar,
    } = start_counter_host("counter-app").await;
    let client = Client::new();
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    assert_eq!(metadata["actorRuntime"]["runtimeStatus"], "RUNNING");
    assert_eq!(metadata["actors"], json!([{"type": "Counter", "count": 0}]));

    // Calls reach the app, which keeps its count in actor state.
    assert_eq!(
        call(&sidecar, "7", "add", "5").await.text().await.unwrap(),
        "5"
    );
    let second = call(&sidecar, "7", "add", "2").await;
    assert_eq!(second.status(), 200);
    assert_eq!(content_type(&second), "application/json");
    assert_eq!(second.text().await.unwrap(), "7");
    let count = client
        .get(actor_url(&sidecar, "7", "state/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(count.status(), 200);
    assert_eq!(count.text().await.unwrap(), "7");
    let last = client
        .get(actor_url(&sidecar, "7", "state/last"))
        .send()
        .await
        .unwrap();
    assert!(
        last.headers().contains_key("metadata.ttlExpireTime"),
        "a TTL was saved: {:?}",
        last.headers()
    );
    assert_eq!(last.json::<Value>().await.unwrap(), json!({"added": 2}));
    let none = client
        .get(actor_url(&sidecar, "7", "state/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 204);
    assert_eq!(
        get_json(sidecar.url("/v1.0/metadata")).await["actors"],
        json!([{"type": "Counter", "count": 1}])
    );
    // The caller's headers reach the app; any verb calls the method.
    let echoed = client
        .post(actor_url(&sidecar, "7", "method/echo-header"))
        .header("x-order", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "42");

    // One call at a time per actor.
    let slow: Vec<_> = (0..4).map(|_| call(&sidecar, "9", "slow", "")).collect();
    for response in futures_util::future::join_all(slow).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        app.in_flight.lock().unwrap()["9"],
        (0, 1),
        "never two at once"
    );

    // Reminders: data and times as given, as often as the period says.
    let created = client
        .put(actor_url(&sidecar, "7", "reminders/ping"))
        .json(&json!({"dueTime": "0s", "period": "R2/PT1S", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 204);
    let reminder = get_json(actor_url(&sidecar, "7", "reminders/ping")).await;
    assert_eq!(
        reminder,
        json!({"actorID": "7", "actorType": "Counter", "data": {"n": 1},
               "dueTime": "0s", "period": "R2/PT1S"})
    );
    for _ in 0..2 {
        let seen = next_seen(&mut events, "remind").await;
        assert_eq!((seen.id.as_str(), seen.name.as_str()), ("7", "ping"));
        assert_eq!(
            seen.body,
            json!({"data": {"n": 1}, "dueTime": "0s", "period": "R2/PT1S"})
        );
    }
    wait_until_gone(&sidecar, "7", "reminders/ping").await;
    assert_dapr_error(
        client
            .get(actor_url(&sidecar, "7", "reminders/ping"))
            .send()
            .await
            .unwrap(),
        404,
        "ERR_ACTOR_REMINDER_NOT_FOUND",
    )
    .await;
    // The app cancels a reminder with X-DaprReminderCancel.
    client
        .put(actor_url(&sidecar, "7", "reminders/stopme"))
        .json(&json!({"dueTime": "0s", "period": "1s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(next_seen(&mut events, "remind").await.name, "stopme");
    wait_until_gone(&sidecar, "7", "reminders/stopme").await;
    // `overwrite: false` keeps an existing reminder.
    let later = json!({"dueTime": "1h", "overwrite": false});
    let first = client
        .put(actor_url(&sidecar, "7", "reminders/later"))
        .json(&later)
        .send();
    assert_eq!(first.await.unwrap().status(), 204);
    assert_dapr_error(
        client
            .put(actor_url(&sidecar, "7", "reminders/later"))
            .json(&later)
            .send()
            .await
            .unwrap(),
        409,
        "ERR_ACTOR_REMINDER_ALREADY_EXISTS",
    )
    .await;

    // Timers: the callback and data, until deleted.
    let timer = client
        .post(actor_url(&sidecar, "7", "timers/tick"))
        .json(&json!({"dueTime": "0s", "period": "1s", "callback": "onTick", "data": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(timer.status(), 204);
    let seen = next_seen(&mut events, "timer").await;
    assert_eq!(seen.name, "tick");
    assert_eq!(
        seen.body,
        json!({"callback": "onTick", "data": "t", "dueTime": "0s", "period": "1s"})
    );
    let deleted = client
        .delete(actor_url(&sidecar, "7", "timers/tick"))
        .send();
    assert_eq!(deleted.await.unwrap().status(), 204);

    // Idle actors are deactivated (idle timeout 2 s): the app is told.
    test_support::wait_until(
        "the app is told of both deactivations",
        Duration::from_secs(10),
        || {
            let deactivated = app.deactivated.lock().unwrap().clone();
            async move {
                ["7", "9"]
                    .iter()
                    .all(|id| deactivated.iter().any(|d| d == id))
            }
        },
    )
    .await;
    wait_for_json("no actor is active", &sidecar.url("/v1.0/metadata"), |m| {
        m["actors"] == json!([{"type": "Counter", "count": 0}])
    })
    .await;
    // daprd's actor metrics counted it all.
    let scrape = test_support::metrics::Scrape::fetch(&format!(
        "http://{}/metrics",
        sidecar.metrics_address
    ))
    .await;
    let actor = [("app_id", "counter-app"), ("actor_type", "Counter")];
    let fired = |name: &str| scrape.sum(name, &[actor[0], actor[1], ("success", "true")]);
    assert!(fired("dapr_runtime_actor_reminders_fired_total") >= 3.0);
    assert!(fired("dapr_runtime_actor_timers_fired_total") >= 1.0);
    assert!(scrape.sum("dapr_runtime_actor_deactivated_total", &actor) >= 2.0);
    assert_eq!(
        scrape.value("dapr_runtime_actor_pending_actor_calls", &actor),
        Some(0.0),
        "the slow calls waited for their turns, and are done"
    );
    // Its state stays.
    assert_eq!(
        call(&sidecar, "7", "add", "1").await.text().await.unwrap(),
        "8"
    );

    // A reminder outlives a restart of the sidecar.
    sidecar.stop().await;
    let sidecar = start_host(
        config("counter-app", Some(app_address.port()), data.path()),
        &app,
    )
    .await;
    let kept = get_json(actor_url(&sidecar, "7", "reminders/later")).await;
    assert_eq!(kept["dueTime"], "1h");
    let removed = client
        .delete(actor_url(&sidecar, "7", "reminders/later"))
        .send();
    assert_eq!(removed.await.unwrap().status(), 204);
    sidecar.stop().await;
}

#[tokio::test]
async fn bad_actor_requests_get_daprds_errors() {
    let CounterHost {
        data: _data,
        app_address,
        app,
        events: _events,
        sidecar,
    } = start_counter_host("counter-errors").await;
    let client = Client::new();
    let message = assert_dapr_error(
        call(&sidecar, "1", "fail", "").await,
        500,
        "ERR_ACTOR_INVOKE_METHOD",
    )
    .await;
    assert_eq!(
        message,
        "error invoke actor method: error from actor service: (500) boom"
    );
    let message = assert_dapr_error(
        call(&sidecar, "1", "nope", "").await,
        500,
        "ERR_ACTOR_INVOKE_METHOD",
    )
    .await;
    assert_eq!(
        message,
        "error invoke actor method: actor method not found: actors/Counter/1/method/nope"
    );
    // An actor's own error (the .NET SDK's header) comes back as the app gave it.
    let own = call(&sidecar, "1", "dotnet-error", "").await;
    assert_eq!(own.status(), 400);
    assert_eq!(own.text().await.unwrap(), "actor said no");
    let message = assert_dapr_error(
        call(&sidecar, "a%3Fb", "add", "1").await,
        400,
        "ERR_BAD_REQUEST",
    )
    .await;
    assert!(
        message.starts_with("invalid request: invalid actorId"),
        "{message}"
    );
    let unknown = client
        .put(sidecar.url("/v1.0/actors/Nobody/1/method/x"))
        .send()
        .await
        .unwrap();
    let message = assert_dapr_error(unknown, 404, "ERR_ACTOR_NO_ADDRESS").await;
    assert_eq!(message, "did not find address for actor 'Nobody||1'");
    // An id with a space reaches the app and its state.
    assert_eq!(
        call(&sidecar, "user%207", "add", "2")
            .await
            .text()
            .await
            .unwrap(),
        "2"
    );
    let state = client
        .get(actor_url(&sidecar, "user%207", "state/count"))
        .send()
        .await
        .unwrap();
    assert_eq!(state.text().await.unwrap(), "2");
    // State is written only where the actor is active.
    let inactive = client
        .post(actor_url(&sidecar, "never-called", "state"))
        .json(&json!([{"operation": "upsert", "request": {"key": "k", "value": 1}}]))
        .send()
        .await
        .unwrap();
    assert_dapr_error(inactive, 400, "ERR_ACTOR_INSTANCE_MISSING").await;
    assert_dapr_error(
        client
            .post(actor_url(&sidecar, "1", "state"))
            .body("{")
            .send()
            .await
            .unwrap(),
        400,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    assert_eq!(call(&sidecar, "1", "add", "1").await.status(), 200);
    let unknown_operation = client
        .post(actor_url(&sidecar, "1", "state"))
        .json(&json!([{"operation": "merge", "request": {"key": "k"}}]))
        .send()
        .await
        .unwrap();
    assert_dapr_error(unknown_operation, 500, "ERR_ACTOR_STATE_TRANSACTION_SAVE").await;
    // Reminders: only for hosted types, with readable times.
    let not_hosted = client
        .put(sidecar.url("/v1.0/actors/Nobody/1/reminders/r"))
        .json(&json!({"dueTime": "1s"}))
        .send()
        .await
        .unwrap();
    assert_dapr_error(not_hosted, 403, "ERR_ACTOR_REMINDER_NON_HOSTED").await;
    for (body, expected) in [
        (json!({"period": "soon"}), "invalid reminder period"),
        (json!({"period": "R0/PT1S"}), "zero repetitions"),
        (json!({"dueTime": "P1M"}), "years and months"),
        (
            json!({"period": "1s", "ttl": "2020-01-01T00:00:00Z"}),
            "already expired",
        ),
    ] {
        let response = client
            .put(actor_url(&sidecar, "1", "reminders/r"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let message = assert_dapr_error(response, 500, "ERR_ACTOR_REMINDER_CREATE").await;
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_dapr_error(
        client
            .put(actor_url(&sidecar, "1", "timers/t"))
            .json(&json!({"period": "x"}))
            .send()
            .await
            .unwrap(),
        500,
        "ERR_ACTOR_TIMER_CREATE",
    )
    .await;
    sidecar.stop().await;

    // Without an actor state store, state has nowhere to go.
    let resources = TestResources::new();
    std::fs::remove_file(resources.resources.path().join("statestore.yaml")).unwrap();
    let no_store = start_host(
        resources.config("counter-no-store", Some(app_address.port())),
        &app,
    )
    .await;
    let message = assert_dapr_error(
        client
            .get(actor_url(&no_store, "1", "state/k"))
            .send()
            .await
            .unwrap(),
        500,
        "ERR_ACTOR_RUNTIME_NOT_FOUND",
    )
    .await;
    assert!(message.contains("actorStateStore"), "{message}");
    no_store.stop().await;
}

#[tokio::test]
async fn actors_spread_over_the_hosting_sidecars_and_are_reached_from_any() {
    let data = tempfile::tempdir().unwrap();
    let (one_address, one, _one_events) = start_actor_app("one", "1h").await;
    let (two_address, two, _two_events) = start_actor_app("two", "1h").await;
    let host_one = start_host(
        config("counter-one", Some(one_address.port()), data.path()),
        &one,
    )
    .await;
    let host_two = start_host(
        config("counter-two", Some(two_address.port()), data.path()),
        &two,
    )
    .await;
    let caller = RunningSidecar::start(config("actor-caller", None, data.path())).await;

    let mut placed: HashMap<String, String> = HashMap::new();
    for id in 0..24 {
        let id = id.to_string();
        let response = call(&caller, &id, "whoami", "").await;
        assert_eq!(response.status(), 200);
        placed.insert(id, response.text().await.unwrap());
    }
    let on_one = placed.values().filter(|host| *host == "one").count();
    assert!(
        (1..24).contains(&on_one),
        "both hosts get actors: {placed:?}"
    );
    // Every sidecar sends an actor to the same host, every time.
    for (id, host) in &placed {
        for via in [&caller, &host_one, &host_two] {
            let response = call(via, id, "whoami", "").await;
            assert_eq!(&response.text().await.unwrap(), host, "actor {id}");
        }
    }
    // A call through a peer keeps the count in one place, and its errors
    // come back as the hosting sidecar gave them.
    let id = placed.iter().find(|(_, host)| *host == "two").unwrap().0;
    assert_eq!(
        call(&caller, id, "add", "3").await.text().await.unwrap(),
        "3"
    );
    assert_eq!(
        call(&host_one, id, "add", "4").await.text().await.unwrap(),
        "7"
    );
    let message = assert_dapr_error(
        call(&caller, id, "fail", "").await,
        500,
        "ERR_ACTOR_INVOKE_METHOD",
    )
    .await;
    assert!(message.ends_with("(500) boom"), "{message}");

    // Over gRPC, from the caller's sidecar.
    let mut grpc = client(&caller).await;
    let answer = grpc
        .invoke_actor(pb::InvokeActorRequest {
            actor_type: "Counter".into(),
            actor_id: id.clone(),
            method: "add".into(),
            data: b"1".to_vec(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.data, b"8");
    let failed = grpc
        .invoke_actor(pb::InvokeActorRequest {
            actor_type: "Counter".into(),
            actor_id: id.clone(),
            method: "fail".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Internal, "{failed:?}");
    // When a host stops, its actors move to the other one.
    let moved = placed
        .iter()
        .find(|(_, host)| *host == "one")
        .unwrap()
        .0
        .clone();
    host_one.stop().await;
    // A stopping sidecar deactivates its actors.
    let deactivated = one.deactivated.lock().unwrap().clone();
    for (id, host) in &placed {
        assert_eq!(
            deactivated.contains(id),
            host == "one",
            "actor {id} on {host}"
        );
    }
    test_support::wait_until(
        "the stopped host's actors move",
        Duration::from_secs(10),
        || {
            let request = call(&caller, &moved, "whoami", "");
            async move { request.await.text().await.unwrap() == "two" }
        },
    )
    .await;
    for id in placed.keys() {
        assert_eq!(
            call(&caller, id, "whoami", "").await.text().await.unwrap(),
            "two"
        );
    }
    let deactivated_before = two.deactivated.lock().unwrap().len();
    assert_eq!(
        deactivated_before, 0,
        "an hour's idle timeout, and no host came"
    );
    // When one comes (back) that placement prefers for some, the other
    // deactivates those (its idle timeout is an hour) and they move.
    let host_one = start_host(
        config("counter-one", Some(one_address.port()), data.path()),
        &one,
    )
    .await;
    let back_on_one = || async {
        let mut back = Vec::new();
        for id in placed.keys() {
            let host = call(&caller, id, "whoami", "").await.text().await.unwrap();
            if host == "one" {
                back.push(id.clone());
            }
        }
        back
    };
    // (The caller sees the new host once its lookup, cached for a second,
    // is renewed.)
    test_support::wait_until(
        "the caller places actors on the new host",
        Duration::from_secs(10),
        || async { !back_on_one().await.is_empty() },
    )
    .await;
    let back = back_on_one().await;
    assert!(!back.is_empty() && back.len() < placed.len(), "{back:?}");
    test_support::wait_until(
        "the actors placed on the new host are deactivated on the old one",
        Duration::from_secs(10),
        || {
            let deactivated = two.deactivated.lock().unwrap().clone();
            let done = back.iter().all(|id| deactivated.contains(id));
            async move { done }
        },
    )
    .await;
    let deactivated = two.deactivated.lock().unwrap().clone();
    assert!(
        deactivated.iter().all(|id| back.contains(id)),
        "only the moved actors: {deactivated:?}, moved {back:?}"
    );
    host_one.stop().await;
    caller.stop().await;
    host_two.stop().await;
}

#[tokio::test]
async fn the_grpc_actor_api_serves_state_and_reminders() {
    let CounterHost {
        data: _data,
        app_address: _,
        app: _,
        mut events,
        sidecar,
    } = start_counter_host("counter-grpc").await;
    let mut grpc = client(&sidecar).await;
    let key = |id: &str| pb::GetActorStateRequest {
        actor_type: "Counter".into(),
        actor_id: id.into(),
        key: "count".into(),
    };
    let transaction = |id: &str, value: &[u8]| pb::ExecuteActorStateTransactionRequest {
        actor_type: "Counter".into(),
        actor_id: id.into(),
        operations: vec![pb::TransactionalActorStateOperation {
            operation_type: "upsert".into(),
            key: "count".into(),
            value: Some(prost_types::Any {
                type_url: String::new(),
                value: value.to_vec(),
            }),
            metadata: HashMap::new(),
        }],
    };
    let missing = grpc
        .execute_actor_state_transaction(transaction("g", b"41"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Internal);
    assert_eq!(missing.message(), "actor instance is missing");
    // Activate it, then write and read.
    assert_eq!(call(&sidecar, "g", "add", "1").await.status(), 200);
    grpc.execute_actor_state_transaction(transaction("g", b"41"))
        .await
        .unwrap();
    let state = grpc.get_actor_state(key("g")).await.unwrap().into_inner();
    assert_eq!(state.data, b"41");
    assert_eq!(
        call(&sidecar, "g", "add", "1").await.text().await.unwrap(),
        "42"
    );
    let empty = grpc
        .get_actor_state(key("nobody"))
        .await
        .unwrap()
        .into_inner();
    assert!(empty.data.is_empty());

    // Reminders: register, read, list, fire, delete by type.
    let reminder = |name: &str, due: &str| pb::RegisterActorReminderRequest {
        actor_type: "Counter".into(),
        actor_id: "g".into(),
        name: name.into(),
        due_time: due.into(),
        data: br#"{"via":"grpc"}"#.to_vec(),
        ..Default::default()
    };
    grpc.register_actor_reminder(reminder("soon", "0s"))
        .await
        .unwrap();
    grpc.register_actor_reminder(reminder("later", "1h"))
        .await
        .unwrap();
    let seen = next_seen(&mut events, "remind").await;
    assert_eq!(seen.name, "soon");
    assert_eq!(seen.body["data"], json!({"via": "grpc"}));
    let later = grpc
        .get_actor_reminder(pb::GetActorReminderRequest {
            actor_type: "Counter".into(),
            actor_id: "g".into(),
            name: "later".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later.due_time.as_deref(), Some("1h"));
    let data = later.data.unwrap();
    assert_eq!(
        data.type_url,
        "type.googleapis.com/google.protobuf.BytesValue"
    );
    let listed = grpc
        .list_actor_reminders(pb::ListActorRemindersRequest {
            actor_type: "Counter".into(),
            actor_id: Some("g".into()),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.reminders.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["later"]);
    grpc.unregister_actor_reminders_by_type(pb::UnregisterActorRemindersByTypeRequest {
        actor_type: "Counter".into(),
        actor_id: None,
    })
    .await
    .unwrap();
    let gone = grpc
        .get_actor_reminder(pb::GetActorReminderRequest {
            actor_type: "Counter".into(),
            actor_id: "g".into(),
            name: "later".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let not_hosted = grpc
        .register_actor_reminder(pb::RegisterActorReminderRequest {
            actor_type: "Nobody".into(),
            ..reminder("x", "1s")
        })
        .await
        .unwrap_err();
    assert_eq!(not_hosted.code(), tonic::Code::PermissionDenied);
    let bad_id = grpc
        .invoke_actor(pb::InvokeActorRequest {
            actor_type: "Counter".into(),
            actor_id: "a/b".into(),
            method: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), tonic::Code::InvalidArgument);

    // The metadata API shows the runtime.
    let metadata = grpc
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    let runtime = metadata.actor_runtime.unwrap();
    assert!(runtime.host_ready);
    assert_eq!(runtime.active_actors[0].r#type, "Counter");
    sidecar.stop().await;
}

#[tokio::test]
async fn with_reentrancy_a_call_chain_reenters_its_actor_up_to_its_depth() {
    let data = tempfile::tempdir().unwrap();
    let (address, app, _events) = start_reentrant_app("one", "1h", Some(2)).await;
    let sidecar = start_host(
        config("counter-reentrant", Some(address.port()), data.path()),
        &app,
    )
    .await;
    let answer = call(&sidecar, "r", "call-self", "whoami").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "inner:200:one");
    // Three deep is one more than maxStackDepth 2.
    let answer = call(&sidecar, "r", "call-self", "call-self,whoami").await;
    let text = answer.text().await.unwrap();
    assert!(text.starts_with("inner:200:inner:500:"), "{text}");
    assert!(text.contains("ERR_ACTOR_STACK_DEPTH"), "{text}");
    // Another chain still waits for its turn: the actor is free again.
    assert_eq!(
        call(&sidecar, "r", "whoami", "")
            .await
            .text()
            .await
            .unwrap(),
        "one"
    );
    sidecar.stop().await;

    // Without reentrancy the inner call waits for the outer one's turn,
    // which it never gets within the invoke timeout.
    let (address, app, _events) = start_reentrant_app("two", "1h", None).await;
    let mut config = config("counter-turns", Some(address.port()), data.path());
    config.invoke_timeout = Duration::from_secs(1);
    let sidecar = start_host(config, &app).await;
    let answer = call(&sidecar, "r", "call-self", "whoami").await;
    let text = answer.text().await.unwrap();
    assert!(
        !text.starts_with("inner:200"),
        "the inner call entered the busy actor: {text}"
    );
    // A call the app never answers ends at the invoke timeout, and gives
    // the actor's turn back.
    let message = assert_dapr_error(
        call(&sidecar, "r", "hang", "").await,
        500,
        "ERR_ACTOR_INVOKE_METHOD",
    )
    .await;
    assert!(message.contains("did not answer in time"), "{message}");
    assert_eq!(
        call(&sidecar, "r", "whoami", "")
            .await
            .text()
            .await
            .unwrap(),
        "two"
    );
    sidecar.stop().await;
}
