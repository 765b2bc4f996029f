//! `dapr-wasm functions`: an app serving what a functions file declares.
//! Routes, arguments, content types, exit codes and per-function limits;
//! read-only directories; `GET /fn`; bad files refused before anything is
//! bound; and live reload, of a wasm file and of the file itself, under load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use function_app::{AppConfig, Catalog, FunctionsArgs};
use reqwest::StatusCode;
use serde_json::Value;
use service_kit::metrics::Listeners;
use sha2::{Digest, Sha256};
use test_support::assert_dapr_error as assert_error;
use test_support::metrics::Scrape;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a reload may take to show: compiling a small module takes
/// milliseconds, the app looks every 20 ms.
const RELOAD_WITHIN: Duration = Duration::from_secs(30);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    functions: FunctionsArgs,
}

/// The flags `dapr-wasm functions` would get, checked as it checks them.
fn validate(file: &Path) -> Result<AppConfig, String> {
    validate_with(file, &[])
}

/// [`validate`] with more flags.
fn validate_with(file: &Path, more: &[&str]) -> Result<AppConfig, String> {
    let mut flags = vec![
        "functions",
        "--config",
        file.to_str().unwrap(),
        "--no-cache",
        "--reload-interval",
        "20ms",
        "--max-memory",
        "128Mi",
    ];
    flags.extend_from_slice(more);
    Cli::parse_from(flags).functions.validate()
}

/// A running app and the folder its functions file is in.
struct App {
    base: String,
    /// Its `GET /metrics`.
    metrics_url: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    _catalog: Arc<Catalog>,
    _shutdown: oneshot::Sender<()>,
}

impl App {
    /// Writes `yaml` as `functions.yaml` in a new folder (where `files`
    /// are copied first: (name in the folder, built guest)) and serves it.
    async fn start(files: &[(&str, &str)], yaml: &str) -> App {
        Self::start_with(files, yaml, &[]).await
    }

    /// [`App::start`] with more flags.
    async fn start_with(files: &[(&str, &str)], yaml: &str, flags: &[&str]) -> App {
        Self::serve_dir(with_guests(files), yaml, flags).await
    }

