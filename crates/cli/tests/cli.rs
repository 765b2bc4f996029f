//! The real `dapr-wasm` binary, started the way a user starts it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use test_support::{repo_path, wasm_path};

fn grayscale_wasm() -> PathBuf {
    wasm_path("grayscale")
}

fn dapr_wasm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dapr-wasm"));
    let cache = std::env::temp_dir().join(format!("dapr-wasm-cli-test-{}", std::process::id()));
    command
        .env("DAPR_WASM_CACHE_DIR", cache)
        // A sidecar's metrics on a free port: tests run side by side.
        .env("DAPR_METRICS_PORT", "0")
        .env_remove("APP_PORT");
    command
}

/// Kills the child if a test fails before it is stopped.
struct Running(Child);

impl Running {
    /// Sends SIGTERM (as Ctrl-C or a supervisor would) and waits for exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.0.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dapr-wasm image-api` on port 0 and returns it with its address,
/// read from its "listening on" log line.
fn start_image_api() -> (Running, String) {
    let mut command = dapr_wasm();
    command
        .args(["image-api", "--app-port", "0", "--function"])
        .arg(format!("grayscale={}", grayscale_wasm().display()));
    start_and_read_address(command)
}

/// Spawns `command` and returns it with the URL of its "listening on" line.
fn start_and_read_address(mut command: Command) -> (Running, String) {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dapr-wasm");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                let url = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dapr-wasm printed its address");
    (Running(child), url)
}

