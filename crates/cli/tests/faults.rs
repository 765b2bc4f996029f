//! The fault suite: the whole demo under `dapr-wasm up` while processes are
//! killed with SIGKILL under load, while Redis (the stats' state store) goes
//! away and comes back, and the SQLite store's durability across a killed
//! sidecar. Callers must get clear JSON errors, never hangs, the rest must
//! keep serving, and restarted processes must be found again by name
//! resolution with no other step.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{APP_IDS, DemoSpec, Up, wait_gone};
use test_support::{photo, repo_path};

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill9(pid: u64) {
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn dapr_wasm(up: &Up, ports: &[u16; 9], index: usize) -> Command {
    let (app_port, dapr_http_port, dapr_grpc_port) =
        (ports[2 * index], ports[2 * index + 1], ports[6 + index]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_dapr-wasm"));
    command
        .current_dir(repo_path(""))
        .env("DAPR_WASM_DATA_DIR", up.data.path())
        .env("DAPR_WASM_MODELS_DIR", local_dirs::models_dir().unwrap())
        .env("DAPR_WASM_LOG", "warn")
        .env("APP_ID", APP_IDS[index])
        .env("APP_PORT", app_port.to_string())
        .env("DAPR_HTTP_PORT", dapr_http_port.to_string())
        .env("DAPR_GRPC_PORT", dapr_grpc_port.to_string())
        .env("DAPR_METRICS_PORT", "0")
        .stdout(Stdio::null());
    command
}

/// Starts app `index` of the demo again, as `up` would.
fn restart_app(up: &Up, ports: &[u16; 9], index: usize) -> Guard {
    let mut command = dapr_wasm(up, ports, index);
    match index {
        0 => command.arg("web-port"),
        1 => command.args([
            "image-api",
            "--function",
            "grayscale=build/functions/grayscale.wasm",
        ]),
        _ => command.args([
            "image-api",
            "--function",
            "classify=build/functions/classify.wasm",
        ]),
    };
    Guard(command.spawn().unwrap())
}

/// Starts the sidecar of app `index` again, as `up` would.
fn restart_sidecar(up: &Up, ports: &[u16; 9], index: usize, components: &std::path::Path) -> Guard {
    let mut command = dapr_wasm(up, ports, index);
    // The ports come from the env vars, as `up` sets them.
    command
        .args(["sidecar", "--app-id", APP_IDS[index]])
        .args(["--app-port", &ports[2 * index].to_string()])
        .arg("--resources-path")
        .arg(components);
    Guard(command.spawn().unwrap())
}

/// One upload through web-port: `Ok(status or error code)` for a valid
/// answer, `Err` for anything else (no answer, a hang, a bad body).
async fn upload(client: &reqwest::Client, web: &str, api: &str) -> Result<String, String> {
    let body = photo(if api == "grayscale" {
        "cat.jpg"
    } else {
        "coffee.png"
    });
    let response = client
        .post(format!("{web}/api/hello"))
        .header("api", api)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if status == 200 {
        return match api {
            "grayscale" => image::load_from_memory(&bytes)
                .map(|_| "200".into())
                .map_err(|e| e.to_string()),
            _ => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(|v| v["label"].is_string())
                .map(|_| "200".into())
                .ok_or_else(|| "200 without a classification".to_string()),
        };
    }
    let error: Value =
        serde_json::from_slice(&bytes).map_err(|_| format!("{status} without JSON"))?;
    match (error["errorCode"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) if status >= 500 && !message.is_empty() => {
            Ok(format!("{status} {code}"))
        }
        _ => Err(format!("{status}: {error}")),
    }
}

/// Polls uploads of `api` until one gives `want` (a status, or a status and
/// an error code prefix); panics after 60 s.
async fn until(client: &reqwest::Client, web: &str, api: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = upload(client, web, api).await;
        match &got {
            Ok(outcome) if outcome.starts_with(want) => return outcome.clone(),
            Err(e) => panic!("{api}: {e}"),
            _ if Instant::now() > deadline => panic!("{api} never gave {want}; last {got:?}"),
            // A poll with a deadline, not a wait for luck: the next
            // upload is the readiness check.
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Uploads to both APIs in a loop until stopped; every answer must be valid
/// (a 200 or a JSON 5xx) and come within the client's timeout.
fn background_load(
    client: reqwest::Client,
    web: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let (mut answered, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            for api in ["grayscale", "classify"] {
                match upload(&client, &web, api).await {
                    Ok(_) => answered += 1,
                    Err(e) => failures.push(format!("{api}: {e}")),
                }
            }
        }
        (answered, failures)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_processes_give_clear_errors_and_restarted_ones_rejoin() {
    let (up, ports, dir) = Up::start_demo();
    let web = up.wait_ready();
    let components = dir.path().join("components");
    // Longer than any call here takes; a hang shows up as a failure.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(client.clone(), web.clone(), stop.clone());
    let mut restarted = Vec::new();

    // The grayscale app: grayscale fails clearly, classify goes on, and the
    // app started again on its port is used again.
    kill9(up.pid_of("image-api-grayscale", false));
    up.wait_for("image-api-grayscale exited");
    assert_eq!(
        until(&client, &web, "grayscale", "503").await,
        "503 ERR_IMAGE_APP_UNAVAILABLE"
    );
    assert_eq!(upload(&client, &web, "classify").await, Ok("200".into()));
    restarted.push(restart_app(&up, &ports, 1));
    until(&client, &web, "grayscale", "200").await;

    // The classify app's sidecar: the same, through name resolution.
    kill9(up.pid_of("image-api-classify", true));
    up.wait_for("image-api-classify sidecar exited");
    assert_eq!(
        until(&client, &web, "classify", "503").await,
        "503 ERR_IMAGE_APP_UNAVAILABLE"
    );
    assert_eq!(upload(&client, &web, "grayscale").await, Ok("200".into()));
    restarted.push(restart_sidecar(&up, &ports, 2, &components));
    until(&client, &web, "classify", "200").await;

    // web-port's own sidecar: 502 from web-port, then back.
    kill9(up.pid_of("web-port", true));
    up.wait_for("web-port sidecar exited");
    assert_eq!(
        until(&client, &web, "grayscale", "502").await,
        "502 ERR_SIDECAR"
    );
    restarted.push(restart_sidecar(&up, &ports, 0, &components));
    until(&client, &web, "grayscale", "200").await;
    until(&client, &web, "classify", "200").await;

    stop.store(true, Ordering::Relaxed);
    let (answered, failures) = load.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(answered > 0);

    // web-port itself: browsers are refused at once (nothing listens), the
    // image apps go on serving through their sidecars, and web-port started
    // again finds everything, its stats included.
    let counted_before = stats_count(&client, &web).await;
    kill9(up.pid_of("web-port", false));
    up.wait_for("web-port exited");
    // A new connection, as a browser opening the page makes: the shared
    // client's pooled one may still look alive for a moment and fail
    // mid-request instead.
    let refused = reqwest::Client::new()
        .get(format!("{web}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_connect(), "{refused}");
    let direct = client
        .post(format!(
            "http://127.0.0.1:{}/v1.0/invoke/image-api-grayscale/method/api/image",
            ports[3]
        ))
        .body(photo("cat.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    restarted.push(restart_app(&up, &ports, 0));
    let web_port = ports[0];
    test_support::wait_until(
        "web-port listens again",
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", web_port))
                .await
                .is_ok()
        },
    )
    .await;
    until(&client, &web, "classify", "200").await;
    assert!(stats_count(&client, &web).await > counted_before);

    // `up` itself: its children go with it.
    let children: Vec<u64> = up
        .processes()
        .into_iter()
        .skip(1)
        .map(|(_, pid)| pid)
        .collect();
    kill9(u64::from(up.child.id()));
    let left = wait_gone(&children, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "`up` was killed but these stayed: {left:?}"
    );
    drop(restarted);
}

/// web-port's count of successful uploads.
async fn stats_count(client: &reqwest::Client, web: &str) -> u64 {
    let (status, stats) = stats(client, web).await;
    assert_eq!(status, 200, "{stats}");
    stats["count"].as_u64().unwrap()
}

async fn stats(client: &reqwest::Client, web: &str) -> (u16, Value) {
    let response = client
        .get(format!("{web}/api/invokecount"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs redis-server installed (scripts/test.sh installs it and runs this)"]
async fn uploads_go_on_while_redis_is_down_and_stats_resume_when_it_returns() {
    let mut redis = test_support::RedisServer::start();
    let redis_port = redis.port();
    let spec = DemoSpec {
        state_store_spec: Some(format!(
            "  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"127.0.0.1:{redis_port}\"\n"
        )),
        ..DemoSpec::default()
    };
    let (up, _ports, _dir) = Up::start_demo_with(&spec);
    let web = up.wait_ready();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(45))
        .build()
        .unwrap();
    assert_eq!(upload(&client, &web, "grayscale").await, Ok("200".into()));
    let (status, counted) = stats(&client, &web).await;
    assert_eq!(
        (status, &counted["count"]),
        (200, &Value::from(1)),
        "{counted}"
    );

    redis.kill();
    for api in ["grayscale", "classify"] {
        assert_eq!(
            upload(&client, &web, api).await,
            Ok("200".into()),
            "{api} with Redis down"
        );
    }
    let (status, error) = stats(&client, &web).await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["errorCode"], "ERR_STATE_STORE", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("stats are unavailable"), "{message}");

    // Redis is back (empty: it keeps nothing on disk): counting resumes.
    redis.restart();
    test_support::wait_until("stats resume", Duration::from_secs(30), || async {
        assert_eq!(upload(&client, &web, "grayscale").await, Ok("200".into()));
        let (status, counted) = stats(&client, &web).await;
        status == 200 && counted["count"].as_u64() > Some(0)
    })
    .await;
    let exits = up.exits();
    assert!(exits.is_empty(), "{exits:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_saves_survive_a_killed_sidecar() {
    let data = tempfile::tempdir().unwrap();
    let components = data.path().join("components");
    std::fs::create_dir_all(&components).unwrap();
    std::fs::write(
        components.join("statestore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n",
            data.path().join("state.db").display()
        ),
    )
    .unwrap();
    // On port 0 each time: the restarted sidecar gets a new port, and the
    // test reads it from the sidecar's log.
    let start = || {
        let (child, address) = test_support::spawn_listening(
            Command::new(env!("CARGO_BIN_EXE_dapr-wasm"))
                .env("DAPR_WASM_DATA_DIR", data.path())
                .env("DAPR_WASM_LOG", "info")
                .env("DAPR_METRICS_PORT", "0")
                .args(["sidecar", "--app-id", "durable", "--dapr-http-port", "0"])
                .arg("--resources-path")
                .arg(&components),
        );
        (
            Guard(child),
            format!("http://{address}/v1.0/state/statestore"),
        )
    };
    let client = reqwest::Client::new();
    let (sidecar, url) = start();
    // Saves from 8 writers at once; the sidecar is killed right after the
    // last acknowledgement, with no chance to flush anything.
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        writers.spawn(async move {
            for i in 0..50 {
                let save = serde_json::json!([{ "key": format!("k{writer}-{i}"), "value": { "n": i, "writer": writer } }]);
                let response = client.post(&url).json(&save).send().await.unwrap();
                assert_eq!(response.status(), 204);
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let pid = u64::from(sidecar.0.id());
    kill9(pid);
    drop(sidecar);

    let (_sidecar, url) = start();
    for writer in 0..8 {
        for i in 0..50 {
            let response = client
                .get(format!("{url}/k{writer}-{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "k{writer}-{i} was lost");
            let value: Value = response.json().await.unwrap();
            assert_eq!(value, serde_json::json!({ "n": i, "writer": writer }));
        }
    }
}