    /// Writes `yaml` as `functions.yaml` in `dir` and serves it.
    async fn serve_dir(dir: tempfile::TempDir, yaml: &str, flags: &[&str]) -> App {
        let file = dir.path().join("functions.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = validate_with(&file, flags).expect("a valid functions file");
        let catalog = function_app::load_catalog(&config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_url = format!("http://{}/metrics", metrics.local_addr().unwrap());
        let listeners = Listeners {
            app: listener,
            metrics: Some(metrics),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let served = catalog.clone();
        tokio::spawn(async move {
            function_app::serve_catalog(&config, served, listeners, async {
                let _ = rx.await;
            })
            .await
        });
        App {
            base,
            metrics_url,
            client: reqwest::Client::new(),
            dir,
            _catalog: catalog,
            _shutdown: tx,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn functions(&self) -> Value {
        test_support::get_json(format!("{}/fn", self.base)).await
    }

    /// Polls `GET /fn` until it satisfies `done`, and returns it.
    async fn wait_for_listing(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + RELOAD_WITHIN;
        loop {
            let listing = self.functions().await;
            if done(&listing) {
                return listing;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {RELOAD_WITHIN:?}; GET /fn says {listing}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Replaces the file `name` with `bytes` as a deploy would: written
    /// beside it, then renamed over it.
    fn replace(&self, name: &str, bytes: &[u8]) {
        let temporary = self.path(&format!(".{name}.new"));
        std::fs::write(&temporary, bytes).unwrap();
        std::fs::rename(&temporary, self.path(name)).unwrap();
    }
}

/// A new folder with `files` in it: (name in the folder, built guest).
fn with_guests(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, guest) in files {
        std::fs::copy(test_support::wasm_path(guest), dir.path().join(name)).unwrap();
    }
    dir
}

/// The version `GET /fn` shows for a wasm file with these bytes.
fn version_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

fn function<'a>(listing: &'a Value, name: &str) -> &'a Value {
    listing["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no function `{name}` in {listing}"))
}

const SENTENCE: &str = "The cat and the hat. The end";

#[tokio::test]
async fn each_function_answers_at_its_routes_with_its_args_content_type_and_exit_codes() {
    let app = App::start(
        &[
            ("wordcount.wasm", "wordcount-c"),
            ("echo.wasm", "echo"),
            ("grayscale.wasm", "grayscale"),
        ],
        r#"
functions:
  - name: wordcount
    wasm: wordcount.wasm
    args: ["--top", "2"]
    routes: [/count, /text/words]
    contentType: application/json
    exitCodes:
      2: {status: 415, errorCode: ERR_NOT_TEXT}
  - name: echo
    wasm: echo.wasm
    contentType: text/plain; charset=utf-8
  - name: grayscale
    wasm: grayscale.wasm
"#,
    )
    .await;

    for route in ["/fn/wordcount", "/count", "/text/words"] {
        let response = app.post(route, SENTENCE).await;
        assert_eq!(response.status(), StatusCode::OK, "{route}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let counts: Value = response.json().await.unwrap();
        assert_eq!(counts["words"], 7, "{counts}");
        assert_eq!(counts["bytes"], SENTENCE.len());
        // `--top 2` came from the file's args.
        assert_eq!(counts["top"].as_array().unwrap().len(), 2, "{counts}");
        assert_eq!(counts["top"][0]["word"], "the");
        assert_eq!(counts["top"][0]["count"], 3);
    }

    let response = app.post("/fn/echo", "hello").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), "hello");

    // No contentType: sniffed from the output.
    let response = app
        .post("/fn/grayscale", test_support::photo("cat.jpg"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");

    // Exit code 2 has its own answer; the message names the function and
    // says what it wrote to stderr.
    let message = assert_error(
        app.post("/count", &b"text\0more"[..]).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ERR_NOT_TEXT",
    )
    .await;
    assert!(
        message.starts_with("function `wordcount` exited with code 2: the input is not text"),
        "{message}"
    );
    // A function without `exitCodes` gets the default answer for any code: 422.
    let message = assert_error(
        app.post("/fn/grayscale", "not an image").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_FUNCTION_REJECTED",
    )
    .await;
    assert!(
        message.starts_with("function `grayscale` exited with code 2: unsupported image"),
        "{message}"
    );

    assert_error(
        app.client
            .get(format!("{}/fn/echo", app.base))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "ERR_METHOD_NOT_ALLOWED",
    )
    .await;
    assert_error(
        app.post("/fn/nothing", "x").await,
        StatusCode::NOT_FOUND,
        "ERR_NOT_FOUND",
    )
    .await;

    let listing = app.functions().await;
    assert!(listing["configError"].is_null(), "{listing}");
    let wordcount = function(&listing, "wordcount");
    assert_eq!(
        wordcount["routes"],
        serde_json::json!(["/fn/wordcount", "/count", "/text/words"])
    );
    assert_eq!(
        wordcount["version"],
        version_of(&std::fs::read(app.path("wordcount.wasm")).unwrap())
    );
    assert_eq!(wordcount["args"], serde_json::json!(["--top", "2"]));
    assert!(wordcount["reloadError"].is_null());
    assert!(wordcount["build"].is_null());
    assert_eq!(listing["watch"], false, "--watch was not given");
    assert_eq!(listing["functions"].as_array().unwrap().len(), 3);
}

/// The example functions in other languages, served by configuration
/// only: C (clang), AssemblyScript (asc with the WASI shim) and
/// JavaScript (a script the QuickJS function finds in its read-only
/// directory).
#[tokio::test]
async fn functions_in_c_assemblyscript_and_javascript_are_served_from_the_file() {
    let scripts = test_support::repo_path("functions/summarize-js");
    let app = App::start(
        &[
            ("wordcount.wasm", "wordcount-c"),
            ("csv2json.wasm", "csv2json-as"),
            ("quickjs.wasm", "quickjs"),
        ],
        &format!(
            r#"
functions:
  - name: summarize
    wasm: quickjs.wasm
    args: [city, cups]
    contentType: application/json
    dirs: [{{host: {scripts}, guest: /app}}]
    exitCodes:
      1: {{status: 500, errorCode: ERR_SCRIPT}}
      2: {{status: 400, errorCode: ERR_BAD_RECORDS}}
  - name: no-script
    wasm: quickjs.wasm
  - name: wordcount
    wasm: wordcount.wasm
    contentType: application/json
  - name: csv2json
    wasm: csv2json.wasm
    contentType: application/json
    exitCodes:
      1: {{status: 400, errorCode: ERR_BAD_CSV}}
"#,
            scripts = scripts.display()
        ),
    )
    .await;
    let counts: Value = app
        .post("/fn/wordcount", SENTENCE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(counts["words"], 7);

    let response = app
        .post("/fn/csv2json", "name,cups\nana,2\n\"bo, jr\",3\n")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rows: Value = response.json().await.unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"name": "ana", "cups": "2"}, {"name": "bo, jr", "cups": "3"}])
    );
    let message = assert_error(
        app.post("/fn/csv2json", "a,b\n1\n").await,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_CSV",
    )
    .await;
    assert_eq!(
        message,
        "function `csv2json` exited with code 1: row 1 has 1 fields; the header has 2"
    );
    let response = app.post("/fn/csv2json", "").await;
    assert_eq!(response.text().await.unwrap(), "[]\n");

    let response = app
        .post(
            "/fn/summarize",
            r#"[{"city":"Porto","cups":1},{"city":"Lisbon","cups":2},{"city":"Lisbon","cups":3.5}]"#,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let groups: Value = response.json().await.unwrap();
    assert_eq!(
        groups,
        serde_json::json!([
            {"city": "Lisbon", "count": 2, "cups": 5.5},
            {"city": "Porto", "count": 1, "cups": 1}
        ])
    );
    // The script throws: exit code 2, its message is the answer's.
    let message = assert_error(
        app.post("/fn/summarize", r#"[{"town":"Faro"}]"#).await,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_RECORDS",
    )
    .await;
    assert_eq!(
        message,
        r#"function `summarize` exited with code 2: record 0 has no field "city""#
    );
    let message = assert_error(
        app.post("/fn/summarize", "not json").await,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_RECORDS",
    )
    .await;
    assert!(
        message.starts_with("function `summarize` exited with code 2: the input is not JSON"),
        "{message}"
    );
    // Without its directory the function cannot find a script: exit code 1.
    let message = assert_error(
        app.post("/fn/no-script", "[]").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_FUNCTION_REJECTED",
    )
    .await;
    assert!(
        message.starts_with(
            "function `no-script` exited with code 1: cannot read the script /app/index.js"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn limits_belong_to_each_function() {
    let app = App::start(
        &[
            ("spin.wasm", "spin"),
            ("echo.wasm", "echo"),
            ("hog.wasm", "hog"),
        ],
        r#"
functions:
  - name: spin
    wasm: spin.wasm
    limits: {timeout: 200ms}
  - name: small
    wasm: echo.wasm
    limits: {maxInput: 10, maxOutput: 1Ki}
  - name: echo
    wasm: echo.wasm
  - name: hog
    wasm: hog.wasm
    limits: {memory: 32Mi}
"#,
    )
    .await;
    let message = assert_error(
        app.post("/fn/spin", "x").await,
        StatusCode::GATEWAY_TIMEOUT,
        "ERR_FUNCTION_TIMEOUT",
    )
    .await;
    assert!(message.starts_with("function `spin`: "), "{message}");
    assert!(message.contains("200ms"), "{message}");

    assert_error(
        app.post("/fn/small", "eleven char").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "ERR_BODY_TOO_LARGE",
    )
    .await;
    // The same file under another name keeps the app's limits.
    let response = app.post("/fn/echo", "eleven chars and more").await;
    assert_eq!(response.status(), StatusCode::OK);

    let message = assert_error(
        app.post("/fn/hog", "x").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_FUNCTION_MEMORY_LIMIT",
    )
    .await;
    assert!(message.contains(&(32 << 20).to_string()), "{message}");
    assert_eq!(app.post("/fn/small", "ok").await.status(), StatusCode::OK);
}

/// The issue's function host metrics: each call counted by outcome, its
/// time, its wait for a slot and its peak memory; the slots; each load by
/// cache outcome; and the app's HTTP requests by function route.
#[tokio::test]
async fn the_metrics_port_counts_each_call_by_outcome_with_its_time_and_memory() {
    let app = App::start_with(
        &[
            ("spin.wasm", "spin"),
            ("echo.wasm", "echo"),
            ("hog.wasm", "hog"),
            ("trap.wasm", "trap"),
        ],
        r#"
functions:
  - name: spin
    wasm: spin.wasm
    limits: {timeout: 200ms}
  - name: echo
    wasm: echo.wasm
  - name: hog
    wasm: hog.wasm
    limits: {memory: 32Mi}
  - name: trap
    wasm: trap.wasm
"#,
        &["--max-concurrent-calls", "3"],
    )
    .await;
    for _ in 0..2 {
        assert_eq!(app.post("/fn/echo", "hello").await.status(), StatusCode::OK);
    }
    for (function, status) in [
        ("spin", StatusCode::GATEWAY_TIMEOUT),
        ("hog", StatusCode::INTERNAL_SERVER_ERROR),
        ("trap", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let path = format!("/fn/{function}");
        assert_eq!(app.post(&path, "x").await.status(), status, "{function}");
    }
    let scrape = Scrape::fetch(&app.metrics_url).await;
    let calls = |function: &str, outcome: &str| {
        scrape.sum(
            "dapr_wasm_function_calls_total",
            &[("function", function), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("echo", "ok"), 2.0);
    assert_eq!(calls("spin", "timeout"), 1.0);
    assert_eq!(calls("hog", "memory"), 1.0);
    assert_eq!(calls("trap", "trap"), 1.0);
    assert_eq!(scrape.sum("dapr_wasm_function_calls_total", &[]), 5.0);
    for family in [
        "dapr_wasm_function_call_duration_seconds_count",
        "dapr_wasm_function_queue_wait_seconds_count",
        "dapr_wasm_function_peak_memory_bytes_count",
    ] {
        assert_eq!(scrape.sum(family, &[("function", "echo")]), 2.0, "{family}");
        assert_eq!(scrape.sum(family, &[]), 5.0, "{family}");
    }
    // The spinning call ran for its whole deadline.
    let spin = scrape.sum(
        "dapr_wasm_function_call_duration_seconds_sum",
        &[("function", "spin")],
    );
    assert!(spin >= 0.2, "spin ran {spin} s");
    // The hog got close to its limit, and never past it.
    let hog = scrape.sum(
        "dapr_wasm_function_peak_memory_bytes_sum",
        &[("function", "hog")],
    );
    assert!(
        hog > f64::from(16 << 20) && hog <= f64::from(32 << 20),
        "{hog}"
    );
    let echo = scrape.sum(
        "dapr_wasm_function_peak_memory_bytes_sum",
        &[("function", "echo")],
    );
    assert!(echo > 0.0 && echo < hog, "{echo}");
    assert_eq!(scrape.value("dapr_wasm_function_slots", &[]), Some(3.0));
    assert_eq!(
        scrape.value("dapr_wasm_function_slots_in_use", &[]),
        Some(0.0)
    );
    for function in ["spin", "echo", "hog", "trap"] {
        let loads = [("function", function), ("cache", "uncached")];
        assert_eq!(
            scrape.value("dapr_wasm_function_loads_total", &loads),
            Some(1.0),
            "{function}"
        );
    }
    let requests = |route: &str, status: &str| {
        scrape.value(
            "http_server_requests_total",
            &[
                ("http_request_method", "POST"),
                ("http_route", route),
                ("http_response_status_code", status),
            ],
        )
    };
    assert_eq!(requests("/fn/echo", "200"), Some(2.0));
    assert_eq!(requests("/fn/spin", "504"), Some(1.0));
}

#[tokio::test]
async fn a_function_reads_only_the_directories_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "hello from the host").unwrap();
    let app = App::start(
        &[("read-file.wasm", "read-file")],
        &format!(
            r#"
functions:
  - name: reader
    wasm: read-file.wasm
    args: [/data/hello.txt]
    dirs: [{{host: {}, guest: /data}}]
  - name: blind
    wasm: read-file.wasm
    args: [/data/hello.txt]
"#,
            data.display()
        ),
    )
    .await;
    let response = app.post("/fn/reader", "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        "hello from the host\nwrite=denied list-root=denied\n"
    );
    assert!(!data.join("hello.txt.new").exists());
    let message = assert_error(
        app.post("/fn/blind", "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ERR_FUNCTION_REJECTED",
    )
    .await;
    assert!(message.contains("cannot read /data/hello.txt"), "{message}");
}

#[test]
fn bad_files_are_refused_before_anything_is_bound_naming_file_function_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        test_support::wasm_path("echo"),
        dir.path().join("echo.wasm"),
    )
    .unwrap();
    let file = dir.path().join("functions.yaml");
    let shown = file.display().to_string();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a missing wasm file",
            "functions:\n  - name: gone\n    wasm: missing.wasm\n",
            &["function `gone`: wasm: ", "missing.wasm does not exist"],
        ),
        ("bad YAML", "functions: [\n", &["line 2"]),
        (
            "an unknown field",
            "functions:\n  - name: echo\n    wasm: echo.wasm\n    timeout: 3s\n",
            &["unknown field `timeout`", "line 4"],
        ),
        (
            "a duplicate route",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    routes: [/x]\n  - name: b\n    wasm: echo.wasm\n    routes: [/x]\n",
            &["function `b`: routes: `/x` is taken by another function"],
        ),
        (
            "a route the app answers itself",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    routes: [/healthz]\n",
            &["function `a`: routes: `/healthz` is taken by the app itself"],
        ),
        (
            "a duplicate name",
            "functions:\n  - name: a\n    wasm: echo.wasm\n  - name: a\n    wasm: echo.wasm\n",
            &["function `a`: name: `a` is declared twice"],
        ),
        (
            "a model that does not exist",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    models: [resnet-50]\n",
            &["function `a`: models: no model named `resnet-50`"],
        ),
        (
            "a limit that is not a size",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    limits: {memory: lots}\n",
            &["function `a`: limits.memory: "],
        ),
        (
            "more memory than the app allows",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    limits: {memory: 1Gi}\n",
            &[
                "function `a`: limits.memory: ",
                "over the app's --max-memory",
            ],
        ),
        (
            "an exit code that is not one",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    exitCodes: {300: {status: 400, errorCode: E}}\n",
            &["function `a`: exitCodes: `300`"],
        ),
        (
            "a success status for an error",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    exitCodes: {1: {status: 200, errorCode: E}}\n",
            &["function `a`: exitCodes.1.status: 200"],
        ),
        (
            "a bad name",
            "functions:\n  - name: a/b\n    wasm: echo.wasm\n",
            &["name: `a/b` must be"],
        ),
        ("no functions", "functions: []\n", &["`functions` is empty"]),
        (
            "a build watching nothing there",
            "functions:\n  - name: a\n    wasm: echo.wasm\n    build: {command: make, watch: [src]}\n",
            &["function `a`: build.watch: ", "src does not exist"],
        ),
    ];
    for (what, yaml, expected) in cases {
        std::fs::write(&file, yaml).unwrap();
        let error = validate(&file)
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(error.starts_with(&shown), "{what}: {error}");
        for part in *expected {
            assert!(error.contains(part), "{what}: `{error}` lacks `{part}`");
        }
    }
    let error = validate(&dir.path().join("nope.yaml")).err().unwrap();
    assert!(error.contains("cannot read the functions file"), "{error}");
    assert!(error.contains("nope.yaml"), "{error}");
}

#[tokio::test]
async fn a_replaced_wasm_file_is_served_and_a_broken_one_changes_nothing() {
    let app = App::start(
        &[("f.wasm", "echo")],
        "functions:\n  - name: f\n    wasm: f.wasm\n",
    )
    .await;
    assert_eq!(
        app.post("/fn/f", SENTENCE).await.text().await.unwrap(),
        SENTENCE
    );

    let wordcount = std::fs::read(test_support::wasm_path("wordcount-c")).unwrap();
    app.replace("f.wasm", &wordcount);
    let listing = app
        .wait_for_listing("the new version", |l| {
            function(l, "f")["version"] == version_of(&wordcount)
        })
        .await;
    assert!(function(&listing, "f")["reloadError"].is_null());
    let counts: Value = app.post("/fn/f", SENTENCE).await.json().await.unwrap();
    assert_eq!(counts["words"], 7);

    // A file that is not wasm: the old version keeps serving, and `GET /fn`
    // says why the new one is not.
    app.replace("f.wasm", b"\0asm garbage");
    let listing = app
        .wait_for_listing("the reload error", |l| {
            function(l, "f")["reloadError"].is_string()
        })
        .await;
    let error = function(&listing, "f")["reloadError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot prepare function `f`"), "{error}");
    assert_eq!(function(&listing, "f")["version"], version_of(&wordcount));
    let counts: Value = app.post("/fn/f", SENTENCE).await.json().await.unwrap();
    assert_eq!(counts["words"], 7);

    // A good file again: served, and the error is gone.
    let echo = std::fs::read(test_support::wasm_path("echo")).unwrap();
    app.replace("f.wasm", &echo);
    app.wait_for_listing("the echo version", |l| {
        function(l, "f")["version"] == version_of(&echo)
            && function(l, "f")["reloadError"].is_null()
    })
    .await;
    assert_eq!(
        app.post("/fn/f", SENTENCE).await.text().await.unwrap(),
        SENTENCE
    );
}

/// `--watch`: a function whose watched sources change is rebuilt by its
/// `build` command, and the new wasm file served; a build that fails
/// leaves the old version serving and says why in `GET /fn`.
#[tokio::test]
async fn watch_rebuilds_a_function_when_its_sources_change() {
    // The "source" names which built guest the "build" copies into place.
    let dir = with_guests(&[
        ("echo.wasm", "echo"),
        ("wordcount.wasm", "wordcount-c"),
        ("f.wasm", "echo"),
    ]);
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/which"), "echo").unwrap();
    let app = App::serve_dir(
        dir,
        r#"
functions:
  - name: f
    wasm: f.wasm
    build:
      command: 'cp "$(cat src/which).wasm" f.wasm.new && mv f.wasm.new f.wasm'
      watch: [src]
"#,
        &["--watch"],
    )
    .await;
    assert_eq!(
        app.post("/fn/f", SENTENCE).await.text().await.unwrap(),
        SENTENCE
    );

    let wordcount = std::fs::read(test_support::wasm_path("wordcount-c")).unwrap();
    std::fs::write(app.path("src/which"), "wordcount").unwrap();
    let listing = app
        .wait_for_listing("the rebuilt version", |l| {
            function(l, "f")["version"] == version_of(&wordcount)
        })
        .await;
    assert!(function(&listing, "f")["buildError"].is_null(), "{listing}");
    assert_eq!(listing["watch"], true);
    assert_eq!(
        function(&listing, "f")["build"]["watch"][0],
        app.path("src").display().to_string()
    );
    let counts: Value = app.post("/fn/f", SENTENCE).await.json().await.unwrap();
    assert_eq!(counts["words"], 7);

    // A build that fails: the old version serves, GET /fn says why.
    std::fs::write(app.path("src/which"), "missing").unwrap();
    let listing = app
        .wait_for_listing("the build error", |l| {
            function(l, "f")["buildError"].is_string()
        })
        .await;
    let error = function(&listing, "f")["buildError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("failed (exit status: 1)"), "{error}");
    assert!(error.contains("missing.wasm"), "{error}");
    let counts: Value = app.post("/fn/f", SENTENCE).await.json().await.unwrap();
    assert_eq!(counts["words"], 7);

    // Fixed: rebuilt, served, and the error is gone.
    std::fs::write(app.path("src/which"), "echo").unwrap();
    let echo = std::fs::read(test_support::wasm_path("echo")).unwrap();
    app.wait_for_listing("the echo version", |l| {
        function(l, "f")["version"] == version_of(&echo) && function(l, "f")["buildError"].is_null()
    })
    .await;
    assert_eq!(
        app.post("/fn/f", SENTENCE).await.text().await.unwrap(),
        SENTENCE
    );
}

/// 4 clients call without pause while the file is replaced 20 times (and
/// once with a broken file): every answer comes from the old or the new
/// version, none fails, no connection drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_load_loses_no_call() {
    let app = Arc::new(
        App::start(
            &[("f.wasm", "echo")],
            "functions:\n  - name: f\n    wasm: f.wasm\n",
        )
        .await,
    );
    let versions = [
        std::fs::read(test_support::wasm_path("echo")).unwrap(),
        std::fs::read(test_support::wasm_path("wordcount-c")).unwrap(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let answers = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (app, stop, answers) = (app.clone(), stop.clone(), answers.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = app.post("/fn/f", SENTENCE).await;
                assert_eq!(response.status(), StatusCode::OK);
                let text = response.text().await.unwrap();
                if text == SENTENCE {
                    answers[0].fetch_add(1, Ordering::Relaxed);
                } else {
                    let counts: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("neither version answered this: {text:?} ({e})")
                    });
                    assert_eq!(counts["words"], 7, "{counts}");
                    answers[1].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for round in 1..=20 {
        let bytes = &versions[round % 2];
        app.replace("f.wasm", bytes);
        let want = version_of(bytes);
        app.wait_for_listing(&format!("version {round}"), |l| {
            function(l, "f")["version"] == want
        })
        .await;
        if round == 10 {
            app.replace("f.wasm", b"not wasm at all");
            app.wait_for_listing("the broken file's error", |l| {
                function(l, "f")["reloadError"].is_string() && function(l, "f")["version"] == want
            })
            .await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client saw a failed call");
    }
    let (old, new) = (
        answers[0].load(Ordering::Relaxed),
        answers[1].load(Ordering::Relaxed),
    );
    assert!(old > 0 && new > 0, "echo answered {old}, wordcount {new}");
}

#[tokio::test]
async fn a_changed_functions_file_is_loaded_whole_or_not_at_all() {
    let app = App::start(
        &[("echo.wasm", "echo"), ("wordcount.wasm", "wordcount-c")],
        "functions:\n  - name: echo\n    wasm: echo.wasm\n",
    )
    .await;
    let echo_loaded = function(&app.functions().await, "echo")["loadedAt"].clone();
    assert_error(
        app.post("/fn/words", SENTENCE).await,
        StatusCode::NOT_FOUND,
        "ERR_NOT_FOUND",
    )
    .await;

    // A second function and an alias: both appear; echo is not reloaded.
    app.replace(
        "functions.yaml",
        b"functions:\n  - name: echo\n    wasm: echo.wasm\n  - name: words\n    wasm: wordcount.wasm\n    routes: [/count]\n",
    );
    let listing = app
        .wait_for_listing("the second function", |l| {
            l["functions"].as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(function(&listing, "echo")["loadedAt"], echo_loaded);
    let counts: Value = app.post("/count", SENTENCE).await.json().await.unwrap();
    assert_eq!(counts["words"], 7);

    // A broken file (an unknown field): nothing changes, and `GET /fn` says why.
    app.replace(
        "functions.yaml",
        b"functions:\n  - name: echo\n    wasm: echo.wasm\n    colour: blue\n",
    );
    let listing = app
        .wait_for_listing("the config error", |l| l["configError"].is_string())
        .await;
    let error = listing["configError"].as_str().unwrap();
    assert!(error.contains("unknown field `colour`"), "{error}");
    assert_eq!(listing["functions"].as_array().unwrap().len(), 2);
    assert_eq!(app.post("/count", SENTENCE).await.status(), StatusCode::OK);

    // Fixed, without `words`: its routes are gone.
    app.replace(
        "functions.yaml",
        b"functions:\n  - name: echo\n    wasm: echo.wasm\n",
    );
    app.wait_for_listing("the fixed file", |l| {
        l["configError"].is_null() && l["functions"].as_array().unwrap().len() == 1
    })
    .await;
    assert_error(
        app.post("/count", SENTENCE).await,
        StatusCode::NOT_FOUND,
        "ERR_NOT_FOUND",
    )
    .await;
    assert_eq!(app.post("/fn/echo", "hi").await.text().await.unwrap(), "hi");
}

/// A wasi:http component declared in the functions file: mounted at its
/// path beside the functions (it sees the path below the mount point, its
/// query and any method), listed by `GET /fn`, its limits and environment
/// applied, and reloaded live when its wasm file changes.
#[tokio::test]
async fn a_component_is_mounted_at_its_path_and_reloaded_live() {
    let dir = with_guests(&[("echo.wasm", "echo")]);
    std::fs::copy(
        test_support::component_path("probes"),
        dir.path().join("svc.wasm"),
    )
    .unwrap();
    let app = App::serve_dir(
        dir,
        r#"
functions:
  - name: echo
    wasm: echo.wasm
components:
  - name: probes
    wasm: svc.wasm
    path: /svc/probes
    env: {GREETING: hello}
    limits: {timeout: 1s, maxInput: 1Ki}
"#,
        &["--app-id", "mounting-app", "--dapr-http-port", "3599"],
    )
    .await;

    // The function still answers; the component answers below its path.
    assert_eq!(
        app.post("/fn/echo", SENTENCE).await.text().await.unwrap(),
        SENTENCE
    );
    let echoed = app
        .client
        .put(format!("{}/svc/probes/echo?x=1", app.base))
        .body("to the component")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::OK);
    assert_eq!(echoed.headers()["x-method"], "PUT");
    assert_eq!(echoed.headers()["x-query"], "x=1");
    assert_eq!(echoed.text().await.unwrap(), "to the component");
    let env = app
        .client
        .get(format!("{}/svc/probes/env", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        env.starts_with("APP_ID=mounting-app\nDAPR_HTTP_PORT=3599\nGREETING=hello\n"),
        "{env}"
    );
    // Its own limits: 1 KiB bodies, a 1 s deadline.
    assert_error(
        app.post("/svc/probes/count", vec![0u8; 2048]).await,
        413,
        "ERR_BODY_TOO_LARGE",
    )
    .await;
    let spun = app
        .client
        .get(format!("{}/svc/probes/spin", app.base))
        .send()
        .await
        .unwrap();
    assert_error(spun, 504, "ERR_COMPONENT_TIMEOUT").await;
    // Paths that only share a prefix are not the component's.
    let beside = app
        .client
        .get(format!("{}/svc/probesX", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(beside.status(), StatusCode::NOT_FOUND);

    let listing = app.functions().await;
    let component = &listing["components"][0];
    assert_eq!(component["name"], "probes");
    assert_eq!(component["path"], "/svc/probes");
    let probes = std::fs::read(test_support::component_path("probes")).unwrap();
    assert_eq!(component["version"], version_of(&probes));
    assert_eq!(component["limits"]["maxInputBytes"], 1024);
    assert_eq!(
        component["allowOutbound"],
        serde_json::json!(["127.0.0.1:3599", "localhost:3599"])
    );

    // Replaced by another component: served live, no restart.
    let hello = std::fs::read(test_support::component_path("hello")).unwrap();
    app.replace("svc.wasm", &hello);
    app.wait_for_listing("the new component", |l| {
        l["components"][0]["version"] == version_of(&hello)
    })
    .await;
    let greeting = app
        .client
        .get(format!("{}/svc/probes/anything", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(greeting.text().await.unwrap(), "Hello, world!\n");

    // A broken file changes nothing, and says why.
    app.replace("svc.wasm", b"\0asm garbage");
    let listing = app
        .wait_for_listing("the reload error", |l| {
            l["components"][0]["reloadError"].is_string()
        })
        .await;
    let error = listing["components"][0]["reloadError"].as_str().unwrap();
    assert!(error.contains("is not a valid wasm component"), "{error}");
    let greeting = app
        .client
        .get(format!("{}/svc/probes/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(greeting.text().await.unwrap(), "Hello, world!\n");
}

#[test]
fn a_component_that_would_hide_a_route_or_another_component_is_refused() {
    let dir = with_guests(&[("echo.wasm", "echo")]);
    std::fs::copy(
        test_support::component_path("hello"),
        dir.path().join("c.wasm"),
    )
    .unwrap();
    let file = dir.path().join("functions.yaml");
    let cases: &[(&str, &str)] = &[
        (
            "functions:\n  - name: echo\n    wasm: echo.wasm\ncomponents:\n  - name: c\n    wasm: c.wasm\n    path: /fn\n",
            "would hide the route `/fn",
        ),
        (
            "components:\n  - name: a\n    wasm: c.wasm\n    path: /svc\n  - name: b\n    wasm: c.wasm\n    path: /svc/b\n",
            "overlaps component `a`",
        ),
        (
            "components:\n  - name: a\n    wasm: c.wasm\n    path: svc\n",
            "path: `svc` must start with `/`",
        ),
        (
            "components:\n  - name: a\n    wasm: c.wasm\n    path: /svc\n    env: {APP_ID: x}\n",
            "`APP_ID` is set by the app",
        ),
        (
            "components:\n  - name: a\n    wasm: c.wasm\n    path: /svc\n    allowOutbound: [nowhere]\n",
            "allowOutbound: `nowhere` is not HOST:PORT",
        ),
    ];
    for (yaml, expected) in cases {
        std::fs::write(&file, yaml).unwrap();
        let error = validate(&file)
            .err()
            .unwrap_or_else(|| panic!("accepted: {yaml}"));
        assert!(error.contains(expected), "`{error}` lacks `{expected}`");
    }
    // Components alone are a valid file.
    std::fs::write(
        &file,
        "components:\n  - name: a\n    wasm: c.wasm\n    path: /svc\n",
    )
    .unwrap();
    validate(&file).expect("a file of components only");
}
