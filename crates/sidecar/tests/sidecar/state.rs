//! The state API's behaviour (Dapr's semantics), as one suite that runs
//! against each backend; plus secrets, metadata and component loading.

use std::path::Path;
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use test_support::sidecar::*;

/// Every behaviour of the state API, against `store` on `sidecar`.
async fn state_suite(sidecar: &RunningSidecar, store: &str) {
    let client = Client::new();
    let url = |path: &str| sidecar.url(&format!("/v1.0/state/{store}{path}"));
    let save = |body: Value| client.post(url("")).json(&body).send();
    let get = |key: &str| client.get(url(&format!("/{key}"))).send();
    let bulk_get = |request: Value| {
        let sent = client.post(url("/bulk")).json(&request).send();
        async move { sent.await.unwrap().json::<Value>().await.unwrap() }
    };

    // Save and get: the value comes back as sent, with an ETag.
    let response = save(json!([
        {"key": "order", "value": {"id": 7, "items": ["tea"]}},
        {"key": "greeting", "value": "hello"},
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), 204);
    let response = get("order").await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let value: Value = response.json().await.unwrap();
    assert_eq!(value, json!({"id": 7, "items": ["tea"]}));
    assert_eq!(
        get("greeting").await.unwrap().text().await.unwrap(),
        "\"hello\""
    );

    // A missing key is 204 with no body.
    let missing = get("nothing-here").await.unwrap();
    assert_eq!(missing.status(), 204);
    assert!(missing.bytes().await.unwrap().is_empty());

    // last-write with the right etag succeeds and changes the etag.
    let response = save(json!([{"key": "order", "value": 2, "etag": etag}]))
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let new_etag = get("order").await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(new_etag, etag);
    // A stale etag is a conflict; a malformed one is a bad request.
    assert_dapr_error(
        save(json!([{"key": "order", "value": 3, "etag": etag}]))
            .await
            .unwrap(),
        409,
        "ERR_STATE_SAVE",
    )
    .await;
    assert_dapr_error(
        save(json!([{"key": "order", "value": 3, "etag": "not-an-etag"}]))
            .await
            .unwrap(),
        400,
        "ERR_STATE_SAVE",
    )
    .await;
    assert_eq!(get("order").await.unwrap().text().await.unwrap(), "2");

    // first-write without an etag only creates.
    let first = |key: &str, value: i32| json!([{"key": key, "value": value, "options": {"concurrency": "first-write"}}]);
    assert_eq!(save(first("fresh", 1)).await.unwrap().status(), 204);
    assert_dapr_error(
        save(first("fresh", 2)).await.unwrap(),
        409,
        "ERR_STATE_SAVE",
    )
    .await;
    assert_eq!(get("fresh").await.unwrap().text().await.unwrap(), "1");

    // Malformed bodies.
    let response = client.post(url("")).body("{not json").send().await.unwrap();
    assert_dapr_error(response, 400, "ERR_MALFORMED_REQUEST").await;
    assert_dapr_error(
        save(json!([{"key": "x", "value": 1, "options": {"concurrency": "sometimes"}}]))
            .await
            .unwrap(),
        400,
        "ERR_MALFORMED_REQUEST",
    )
    .await;

    // Delete honours If-Match.
    let etag = get("greeting").await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let response = client
        .delete(url("/greeting"))
        .header("if-match", "987654321")
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 409, "ERR_STATE_SAVE").await;
    let response = client
        .delete(url("/greeting"))
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(get("greeting").await.unwrap().status(), 204);

    // Bulk get: present keys with data and etag, missing keys bare.
    let bulk = bulk_get(json!({"keys": ["order", "fresh", "absent"], "parallelism": 2})).await;
    assert_eq!(bulk[0]["key"], "order");
    assert_eq!(bulk[0]["data"], 2);
    assert!(bulk[0]["etag"].is_string());
    assert_eq!(bulk[1]["data"], 1);
    assert_eq!(bulk[2], json!({"key": "absent"}));

    // A transaction applies everything...
    let response = client
        .post(url("/transaction"))
        .json(&json!({"operations": [
            {"operation": "upsert", "request": {"key": "t1", "value": "a"}},
            {"operation": "upsert", "request": {"key": "t2", "value": "b"}},
            {"operation": "delete", "request": {"key": "fresh"}},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(get("t1").await.unwrap().text().await.unwrap(), "\"a\"");
    assert_eq!(get("fresh").await.unwrap().status(), 204);
    // ...or nothing: a stale etag in the last operation undoes the first.
    let stale = get("t2").await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        save(json!([{"key": "t2", "value": "b"}]))
            .await
            .unwrap()
            .status(),
        204
    );
    let response = client
        .post(url("/transaction"))
        .json(&json!({"operations": [
            {"operation": "upsert", "request": {"key": "t1", "value": "changed"}},
            {"operation": "delete", "request": {"key": "t2", "etag": stale}},
        ]}))
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 409, "ERR_STATE_SAVE").await;
    assert_eq!(get("t1").await.unwrap().text().await.unwrap(), "\"a\"");
    assert_eq!(get("t2").await.unwrap().text().await.unwrap(), "\"b\"");
    let response = client
        .post(url("/transaction"))
        .json(&json!({"operations": [{"operation": "merge", "request": {"key": "t1"}}]}))
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 400, "ERR_MALFORMED_REQUEST").await;

    // TTL: a key saved with one is read with its expiry time, as daprd
    // gives it (`metadata.ttlExpireTime`, RFC 3339 UTC), alone and in a
    // bulk read; a key saved without one has none.
    let saved_at = chrono::Utc::now();
    let response =
        save(json!([{"key": "lasting", "value": 2, "metadata": {"ttlInSeconds": "3600"}}]))
            .await
            .unwrap();
    assert_eq!(response.status(), 204);
    let lasting = get("lasting").await.unwrap();
    let expiry = lasting.headers()["metadata.ttlexpiretime"]
        .to_str()
        .unwrap()
        .to_string();
    let expires_at = chrono::DateTime::parse_from_rfc3339(&expiry).expect("RFC 3339");
    assert!(expiry.ends_with('Z'), "{expiry}");
    let ahead = (expires_at.with_timezone(&chrono::Utc) - saved_at).num_seconds();
    assert!(
        (3590..=3601).contains(&ahead),
        "{expiry} is {ahead} s after the save"
    );
    assert!(
        get("order")
            .await
            .unwrap()
            .headers()
            .get("metadata.ttlexpiretime")
            .is_none()
    );
    let bulk = bulk_get(json!({"keys": ["lasting", "order"]})).await;
    let by_key = |key: &str| {
        bulk.as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_key("lasting")["metadata"]["ttlExpireTime"],
        expiry,
        "{bulk}"
    );
    assert!(by_key("order").get("metadata").is_none(), "{bulk}");

    // TTL: the key disappears after ttlInSeconds.
    let response = save(json!([{"key": "brief", "value": 1, "metadata": {"ttlInSeconds": "1"}}]))
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(get("brief").await.unwrap().status(), 200);
    // The store's own clock decides (Redis expires keys itself), so this
    // waits on the real clock, for the key to go.
    test_support::wait_until("the key expires", Duration::from_secs(5), || async {
        get("brief").await.unwrap().status() == 204
    })
    .await;

    // An unknown store.
    let response = client
        .get(sidecar.url("/v1.0/state/no-such-store/k"))
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 400, "ERR_STATE_STORE_NOT_FOUND").await;
}

