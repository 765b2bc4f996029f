//! Output bindings to data stores, on the machine's servers, as Dapr's run
//! them: `bindings.postgresql` (`exec` with `rows-affected`, `query` rows
//! as JSON arrays, `params`, `close`, daprd's errors, over HTTP and gRPC,
//! and the Dapr bindings quickstart's flow: a cron binding triggering an
//! app that writes through it) and `bindings.redis` (`create` with a TTL,
//! `get`, `increment`, `delete`), `bindings.mysql` on MariaDB, and files through
//! `bindings.localstorage`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dapr::dapr::proto::runtime::v1 as pb;
use serde_json::{Value, json};
use test_support::metrics::Scrape;
use test_support::sidecar::*;

use super::grpc::client;
use super::state::{POSTGRES, component_file, unique};

/// Adds `sqldb`, a `bindings.postgresql` on the machine's PostgreSQL, to
/// `resources` (the SDK suites call it too).
pub(crate) fn add_sql_binding(resources: &TestResources) {
    component_file(
        resources.resources.path(),
        "sqldb",
        "bindings.postgresql",
        &[("connectionString", POSTGRES)],
    );
}

/// A sidecar with `sqldb` ([`add_sql_binding`]) and the app at `app_port`
/// if any.
async fn sidecar_with_sqldb(
    app_id: &str,
    app_port: Option<u16>,
) -> (RunningSidecar, TestResources) {
    let resources = TestResources::new();
    add_sql_binding(&resources);
    let sidecar = RunningSidecar::start(resources.config(app_id, app_port)).await;
    (sidecar, resources)
}

/// `POST /v1.0/bindings/sqldb` with `operation`, `sql` and `params`.
async fn sql(
    sidecar: &RunningSidecar,
    operation: &str,
    sql: &str,
    params: Option<Value>,
) -> reqwest::Response {
    let mut metadata = json!({ "sql": sql });
    if let Some(params) = params {
        metadata["params"] = Value::String(params.to_string());
    }
    call(sidecar, "sqldb", operation, Value::Null, metadata).await
}

/// `POST /v1.0/bindings/{binding}` with `operation`, `data` and `metadata`.
pub(crate) async fn call(
    sidecar: &RunningSidecar,
    binding: &str,
    operation: &str,
    data: Value,
    metadata: Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0/bindings/{binding}")))
        .json(&json!({ "operation": operation, "data": data, "metadata": metadata }))
        .send()
        .await
        .unwrap()
}

/// The answer's `metadata.<key>` header.
pub(crate) fn metadata_header<'a>(response: &'a reqwest::Response, key: &str) -> Option<&'a str> {
    // As UTF-8, not `to_str` (visible ASCII only): a duration under a
    // millisecond is written as Go writes it, `830µs`.
    response
        .headers()
        .get(format!("metadata.{key}"))
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
}

