//! The events service: its store on SQLite, PostgreSQL and MariaDB (real
//! servers, a database of the test's own), and the service end to end
//! behind a real sidecar fed by Redis pub/sub, including events published
//! while it was down.

use std::net::SocketAddr;
use std::time::Duration;

use events::store::{Count, EventStore, open_url};
use events::{EventsArgs, ImageEvent};
use serde_json::{Value, json};
use sidecar::args::AppHealthConfig;
use test_support::sidecar::*;

fn image_event(time: &str, api: &str, status: u16) -> ImageEvent {
    ImageEvent {
        time: time.into(),
        api: api.into(),
        input_bytes: 1000,
        output_bytes: 500,
        milliseconds: 12.5,
        status,
        client: Some("127.0.0.1".into()),
    }
}

/// What every database must do: store once per id, page newest first,
/// count per API and status.
async fn store_suite(store: Box<dyn EventStore>) {
    let first = image_event("2026-11-28T10:00:00Z", "grayscale", 200);
    assert!(store.insert("a", &first).await.unwrap());
    assert!(
        store
            .insert("b", &image_event("2026-11-28T10:00:01Z", "classify", 200))
            .await
            .unwrap()
    );
    assert!(
        !store.insert("a", &first).await.unwrap(),
        "a redelivery is stored once"
    );
    assert!(
        store
            .insert("c", &image_event("2026-11-28T10:00:02Z", "grayscale", 400))
            .await
            .unwrap()
    );

    let (page, total) = store.page(2, 0).await.unwrap();
    assert_eq!(total, 3);
    let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["c", "b"], "newest first");
    let (rest, _) = store.page(2, 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "a");
    assert_eq!(rest[0].event, first, "stored as given");

    let count = |api: &str, status, count| Count {
        api: api.into(),
        status,
        count,
    };
    assert_eq!(
        store.summary().await.unwrap(),
        [
            count("classify", 200, 1),
            count("grayscale", 200, 1),
            count("grayscale", 400, 1)
        ]
    );
}

#[tokio::test]
async fn sqlite_keeps_events_once_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("events.db").display());
    store_suite(open_url(&url).await.unwrap()).await;
}

/// A database name no other test run uses.
fn unique_database() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("events_test_{}_{nanos}", std::process::id())
}

#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn postgresql_keeps_events_once_newest_first() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let admin_url = "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=postgres";
    let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = unique_database();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("postgres://postgres:postgres@127.0.0.1:5432/{name}");
    store_suite(open_url(&url).await.unwrap()).await;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs MariaDB on 127.0.0.1:3306 (scripts/test.sh starts it and runs this)"]
async fn mariadb_keeps_events_once_newest_first() {
    use mysql_async::prelude::Queryable;
    test_support::require_service("MariaDB", "127.0.0.1:3306");
    let mut admin = mysql_async::Conn::from_url("mysql://root@127.0.0.1:3306/")
        .await
        .unwrap();
    let name = unique_database();
    admin
        .query_drop(format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    store_suite(
        open_url(&format!("mariadb://root@127.0.0.1:3306/{name}"))
            .await
            .unwrap(),
    )
    .await;
    admin
        .query_drop(format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}

/// Starts the events service on `listener` with an SQLite file, reading
/// its URL from the sidecar's secret store as the demo does.
async fn start_events(
    listener: tokio::net::TcpListener,
    sidecar_port: u16,
) -> tokio::sync::oneshot::Sender<()> {
    use clap::Parser;
    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: EventsArgs,
    }
    let config = Command::parse_from([
        "events",
        "--dapr-http-port",
        &sidecar_port.to_string(),
        "--database-secret",
        "localsecrets/events-db",
    ])
    .args
    .validate()
    .unwrap();
    let store = events::store::open(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(events::serve(listener, config, store, async {
        let _ = stopped.await;
    }));
    stop
}

async fn publish(sidecar: &RunningSidecar, n: u64) {
    let event = json!({
        "time": format!("2026-11-28T10:00:{n:02}Z"), "api": "grayscale",
        "inputBytes": n, "outputBytes": 1, "milliseconds": 1.0, "status": 200,
    });
    let response = reqwest::Client::new()
        .post(sidecar.url("/v1.0/publish/pubsub/image-events"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn wait_for_total(app: SocketAddr, total: u64) -> Value {
    let url = format!("http://{app}/events?limit=100");
    wait_for_json("the events service lists every event", &url, |v| {
        v["total"] == total
    })
    .await
}

#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn events_published_while_the_service_is_down_arrive_once_it_is_back() {
    let redis = test_support::RedisServer::start();
    let resources = TestResources::new();
    let db = resources.data.path().join("events.db");
    // The database URL is a secret, as in the demo.
    let secrets = resources.data.path().join("secrets.json");
    let mut stored: Value = std::fs::read(&secrets)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}));
    stored["events-db"] = json!(format!("sqlite:{}", db.display()));
    std::fs::write(&secrets, stored.to_string()).unwrap();
    std::fs::write(
        resources.resources.path().join("pubsub.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n\
             spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n\
             \x20 - name: redisHost\n    value: \"127.0.0.1:{}\"\n",
            redis.port()
        ),
    )
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let mut config = resources.config("events", Some(app.port()));
    config.app_health = Some(AppHealthConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        threshold: 1,
    });
    let sidecar = RunningSidecar::start(config).await;
    let publisher = RunningSidecar::start(resources.config("web-port", None)).await;
    let stop = start_events(listener, sidecar.address.port()).await;

    publish(&publisher, 1).await;
    publish(&publisher, 2).await;
    let listed = wait_for_total(app, 2).await;
    assert_eq!(listed["events"][0]["inputBytes"], 2, "newest first");

    // Down: the sidecar stops taking events; the broker keeps them.
    let _ = stop.send(());
    wait_for_json(
        "the sidecar stops its subscriptions",
        &sidecar.url("/v1.0/metadata"),
        |m| m["subscriptions"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    for n in 3..=5 {
        publish(&publisher, n).await;
    }
    let listener = tokio::net::TcpListener::bind(app).await.unwrap();
    let _stop = start_events(listener, sidecar.address.port()).await;
    let listed = wait_for_total(app, 5).await;
    let summary: Value = reqwest::get(format!("http://{app}/events/summary"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["total"], 5, "{listed}");
    assert_eq!(
        summary["counts"][0],
        json!({"api": "grayscale", "status": 200, "count": 5})
    );
    publisher.stop().await;
    sidecar.stop().await;
}

#[test]
fn under_ci_mariadb_is_there() {
    test_support::services::require_services_under_ci(&[("MariaDB", "127.0.0.1:3306")]);
}