#[tokio::test]
async fn sqlite_store_follows_dapr_state_semantics() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("state-app", None, data.path())).await;
    state_suite(&sidecar, "statestore").await;
    sidecar.stop().await;
}

/// `state.in-memory`: the same semantics; each component has a store of
/// its own, and nothing of it is left after the sidecar stops.
#[tokio::test]
async fn in_memory_store_follows_dapr_state_semantics() {
    let resources = TestResources::new();
    for name in ["memory", "other"] {
        component_file(resources.resources.path(), name, "state.in-memory", &[]);
    }
    let sidecar = RunningSidecar::start(resources.config("memory-app", None)).await;
    state_suite(&sidecar, "memory").await;
    let client = Client::new();
    let read = |store: &str| {
        client
            .get(sidecar.url(&format!("/v1.0/state/{store}/order")))
            .send()
    };
    assert_eq!(read("memory").await.unwrap().status(), 200);
    assert_eq!(
        read("other").await.unwrap().status(),
        204,
        "stores are apart"
    );
    sidecar.stop().await;
    let again = RunningSidecar::start(resources.config("memory-app", None)).await;
    let after = Client::new()
        .get(again.url("/v1.0/state/memory/order"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 204, "an in-memory store starts empty");
    again.stop().await;
}

/// `state.sqlite` honours Dapr's `busyTimeout`: while another process holds
/// the file's write lock, a save waits that long (3 s here, longer than
/// the 2 s default) and then fails with "database is locked", not with the
/// store's 20 s timeout; once the lock goes, saves succeed again.
#[tokio::test]
async fn sqlite_waits_busy_timeout_for_another_writer_then_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.db");
    let (sidecar, _dirs) = sidecar_with_component(
        "busy-app",
        "shared",
        "state.sqlite",
        &[
            ("connectionString", file.to_str().unwrap()),
            ("busyTimeout", "3s"),
        ],
    )
    .await;
    assert_eq!(save_one_key(&sidecar, "shared").await.status(), 204);

    // Another writer (as another sidecar would be) holds the lock.
    let other = rusqlite::Connection::open(&file).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (message, waited) = failed_save(&sidecar, "shared").await;
    assert!(message.contains("database is locked"), "{message}");
    assert!(waited >= Duration::from_secs(3), "{waited:?}");

    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(save_one_key(&sidecar, "shared").await.status(), 204);
    sidecar.stop().await;
}