#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn sql_runs_through_the_postgresql_binding_as_daprs() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let (sidecar, _resources) = sidecar_with_sqldb("sql-app", None).await;
    let table = unique("orders");

    let created = sql(
        &sidecar,
        "exec",
        &format!(
            "CREATE TABLE {table} (id integer PRIMARY KEY, item text, hot boolean, \
             price numeric(6,2), details jsonb, at timestamptz, note text)"
        ),
        None,
    )
    .await;
    assert_eq!(created.status(), 200);
    assert_eq!(metadata_header(&created, "operation"), Some("exec"));
    assert_eq!(metadata_header(&created, "rows-affected"), Some("0"));
    for key in ["sql", "start-time", "end-time", "duration"] {
        assert!(
            metadata_header(&created, key).is_some(),
            "no metadata.{key}"
        );
    }

    // Parameters as JSON values, each read as its column's type.
    let insert = format!("INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)");
    let inserted = sql(
        &sidecar,
        "exec",
        &insert,
        Some(json!([1, "espresso", true, 2.5, {"size": "small"}, "2026-12-07T10:00:00Z", null])),
    )
    .await;
    assert_eq!(metadata_header(&inserted, "rows-affected"), Some("1"));
    // And SQL written out, as the quickstart writes it.
    let literal = sql(
        &sidecar,
        "exec",
        &format!("INSERT INTO {table} (id, item, hot, price) VALUES (2, 'latte', false, 3.75)"),
        None,
    )
    .await;
    assert_eq!(metadata_header(&literal, "rows-affected"), Some("1"));

    let query = format!("SELECT * FROM {table} ORDER BY id");
    let rows = sql(&sidecar, "query", &query, None).await;
    assert_eq!(rows.status(), 200);
    assert_eq!(metadata_header(&rows, "operation"), Some("query"));
    let rows: Value = rows.json().await.unwrap();
    assert_eq!(
        rows,
        json!([
            [1, "espresso", true, 2.5, {"size": "small"}, "2026-12-07T10:00:00Z", null],
            [2, "latte", false, 3.75, null, null, null]
        ])
    );
    let filtered = sql(
        &sidecar,
        "query",
        &format!("SELECT item FROM {table} WHERE id = $1"),
        Some(json!([2])),
    )
    .await;
    assert_eq!(filtered.json::<Value>().await.unwrap(), json!([["latte"]]));
    // Types not decoded are null; cast to text, they are read.
    let undecoded = sql(
        &sidecar,
        "query",
        "SELECT ARRAY[1, 2], ARRAY[1, 2]::text, interval '1 day', gen_random_uuid() IS NOT NULL",
        None,
    )
    .await;
    assert_eq!(
        undecoded.json::<Value>().await.unwrap(),
        json!([[null, "{1,2}", null, true]])
    );

    // gRPC InvokeBinding: the same, metadata as the response's.
    let mut grpc = client(&sidecar).await;
    let answer = grpc
        .invoke_binding(pb::InvokeBindingRequest {
            name: "sqldb".into(),
            operation: "query".into(),
            metadata: [(
                "sql".to_string(),
                format!("SELECT id, item FROM {table} ORDER BY id"),
            )]
            .into(),
            data: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serde_json::from_slice::<Value>(&answer.data).unwrap(),
        json!([[1, "espresso"], [2, "latte"]])
    );
    assert_eq!(answer.metadata["operation"], "query");

    // daprd's errors, and the binding goes on serving.
    let failures = [
        ("exec", "", None, "required metadata not set: sql".to_string()),
        (
            "exec",
            "SELECT 1",
            Some(json!({"not": "an array"})),
            "invalid metadata property params: failed to unserialize into an array".to_string(),
        ),
        (
            "query",
            "SELECT * FROM no_such_table_here",
            None,
            "error executing query: ERROR: relation \"no_such_table_here\" does not exist".to_string(),
        ),
        (
            "create",
            "SELECT 1",
            None,
            "binding sqldb does not support operation create. supported operations:exec query close"
                .to_string(),
        ),
    ];
    for (operation, statement, params, reason) in failures {
        let response = sql(&sidecar, operation, statement, params).await;
        assert_eq!(response.status(), 500, "{reason}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errorCode"], "ERR_INVOKE_OUTPUT_BINDING");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("error invoking output binding sqldb: {reason}")),
            "{message}"
        );
    }
    let count = sql(
        &sidecar,
        "query",
        &format!("SELECT count(*) FROM {table}"),
        None,
    )
    .await;
    assert_eq!(count.json::<Value>().await.unwrap(), json!([[2]]));

    // Each call counted by operation and outcome.
    let scrape = Scrape::fetch(&format!("http://{}/metrics", sidecar.metrics_address)).await;
    let calls = |operation: &str, success: &str| {
        scrape.sum(
            "dapr_component_output_binding_count",
            &[
                ("component", "sqldb"),
                ("operation", operation),
                ("success", success),
            ],
        )
    };
    assert_eq!(calls("exec", "true"), 3.0);
    assert_eq!(calls("query", "true"), 5.0);
    assert_eq!(calls("exec", "false"), 2.0);

    sql(&sidecar, "exec", &format!("DROP TABLE {table}"), None).await;
    // `close` ends the binding for good, as Dapr's.
    assert_eq!(sql(&sidecar, "close", "", None).await.status(), 204);
    let closed: Value = sql(&sidecar, "query", "SELECT 1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        closed["message"],
        "error invoking output binding sqldb: component is closed"
    );
    sidecar.stop().await;
}