#[tokio::test]
async fn image_api_serves_a_photo_and_stops_cleanly_on_sigterm() {
    let (mut running, url) = start_image_api();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "binds loopback: {url}"
    );
    let photo = std::fs::read(repo_path("testdata/coffee-1024x768.jpg")).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{url}/api/image"))
        .body(photo)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let gray = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((gray.width(), gray.height()), (1024, 768));

    let status = running.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn image_api_refuses_a_missing_function_before_binding() {
    let output = dapr_wasm()
        .args([
            "image-api",
            "--app-port",
            "0",
            "--function",
            "grayscale=/nonexistent.wasm",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent.wasm does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// `dapr-wasm serve FILE.wasm`, as a user runs it: a wasi:http component
/// answers, the component's environment comes from the flags, and SIGTERM
/// stops it cleanly.
#[tokio::test]
async fn serve_runs_a_wasi_http_component_and_stops_cleanly_on_sigterm() {
    let mut command = dapr_wasm();
    command
        .args([
            "serve",
            "--app-port",
            "0",
            "--app-id",
            "probe-app",
            "--env",
            "GREETING=hi",
        ])
        .arg(test_support::component_path("probes"));
    let (mut running, url) = start_and_read_address(command);
    let client = reqwest::Client::new();
    let env = client
        .get(format!("{url}/env"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        env.starts_with("APP_ID=probe-app\nGREETING=hi\nfile:unreadable\n"),
        "{env}"
    );
    let echoed = client
        .post(format!("{url}/echo"))
        .body("round trip")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.text().await.unwrap(), "round trip");
    let status = running.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn serve_refuses_a_file_that_is_not_a_component_before_binding() {
    let output = dapr_wasm()
        .args(["serve", "--app-port", "0"])
        .arg(repo_path("testdata/cat.jpg"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a valid wasm component"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// A tracing setup that cannot work stops a sidecar or an app before it
/// listens, saying what is wrong.
#[test]
fn a_bad_tracing_configuration_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: t\nspec:\n  tracing:\n    samplingRate: \"lots\"\n",
    )
    .unwrap();
    let refused = |command: &mut Command| {
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(!output.status.success(), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
        stderr
    };
    let stderr = refused(
        dapr_wasm()
            .args([
                "sidecar",
                "--app-id",
                "t",
                "--dapr-http-port",
                "0",
                "--config",
            ])
            .arg(&config)
            .env("DAPR_WASM_DATA_DIR", dir.path()),
    );
    assert!(
        stderr.contains("--config: a sampling rate is a number from 0 to 1, not \"lots\""),
        "{stderr}"
    );
    let stderr =
        refused(dapr_wasm().args(["sidecar", "--app-id", "t", "--config", "/nonexistent.yaml"]));
    assert!(
        stderr.contains("cannot read the Dapr configuration /nonexistent.yaml"),
        "{stderr}"
    );
    let stderr = refused(
        dapr_wasm()
            .args(["image-api", "--app-port", "0", "--function"])
            .arg(format!("grayscale={}", grayscale_wasm().display()))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
    );
    assert!(
        stderr.contains(
            "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not carrier-pigeon"
        ),
        "{stderr}"
    );
}

#[test]
fn run_converts_stdin_and_reports_bad_input_with_the_guest_exit_code() {
    let run = |input: &[u8]| {
        let mut child = dapr_wasm()
            .args(["--log-level", "warn", "run"])
            .arg(grayscale_wasm())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let photo = std::fs::read(repo_path("testdata/cat.jpg")).unwrap();
    let output = run(&photo);
    assert!(output.status.success());
    let gray = image::load_from_memory(&output.stdout).unwrap();
    assert_eq!((gray.width(), gray.height()), (451, 300));

    let output = run(b"plain text");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("unsupported image"));
}

#[test]
fn run_classifies_with_the_fetched_model() {
    let mut child = dapr_wasm()
        .args(["--log-level", "warn", "run"])
        .arg(wasm_path("classify"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let photo = std::fs::read(repo_path("testdata/coffee.png")).unwrap();
    child.stdin.take().unwrap().write_all(&photo).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["label"], "espresso", "{answer}");
}

#[test]
fn classify_without_its_model_or_runtime_fails_at_startup_with_the_fix() {
    let start = |extra: &[&str]| {
        let output = dapr_wasm()
            .args(["image-api", "--app-port", "0", "--function"])
            .arg(format!("classify={}", wasm_path("classify").display()))
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(!stderr.contains("listening"), "{stderr}");
        stderr
    };
    let stderr = start(&["--models-dir", "/nonexistent-models"]);
    assert!(stderr.contains("run `dapr-wasm models fetch`"), "{stderr}");
    let stderr = start(&[
        "--nn-backend",
        "onnxruntime",
        "--onnxruntime-lib",
        "/nonexistent/libonnxruntime.so",
    ]);
    assert!(
        stderr.contains(
            "ONNX Runtime is not available: /nonexistent/libonnxruntime.so does not exist"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn sidecar_reads_dapr_env_vars_serves_and_deregisters_on_sigterm() {
    let data = std::env::temp_dir().join(format!("dapr-wasm-cli-sidecar-{}", std::process::id()));
    let mut command = dapr_wasm();
    command
        .arg("sidecar")
        .env("APP_ID", "cli-sidecar")
        .env("DAPR_HTTP_PORT", "0")
        .env("DAPR_WASM_DATA_DIR", &data);
    let (mut running, url) = start_and_read_address(command);
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "binds loopback: {url}"
    );
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{url}/v1.0/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 204);
    let metadata = test_support::get_json(format!("{url}/v1.0/metadata")).await;
    assert_eq!(metadata["id"], "cli-sidecar");
    assert_eq!(metadata["components"][0]["name"], "statestore");

    assert!(running.terminate().success());
    let registry =
        sidecar::nameres::Registry::open(&data.join("nameres.db"), sidecar::nameres::DEFAULT_TTL)
            .unwrap();
    assert_eq!(
        registry.lookup("cli-sidecar").unwrap(),
        None,
        "deregistered"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// Serves `body` to every request over TLS with the test certificate
/// (tests/tls) on a loopback port; returns the port.
async fn serve_over_tls(body: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = repo_path("crates/cli/tests/tls");
    let certs = CertificateDer::pem_file_iter(tls.join("cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls.join("key.pem")).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate hangs up here.
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let status = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(status.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// A `bindings.wasm` component with an `https://` URL: fetched at start-up
/// from a server the system's trust store (here `SSL_CERT_FILE`, as a
/// private CA is given) vouches for, and refused, naming the binding and
/// the reason, when nothing vouches for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_fetches_an_https_binding_url_checking_the_certificate() {
    let port = serve_over_tls(std::fs::read(wasm_path("echo")).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("components");
    std::fs::create_dir(&resources).unwrap();
    let url = format!("https://localhost:{port}/echo.wasm");
    std::fs::write(
        resources.join("echo.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: remote-echo\nspec:\n  type: bindings.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: \"{url}\"\n"
        ),
    )
    .unwrap();
    let sidecar = |ca: &str| {
        let mut command = dapr_wasm();
        command
            .arg("sidecar")
            .arg("--resources-path")
            .arg(&resources)
            .env("APP_ID", "https-binding")
            .env("DAPR_HTTP_PORT", "0")
            .env("DAPR_GRPC_PORT", "0")
            .env("DAPR_WASM_DATA_DIR", dir.path().join(format!("data-{ca}")))
            .env_remove("SSL_CERT_DIR");
        match ca {
            "untrusted" => command.env("SSL_CERT_FILE", repo_path("crates/cli/tests/tls/cert.pem")),
            _ => command.env("SSL_CERT_FILE", repo_path("crates/cli/tests/tls/ca.pem")),
        };
        command
    };

    // Trusting only the server's own (non-CA) certificate vouches for nothing.
    let mut untrusted = sidecar("untrusted");
    let refused = tokio::task::spawn_blocking(move || untrusted.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("binding `remote-echo`: cannot fetch {url}"))
            && stderr.contains("certificate"),
        "{stderr}"
    );

    let trusted = sidecar("trusted");
    let (mut running, sidecar_url) =
        tokio::task::spawn_blocking(move || start_and_read_address(trusted))
            .await
            .unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{sidecar_url}/v1.0/bindings/remote-echo"))
        .json(&serde_json::json!({"operation": "execute", "data": "over tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "\"over tls\"");
    assert!(running.terminate().success());
}

/// Runs `command` and returns its stdout; fails the test with its stderr.
fn output_of(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `dapr-wasm new` in each language: the skeleton builds with its own
/// script, lands in the functions file, is served by `dapr-wasm
/// functions`, and answers what the printed example says.
#[tokio::test]
async fn new_writes_skeletons_that_build_and_are_served_from_the_functions_file() {
    let dir = tempfile::tempdir().unwrap();
    let languages = [
        ("hello-rust", "rust"),
        ("hello-c", "c"),
        ("hello-as", "assemblyscript"),
        ("hello-js", "js"),
    ];
    for (name, lang) in languages {
        let said = output_of(
            dapr_wasm()
                .current_dir(dir.path())
                .args(["new", name, "--lang", lang]),
        );
        assert!(said.contains(&format!("bash {name}/build.sh")), "{said}");
        assert!(said.contains(&format!("/fn/{name}")), "{said}");
        assert!(said.contains("type: bindings.wasm"), "{said}");
        // The skeleton's own build, as a user runs it (not under this
        // test's clippy wrapper).
        output_of(
            Command::new("bash")
                .arg(format!("{name}/build.sh"))
                .current_dir(dir.path())
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("CLIPPY_ARGS")
                .env_remove("CARGO_TARGET_DIR"),
        );
        assert!(dir.path().join(name).join(format!("{name}.wasm")).is_file());
    }
    // The same name twice is refused, and the file is left as it was.
    let file = dir.path().join("functions.yaml");
    let before = std::fs::read_to_string(&file).unwrap();
    let refused = dapr_wasm()
        .current_dir(dir.path())
        .args(["new", "hello-c", "--lang", "c", "--dir", "again"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already declares a function `hello-c`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let mut command = dapr_wasm();
    command.current_dir(dir.path()).args([
        "functions",
        "--config",
        "functions.yaml",
        "--app-port",
        "0",
        "--reload-interval",
        "100ms",
        "--watch",
    ]);
    let (mut running, url) = start_and_read_address(command);
    let client = reqwest::Client::new();
    for (name, _) in languages {
        let response = client
            .post(format!("{url}/fn/{name}"))
            .body("Dapr")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.text().await.unwrap(),
            "{\"greeting\":\"Hello, Dapr!\"}\n",
            "{name}"
        );
    }
    let greet = |name: &'static str| {
        let request = client.post(format!("{url}/fn/{name}")).body("Dapr").send();
        async move {
            match request.await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
    };
    // --watch: a saved source is rebuilt (the entry's `build`) and served.
    let source = dir.path().join("hello-c/main.c");
    let edited = std::fs::read_to_string(&source)
        .unwrap()
        .replace("Hello, %s!", "Howdy, %s!");
    std::fs::write(&source, edited).unwrap();
    test_support::wait_until(
        "the edited C function answers",
        std::time::Duration::from_secs(60),
        || {
            let answer = greet("hello-c");
            async move { answer.await == "{\"greeting\":\"Howdy, Dapr!\"}\n" }
        },
    )
    .await;
    // A JavaScript function's script is read at each call: no build.
    let script = dir.path().join("hello-js/index.js");
    let edited = std::fs::read_to_string(&script)
        .unwrap()
        .replace("`Hello, ${name}!`", "`Hi, ${name}!`");
    std::fs::write(&script, edited).unwrap();
    assert_eq!(greet("hello-js").await, "{\"greeting\":\"Hi, Dapr!\"}\n");
    let status = running.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn functions_refuses_a_bad_functions_file_before_binding_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("functions.yaml");
    std::fs::write(&file, "functions:\n  - name: ghost\n    wasm: ghost.wasm\n").unwrap();
    let output = dapr_wasm()
        .args(["functions", "--app-port", "0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("function `ghost`: wasm: ") && stderr.contains("ghost.wasm does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}