#[tokio::test]
async fn state_persists_across_a_restart_with_app_id_prefixed_keys() {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    let state_db = data.path().join("persist.db");
    write_resources(
        resources.path(),
        &state_db,
        &data.path().join("secrets.json"),
    );
    let with_resources = || {
        let mut c = config("keeper", None, data.path());
        c.resources_paths = vec![resources.path().to_path_buf()];
        c
    };
    let client = Client::new();

    let sidecar = RunningSidecar::start(with_resources()).await;
    let response = client
        .post(sidecar.url("/v1.0/state/statestore"))
        .json(&json!([{"key": "survivor", "value": {"n": 42}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    sidecar.stop().await;

    // Stored as Dapr stores it: `<appId>||<key>`.
    let db = rusqlite::Connection::open(&state_db).unwrap();
    let keys: Vec<String> = db
        .prepare("SELECT key FROM state")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys, ["keeper||survivor"]);

    let restarted = RunningSidecar::start(with_resources()).await;
    let value: Value = client
        .get(restarted.url("/v1.0/state/statestore/survivor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(value, json!({"n": 42}));
    restarted.stop().await;
}

#[tokio::test]
async fn secrets_metadata_and_component_scopes() {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    write_resources(
        resources.path(),
        &data.path().join("s.db"),
        &data.path().join("secrets.json"),
    );
    let mut c = config("reader", Some(1234), data.path());
    c.resources_paths = vec![resources.path().to_path_buf()];
    let sidecar = RunningSidecar::start(c).await;
    let client = Client::new();
    let secret = get_json(sidecar.url("/v1.0/secrets/localsecrets/db:password")).await;
    assert_eq!(secret, json!({"db:password": "p4ss"}));
    let bulk = get_json(sidecar.url("/v1.0/secrets/localsecrets/bulk")).await;
    assert_eq!(bulk["token"], json!({"token": "t0k"}));
    assert_eq!(bulk["db:ports:1"], json!({"db:ports:1": "5433"}));
    assert_dapr_error(
        client
            .get(sidecar.url("/v1.0/secrets/localsecrets/missing"))
            .send()
            .await
            .unwrap(),
        500,
        "ERR_SECRET_GET",
    )
    .await;
    assert_dapr_error(
        client
            .get(sidecar.url("/v1.0/secrets/nope/x"))
            .send()
            .await
            .unwrap(),
        400,
        "ERR_SECRET_STORE_NOT_FOUND",
    )
    .await;

    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    assert_eq!(metadata["id"], "reader");
    assert!(
        metadata["runtimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("dapr-wasm-")
    );
    assert_eq!(metadata["appConnectionProperties"]["port"], 1234);
    let mut names: Vec<&str> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["localsecrets", "statestore"],
        "scoped-out component not loaded"
    );
    let response = client
        .put(sidecar.url("/v1.0/metadata/owner"))
        .body("team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    assert_eq!(metadata["extended"]["owner"], "team-a");

    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let response = client.get(sidecar.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 204);
    }
    sidecar.stop().await;
}

/// A name no earlier run used, so runs never see each other's data.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A sidecar for `app_id` whose one component is `name`, of type `kind`;
/// its data and resources folders last as long as the returned pair.
pub(crate) async fn sidecar_with_component(
    app_id: &str,
    name: &str,
    kind: &str,
    metadata: &[(&str, &str)],
) -> (RunningSidecar, [tempfile::TempDir; 2]) {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    component_file(resources.path(), name, kind, metadata);
    let mut c = config(app_id, None, data.path());
    c.resources_paths = vec![resources.path().to_path_buf()];
    (RunningSidecar::start(c).await, [data, resources])
}

/// Saves `{"key": "k", "value": 1}` to `store` of `sidecar`.
async fn save_one_key(sidecar: &RunningSidecar, store: &str) -> reqwest::Response {
    Client::new()
        .post(sidecar.url(&format!("/v1.0/state/{store}")))
        .json(&json!([{ "key": "k", "value": 1 }]))
        .send()
        .await
        .unwrap()
}

/// Saves one key to `store` and expects a store failure, as daprd answers
/// one (500 `ERR_STATE_SAVE`); gives its message and how long it took.
async fn failed_save(sidecar: &RunningSidecar, store: &str) -> (String, Duration) {
    let started = std::time::Instant::now();
    let response = save_one_key(sidecar, store).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_STATE_SAVE", "{body}");
    let message = body["message"].as_str().unwrap_or_default().to_string();
    (message, waited)
}

pub(crate) fn component_file(dir: &Path, name: &str, kind: &str, metadata: &[(&str, &str)]) {
    let items: String = metadata
        .iter()
        .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
        .collect();
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n\
             spec:\n  type: {kind}\n  version: v1\n  metadata:\n{items}"
        ),
    )
    .unwrap();
}

/// Under `CI`, the Redis, PostgreSQL and MariaDB suites must be able to
/// run: this fails there when a server is missing, even in a plain `cargo
/// test` that leaves those suites ignored.
#[test]
fn under_ci_the_state_servers_are_there() {
    test_support::services::require_services_under_ci(&[
        ("Redis", "127.0.0.1:6379"),
        ("PostgreSQL", "127.0.0.1:5432"),
        ("MariaDB", "127.0.0.1:3306"),
    ]);
}

#[tokio::test]
#[ignore = "needs MariaDB on 127.0.0.1:3306 (scripts/test.sh starts it and runs this)"]
async fn mysql_store_follows_dapr_state_semantics() {
    use mysql_async::prelude::Queryable;
    test_support::require_service("MariaDB", "127.0.0.1:3306");
    let schema = unique("dapr_state");
    // Go's DSN, as Dapr's MySQL examples write it.
    let (sidecar, _dirs) = sidecar_with_component(
        "mysql-suite",
        "mysqlstore",
        "state.mysql",
        &[
            (
                "connectionString",
                "root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true",
            ),
            ("schemaName", &schema),
        ],
    )
    .await;
    state_suite(&sidecar, "mysqlstore").await;
    // Keys are compared byte for byte (MySQL's default collation would
    // make `Order` and `order` one key).
    let client = Client::new();
    let saved = client
        .post(sidecar.url("/v1.0/state/mysqlstore"))
        .json(&json!([{"key": "Case", "value": 1}, {"key": "case", "value": 2}]))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 204);
    let read = client
        .get(sidecar.url("/v1.0/state/mysqlstore/Case"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), "1");
    sidecar.stop().await;

    // The schema and table were made; each key under the app's prefix.
    let mut admin = mysql_async::Conn::from_url("mysql://root@127.0.0.1:3306/")
        .await
        .unwrap();
    let count: Option<i64> = admin
        .query_first(format!(
            "SELECT count(*) FROM {schema}.state WHERE id = 'mysql-suite||order'"
        ))
        .await
        .unwrap();
    assert_eq!(count, Some(1));
    admin
        .query_drop(format!("DROP DATABASE {schema}"))
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Redis on 127.0.0.1:6379 (scripts/test.sh starts it and runs this)"]
async fn redis_store_follows_dapr_state_semantics() {
    test_support::require_service("Redis", "127.0.0.1:6379");
    let app_id = unique("redis-suite");
    let (sidecar, _dirs) = sidecar_with_component(
        &app_id,
        "redisstore",
        "state.redis",
        &[("redisHost", "127.0.0.1:6379"), ("redisPassword", "")],
    )
    .await;
    state_suite(&sidecar, "redisstore").await;
    sidecar.stop().await;

    // Dapr's layout: a hash with `data` and `version`; then clean up.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{app_id}||*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(keys.contains(&format!("{app_id}||order")), "{keys:?}");
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{app_id}||order"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(fields.len(), 2);
    assert!(fields.contains(&"data".to_string()) && fields.contains(&"version".to_string()));
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn postgres_store_follows_dapr_state_semantics() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let connection_string = POSTGRES;
    let table = unique("state_suite");
    let (sidecar, _dirs) = sidecar_with_component(
        "pg-suite",
        "pgstore",
        "state.postgresql",
        &[
            ("connectionString", connection_string),
            ("tableName", &table),
        ],
    )
    .await;
    state_suite(&sidecar, "pgstore").await;
    sidecar.stop().await;

    let (client, connection) = tokio_postgres::connect(connection_string, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE key = 'pg-suite||order'"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // Each write purges expired rows: through this index, not a scan.
    let index = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $2",
            &[&table, &format!("{table}_expires")],
        )
        .await
        .unwrap();
    assert_eq!(index.get::<_, i64>(0), 1, "no index on {table}.expires_ms");
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// The test PostgreSQL server.
pub(crate) const POSTGRES: &str =
    "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=postgres";

/// A sidecar for `app_id` whose store `pgstore` is on a table of its own
/// (the first name returned), its connections named by the second in
/// pg_stat_activity, told apart from every other; `metadata` adds to the
/// component's.
async fn postgres_pool_sidecar(
    app_id: &str,
    metadata: &[(&str, &str)],
) -> (RunningSidecar, [tempfile::TempDir; 2], String, String) {
    let table = unique("state_pool");
    let pool = unique("pool");
    let connection_string = format!("{POSTGRES} application_name={pool}");
    let mut component = vec![
        ("connectionString", connection_string.as_str()),
        ("tableName", table.as_str()),
    ];
    component.extend_from_slice(metadata);
    let (sidecar, dirs) =
        sidecar_with_component(app_id, "pgstore", "state.postgresql", &component).await;
    (sidecar, dirs, table, pool)
}

/// A client of the test PostgreSQL server, of its own.
async fn postgres_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// How many connections named `pool` pg_stat_activity shows that meet
/// `condition`.
async fn pool_sessions(observer: &tokio_postgres::Client, pool: &str, condition: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND {condition}"
    );
    let row = observer.query_one(&sql, &[&pool]).await.unwrap();
    row.get::<_, i64>(0)
}

/// A row lock held outside the sidecar (another app's open transaction)
/// stalls only the write that waits for it: other keys are read and written
/// on the pool's other connection meanwhile. A write that gave up waiting
/// (the store timeout) does not land once the lock goes, and leaves no
/// connection stuck behind it; the pool never opens more than `maxConns`.
#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn postgres_a_locked_row_stalls_only_the_writes_waiting_for_it() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let (sidecar, _dirs, table, pool) = postgres_pool_sidecar(
        "pg-locks",
        &[
            ("maxConns", "2"),
            // Long enough for the first part's read and write of `b`
            // while the write of `a` waits; the second part waits it out.
            ("timeout", "5s"),
        ],
    )
    .await;
    let http = Client::new();
    let save = |key: &str, value: i64| {
        http.post(sidecar.url("/v1.0/state/pgstore"))
            .json(&json!([{ "key": key, "value": value }]))
            .send()
    };
    let read = |key: &str| {
        let request = http.get(sidecar.url(&format!("/v1.0/state/pgstore/{key}")));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(save("a", 1).await.unwrap().status(), 204);
    assert_eq!(save("b", 1).await.unwrap().status(), 204);

    let (mut other_app, observer) = (postgres_client().await, postgres_client().await);
    let (observer, pool) = (&observer, pool.as_str());
    // How many of the sidecar's connections are in each state.
    let sessions = move |condition: &'static str| pool_sessions(observer, pool, condition);
    let until_sessions = |what: &'static str, condition: &'static str, count: i64| {
        test_support::wait_until(what, Duration::from_secs(10), move || async move {
            sessions(condition).await == count
        })
    };
    let lock_a = format!("SELECT 1 FROM {table} WHERE key = 'pg-locks||a' FOR UPDATE");

    // The other app locks `a`; the sidecar's write of `a` waits for it.
    let lock = other_app.transaction().await.unwrap();
    lock.execute(&lock_a, &[]).await.unwrap();
    let waiting_write = tokio::spawn(save("a", 2));
    until_sessions(
        "the write of a waits for the lock",
        "wait_event_type = 'Lock'",
        1,
    )
    .await;
    assert_eq!(read("b").await, (200, "1".into()));
    assert_eq!(save("b", 2).await.unwrap().status(), 204);
    lock.rollback().await.unwrap();
    assert_eq!(waiting_write.await.unwrap().unwrap().status(), 204);
    assert_eq!(read("a").await, (200, "2".into()));

    // Locked past the store timeout: the write fails, and both of the
    // pool's connections still serve other keys at once.
    let lock = other_app.transaction().await.unwrap();
    lock.execute(&lock_a, &[]).await.unwrap();
    let gave_up = save("a", 3).await.unwrap();
    assert_eq!(gave_up.status(), 500);
    let body: Value = gave_up.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_STATE_SAVE", "{body}");
    let (read_b, save_b) = tokio::join!(read("b"), save("b", 3));
    assert_eq!(read_b, (200, "2".into()));
    assert_eq!(save_b.unwrap().status(), 204);
    lock.rollback().await.unwrap();
    // The connection that gave up was closed: its server session ends once
    // the lock goes, with what it was running rolled back.
    until_sessions("the abandoned write's session ends", "state <> 'idle'", 0).await;
    assert_eq!(read("a").await, (200, "2".into()));
    let open = sessions("true").await;
    assert!((1..=2).contains(&open), "{open} connections, maxConns is 2");

    sidecar.stop().await;
    other_app
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// A connection left idle for `connectionMaxIdleTime` is closed (a burst's
/// connections do not hold the server's slots for good), and the next call
/// opens a new one.
#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn postgres_closes_connections_left_idle() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let (sidecar, _dirs, table, pool) =
        postgres_pool_sidecar("pg-idle", &[("connectionMaxIdleTime", "2s")]).await;
    let observer = postgres_client().await;
    let connections = || pool_sessions(&observer, &pool, "true");
    assert_eq!(save_one_key(&sidecar, "pgstore").await.status(), 204);
    assert!(connections().await >= 1);
    test_support::wait_until(
        "the idle connection is closed",
        Duration::from_secs(10),
        || async { connections().await == 0 },
    )
    .await;
    assert_eq!(save_one_key(&sidecar, "pgstore").await.status(), 204);
    assert_eq!(connections().await, 1);

    sidecar.stop().await;
    observer
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

/// A Redis that stops answering (frozen with SIGSTOP, so its connections
/// stay open) must not hang the state API: the call fails after the
/// component's `timeout` with a clear error, and works again once Redis
/// resumes. One that answers a second late is not a failure.
#[tokio::test]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn a_frozen_store_gives_an_error_instead_of_a_hang() {
    let redis = test_support::RedisServer::start();
    let port = redis.port();
    let host = format!("127.0.0.1:{port}");
    let (sidecar, _dirs) = sidecar_with_component(
        "frozen-store",
        "frozen",
        "state.redis",
        &[("redisHost", &host), ("timeout", "2s")],
    )
    .await;
    let save = || save_one_key(&sidecar, "frozen");
    assert_eq!(save().await.status(), 204);

    let pid = redis.pid().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, pid.as_str()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // A Redis that answers a second late is slow, not down: within Dapr's
    // `readTimeout` (3 s; the Redis client's own default is 500 ms). The
    // save taking the second shows it waited on the frozen Redis.
    signal("-STOP");
    let started = std::time::Instant::now();
    let (late, ()) = tokio::join!(save(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal("-CONT");
    });
    assert_eq!(late.status(), 204);
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Frozen past the component's `timeout`: an error.
    signal("-STOP");
    let (message, waited) = failed_save(&sidecar, "frozen").await;
    signal("-CONT");
    // The component's timeout, not the default (20 s).
    assert!(
        message.contains("frozen") && message.contains("did not answer within 2s"),
        "{message}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < sidecar::state::DEFAULT_STORE_TIMEOUT,
        "{waited:?}"
    );
    // Resumed: it works again.
    test_support::wait_until(
        "the store answers again",
        Duration::from_secs(5),
        || async { save().await.status() == 204 },
    )
    .await;
    sidecar.stop().await;
}

/// `secretstores.local.env` on the test's own environment: cargo and
/// nextest set `CARGO_PKG_NAME` for every test they run.
#[tokio::test]
async fn the_env_secret_store_gives_prefixed_variables_without_the_prefix() {
    let package = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    let (sidecar, _dirs) = sidecar_with_component(
        "env-secrets",
        "envvars",
        "secretstores.local.env",
        &[("prefix", "CARGO_PKG_")],
    )
    .await;
    let client = Client::new();
    let read = |path: &str| {
        let sent = client
            .get(sidecar.url(&format!("/v1.0/secrets/envvars/{path}")))
            .send();
        async move { sent.await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(read("NAME").await, json!({"NAME": package}));
    // Not there: empty, as daprd's env store answers.
    assert_eq!(read("NO_SUCH_THING").await, json!({"NO_SUCH_THING": ""}));
    let bulk = read("bulk").await;
    assert_eq!(bulk["NAME"], json!({"NAME": package}));
    assert!(
        bulk.as_object()
            .unwrap()
            .keys()
            .all(|name| std::env::var(format!("CARGO_PKG_{name}")).is_ok()),
        "only CARGO_PKG_ variables, named without the prefix: {bulk}"
    );
    sidecar.stop().await;
}