/// The Dapr bindings quickstart's flow: a cron binding triggers the app,
/// which inserts a row through the `sqldb` binding of its own sidecar.
#[tokio::test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it and runs this)"]
async fn a_cron_triggered_app_writes_through_the_sql_binding() {
    test_support::require_service("PostgreSQL", "127.0.0.1:5432");
    let table = unique("batch");
    // The app learns its sidecar's address once the sidecar is up.
    let sidecar_url: Arc<OnceLock<String>> = Arc::default();
    let app = {
        let sidecar_url = sidecar_url.clone();
        let table = table.clone();
        let handler = move || {
            let sidecar_url = sidecar_url.clone();
            let table = table.clone();
            async move {
                let Some(base) = sidecar_url.get() else {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                };
                let insert = json!({
                    "operation": "exec",
                    "metadata": {"sql": format!("INSERT INTO {table} (at) VALUES (now())")}
                });
                match reqwest::Client::new()
                    .post(format!("{base}/v1.0/bindings/sqldb"))
                    .json(&insert)
                    .send()
                    .await
                {
                    Ok(answer) => answer.status(),
                    Err(_) => axum::http::StatusCode::BAD_GATEWAY,
                }
            }
        };
        let router = axum::Router::new().route("/batch", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    };
    let resources = TestResources::new();
    add_sql_binding(&resources);
    component_file(
        resources.resources.path(),
        "batch",
        "bindings.cron",
        &[("schedule", "@every 1s"), ("direction", "input")],
    );
    let (client, connection) = tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE TABLE {table} (at timestamptz)"))
        .await
        .unwrap();
    let sidecar = RunningSidecar::start(resources.config("batch-app", Some(app.port()))).await;
    sidecar_url.set(sidecar.base.clone()).unwrap();
    let count = format!("SELECT count(*) FROM {table}");
    test_support::wait_until("two batches written", Duration::from_secs(30), || async {
        let row = client.query_one(&count, &[]).await.unwrap();
        row.get::<_, i64>(0) >= 2
    })
    .await;
    sidecar.stop().await;
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_database_stops_the_sidecar_at_start() {
    let resources = TestResources::new();
    component_file(
        resources.resources.path(),
        "sqldb",
        "bindings.postgresql",
        &[(
            "connectionString",
            "host=127.0.0.1 port=1 user=postgres connect_timeout=2",
        )],
    );
    let error = match sidecar::Sidecar::new(resources.config("sql-down", None)).await {
        Ok(_) => panic!("a binding to no database was opened"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.starts_with("binding `sqldb` (bindings.postgresql): unable to connect to the DB: error connecting to server"),
        "{error}"
    );
}

#[tokio::test]
#[ignore = "needs Redis on 127.0.0.1:6379 (scripts/test.sh starts it and runs this)"]
async fn a_redis_key_is_written_read_counted_and_deleted_through_the_redis_binding() {
    test_support::require_service("Redis", "127.0.0.1:6379");
    let resources = TestResources::new();
    resources.add_redis_component("cache", "bindings.redis");
    let sidecar = RunningSidecar::start(resources.config("redis-binding-app", None)).await;
    let key = unique("binding-key");
    let counter = unique("binding-counter");
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut redis = redis.get_multiplexed_async_connection().await.unwrap();
    // A call of the binding that sends no data.
    let cache = |operation: &'static str, metadata: Value| {
        call(&sidecar, "cache", operation, Value::Null, metadata)
    };

    // `create` stores the data as daprd marshals it (JSON), with a TTL.
    let created = call(
        &sidecar,
        "cache",
        "create",
        json!({"order": 7}),
        json!({"key": key, "ttlInSeconds": "100"}),
    )
    .await;
    assert_eq!(created.status(), 204);
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored, r#"{"order":7}"#);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=100).contains(&ttl), "TTL {ttl}");

    let got = cache("get", json!({"key": key})).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.unwrap(), json!({"order": 7}));

    // gRPC: the bytes as stored.
    let mut grpc = client(&sidecar).await;
    let answer = grpc
        .invoke_binding(pb::InvokeBindingRequest {
            name: "cache".into(),
            operation: "get".into(),
            metadata: [("key".to_string(), key.clone())].into(),
            data: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.data, br#"{"order":7}"#);

    for _ in 0..2 {
        let counted = cache("increment", json!({"key": counter})).await;
        assert_eq!(counted.status(), 204);
    }
    let count = cache("get", json!({"key": counter})).await;
    assert_eq!(count.text().await.unwrap(), "2");

    // `get` with `delete: "true"` reads and deletes at once.
    let taken = cache("get", json!({"key": counter, "delete": "true"})).await;
    assert_eq!(taken.text().await.unwrap(), "2");
    let gone = cache("get", json!({"key": counter})).await;
    assert_eq!(gone.status(), 200);
    assert_eq!(gone.text().await.unwrap(), "", "a missing key has no data");

    let deleted = cache("delete", json!({"key": key})).await;
    assert_eq!(deleted.status(), 204);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    // daprd's errors.
    let failures = [
        (
            "get",
            json!({}),
            "redis binding: missing key in request metadata",
        ),
        (
            "create",
            json!({"key": key, "ttlInSeconds": "-1"}),
            "ttlInSeconds value must be higher than zero: actual is '-1'",
        ),
        (
            "list",
            json!({"key": key}),
            "binding cache does not support operation list. supported operations:create delete get increment",
        ),
        (
            "",
            json!({"key": key}),
            "operation field is missing from request",
        ),
    ];
    for (operation, metadata, reason) in failures {
        let message = assert_dapr_error(
            call(&sidecar, "cache", operation, json!(1), metadata).await,
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        )
        .await;
        assert_eq!(
            message,
            format!("error invoking output binding cache: {reason}")
        );
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn files_are_created_read_listed_and_deleted_through_the_localstorage_binding() {
    let resources = TestResources::new();
    let folder = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(folder.path()).unwrap().join("files");
    component_file(
        resources.resources.path(),
        "disk",
        "bindings.localstorage",
        &[("rootPath", root.to_str().unwrap())],
    );
    let sidecar = RunningSidecar::start(resources.config("disk-app", None)).await;
    assert!(root.is_dir(), "the folder is made at start-up");
    // A call of the binding that sends no data.
    let disk = |operation: &'static str, metadata: Value| {
        call(&sidecar, "disk", operation, Value::Null, metadata)
    };

    // `create` writes the data as daprd marshals it, and names the file.
    let created = call(
        &sidecar,
        "disk",
        "create",
        json!({"order": 7}),
        json!({"fileName": "orders/7.json"}),
    )
    .await;
    assert_eq!(created.status(), 200);
    assert_eq!(
        created.json::<Value>().await.unwrap(),
        json!({"fileName": "orders/7.json"})
    );
    assert_eq!(
        std::fs::read_to_string(root.join("orders/7.json")).unwrap(),
        r#"{"order":7}"#
    );
    // A JSON string is written as the string, base64 decoded.
    call(
        &sidecar,
        "disk",
        "create",
        json!("aGk="),
        json!({"fileName": "hi.txt"}),
    )
    .await;
    assert_eq!(std::fs::read(root.join("hi.txt")).unwrap(), b"hi");
    // No name: a new UUID.
    let named: Value = call(&sidecar, "disk", "create", json!("x y"), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let uuid = named["fileName"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(std::fs::read(root.join(&uuid)).unwrap(), b"x y");

    // A name that climbs out stays in the folder.
    let escaped: Value = call(
        &sidecar,
        "disk",
        "create",
        json!("no"),
        json!({"fileName": "../../outside.txt"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(escaped["fileName"], "outside.txt");
    assert!(root.join("outside.txt").is_file());
    assert!(!folder.path().join("outside.txt").exists());

    let got = disk("get", json!({"fileName": "orders/7.json"})).await;
    assert_eq!(got.text().await.unwrap(), r#"{"order":7}"#);

    let listed: Vec<String> = disk("list", json!({})).await.json().await.unwrap();
    let mut expected: Vec<String> = ["hi.txt", "orders/7.json", "outside.txt", &uuid]
        .iter()
        .map(|name| root.join(name).to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let in_orders: Vec<String> = disk("list", json!({"fileName": "orders"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(in_orders, [root.join("orders/7.json").to_string_lossy()]);

    // gRPC: the same file.
    let mut grpc = client(&sidecar).await;
    let answer = grpc
        .invoke_binding(pb::InvokeBindingRequest {
            name: "disk".into(),
            operation: "get".into(),
            metadata: [("fileName".to_string(), "hi.txt".to_string())].into(),
            data: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.data, b"hi");

    let deleted = disk("delete", json!({"fileName": "hi.txt"})).await;
    assert_eq!(deleted.status(), 204);
    assert!(!root.join("hi.txt").exists());

    // daprd's errors; the sidecar goes on serving.
    let gone = root.join("hi.txt");
    let failures = [
        (
            "get",
            json!({"fileName": "hi.txt"}),
            format!("file not found: {}", gone.display()),
        ),
        (
            "list",
            json!({"fileName": "orders/7.json"}),
            format!(
                "unable to list files as the file specified is not a directory: {}",
                root.join("orders/7.json").display()
            ),
        ),
    ];
    for (operation, metadata, reason) in failures {
        let message = assert_dapr_error(
            call(&sidecar, "disk", operation, Value::Null, metadata).await,
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        )
        .await;
        assert_eq!(
            message,
            format!("error invoking output binding disk: {reason}")
        );
    }
    let deleted_twice = assert_dapr_error(
        disk("delete", json!({"fileName": "hi.txt"})).await,
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
    )
    .await;
    assert!(
        deleted_twice.starts_with(&format!(
            "error invoking output binding disk: error deleting file {}: ",
            gone.display()
        )),
        "{deleted_twice}"
    );
    let still = disk("get", json!({"fileName": "orders/7.json"})).await;
    assert_eq!(still.status(), 200);
}

#[tokio::test]
async fn a_localstorage_binding_without_a_usable_folder_is_refused_at_start() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let cases = [
        ("", "property rootPath must not be empty"),
        (
            "/proc/dapr",
            "property rootPath points to a disallowed location",
        ),
        (
            file.path().to_str().unwrap(),
            "property rootPath represents a file and not a directory",
        ),
    ];
    for (root, expected) in cases {
        let resources = TestResources::new();
        component_file(
            resources.resources.path(),
            "disk",
            "bindings.localstorage",
            &[("rootPath", root)],
        );
        let error = match sidecar::Sidecar::new(resources.config("disk-app", None)).await {
            Ok(_) => panic!("a local storage binding on {root:?} was opened"),
            Err(error) => format!("{error:#}"),
        };
        assert_eq!(
            error,
            format!("binding `disk` (bindings.localstorage): {expected}")
        );
    }
}

#[tokio::test]
#[ignore = "needs MariaDB on 127.0.0.1:3306 (scripts/test.sh starts it and runs this)"]
async fn sql_runs_on_mariadb_through_the_mysql_binding() {
    use mysql_async::prelude::Queryable;
    test_support::require_service("MariaDB", "127.0.0.1:3306");
    let database = unique("dapr_binding");
    let mut admin = mysql_async::Conn::from_url("mysql://root@127.0.0.1:3306/")
        .await
        .unwrap();
    admin
        .query_drop(format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let resources = TestResources::new();
    // Go's DSN, as Dapr's MySQL binding examples write it.
    let url = format!("root:@tcp(127.0.0.1:3306)/{database}?allowNativePasswords=true");
    component_file(
        resources.resources.path(),
        "shopdb",
        "bindings.mysql",
        &[("url", &url)],
    );
    let sidecar = RunningSidecar::start(resources.config("mysql-binding-app", None)).await;
    let sql = |operation: &'static str, sql: &str, params: Option<Value>| {
        let mut metadata = json!({ "sql": sql });
        if let Some(params) = params {
            metadata["params"] = Value::String(params.to_string());
        }
        call(&sidecar, "shopdb", operation, Value::Null, metadata)
    };

    let created = sql(
        "exec",
        "CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(40), price DECIMAL(6,2), \
         at DATETIME, data BLOB, note TEXT NULL)",
        None,
    )
    .await;
    assert_eq!(created.status(), 200);
    assert_eq!(metadata_header(&created, "operation"), Some("exec"));
    let inserted = sql(
        "exec",
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)",
        Some(json!([
            7,
            "espresso",
            "2.50",
            "2026-12-07 10:00:05",
            "hi",
            null,
            8,
            "tea",
            1.25,
            "2026-12-08 00:00:00",
            "yo",
            "hot",
        ])),
    )
    .await;
    assert_eq!(metadata_header(&inserted, "rows-affected"), Some("2"));
    for key in ["sql", "start-time", "end-time", "duration"] {
        assert!(metadata_header(&inserted, key).is_some(), "{key}");
    }

    // The text protocol (no params) and the binary one (params) give the
    // same rows: objects, NULL columns left out.
    let expected = json!([
        {"id": 7, "item": "espresso", "price": "2.50", "at": "2026-12-07T10:00:05Z", "data": "aGk="},
        {"id": 8, "item": "tea", "price": "1.25", "at": "2026-12-08T00:00:00Z", "data": "eW8=", "note": "hot"},
    ]);
    let all = sql("query", "SELECT * FROM orders ORDER BY id", None).await;
    assert_eq!(all.status(), 200);
    assert_eq!(all.json::<Value>().await.unwrap(), expected);
    let some = sql(
        "query",
        "SELECT * FROM orders WHERE id >= ? ORDER BY id",
        Some(json!([7])),
    )
    .await;
    assert_eq!(some.json::<Value>().await.unwrap(), expected);

    // daprd's errors; then close, after which the binding refuses calls.
    let failures = [
        (
            sql("query", "SELECT * FROM nowhere", None).await,
            format!("error executing query: Error 1146 (42S02): Table '{database}.nowhere' doesn't exist"),
        ),
        (
            sql("exec", "", None).await,
            "required metadata not set: sql".to_string(),
        ),
        (
            sql("query", "SELECT ?", Some(json!({"not": "an array"}))).await,
            "invalid metadata property params: failed to unserialize into an array: invalid type: map, expected a sequence at line 1 column 0".to_string(),
        ),
    ];
    for (response, reason) in failures {
        let message = assert_dapr_error(response, 500, "ERR_INVOKE_OUTPUT_BINDING").await;
        assert_eq!(
            message,
            format!("error invoking output binding shopdb: {reason}")
        );
    }
    let closed = sql("close", "", None).await;
    assert_eq!(closed.status(), 204);
    let message = assert_dapr_error(
        sql("query", "SELECT 1", None).await,
        500,
        "ERR_INVOKE_OUTPUT_BINDING",
    )
    .await;
    assert_eq!(
        message,
        "error invoking output binding shopdb: component is closed"
    );
    admin
        .query_drop(format!("DROP DATABASE {database}"))
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
}
