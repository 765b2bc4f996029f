//! Service invocation through two real sidecars, and name resolution.

use std::time::Duration;

use serde_json::Value;
use sidecar::nameres::{Endpoints, Registry};
use test_support::sidecar::*;

#[tokio::test]
async fn two_apps_call_each_other_through_their_sidecars_by_app_id() {
    let data = tempfile::tempdir().unwrap();
    let (alpha_app, _a) = start_echo_app().await;
    let (beta_app, _b) = start_echo_app().await;
    let alpha = RunningSidecar::start(config("alpha", Some(alpha_app.port()), data.path())).await;
    let beta = RunningSidecar::start(config("beta", Some(beta_app.port()), data.path())).await;
    let client = reqwest::Client::new();

    // alpha -> beta, nested path, query, body, a spoofed caller id.
    let response = client
        .post(alpha.url("/v1.0/invoke/beta/method/echo/nested/path?x=1&y=two"))
        .header("dapr-caller-app-id", "spoofed")
        .header("x-custom", "kept")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body("hello beta")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo/nested/path");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["body"], "hello beta");
    assert_eq!(header(&echo, "dapr-caller-app-id"), Some("alpha"));
    assert_eq!(header(&echo, "dapr-callee-app-id"), Some("beta"));
    assert_eq!(header(&echo, "x-custom"), Some("kept"));
    assert_eq!(header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert!(header(&echo, "x-forwarded-host").is_some_and(|h| h.starts_with("127.0.0.1:")));
    let trace = header(&echo, "traceparent").unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{trace}"
    );

    // beta -> alpha with the dapr-app-id header form, and a PUT.
    let response = client
        .put(beta.url("/some/method?q=1"))
        .header("dapr-app-id", "alpha")
        .body("to alpha")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/some/method");
    assert_eq!(header(&echo, "dapr-caller-app-id"), Some("beta"));
    assert_eq!(header(&echo, "dapr-callee-app-id"), Some("alpha"));
    // A new trace was started.
    assert_eq!(header(&echo, "traceparent").map(str::len), Some(55));

    // Status, headers and body come back unchanged.
    let response = client
        .get(alpha.url("/v1.0/invoke/beta/method/status/418"))
        .send()
        .await
        .unwrap();
    assert_echo_status_passed_back(response, 418).await;

    // The app id as basic auth, as daprd takes it: what a client sends for
    // http://dapr-app-id:alpha@127.0.0.1:PORT/by/basic/auth.
    let response = client
        .post(beta.url("/by/basic/auth"))
        .basic_auth("dapr-app-id", Some("alpha"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/by/basic/auth");
    assert_eq!(header(&echo, "dapr-callee-app-id"), Some("alpha"));
    // Other credentials name no app: the path is an unknown route.
    let response = client
        .post(beta.url("/by/basic/auth"))
        .basic_auth("someone", Some("alpha"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    alpha.stop().await;
    beta.stop().await;
}

#[tokio::test]
async fn invocation_errors_are_dapr_errors() {
    let data = tempfile::tempdir().unwrap();
    let (app, _a) = start_echo_app().await;
    let alpha = RunningSidecar::start(config("alpha", Some(app.port()), data.path())).await;
    // gamma's sidecar runs, but nothing listens on its app port.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gamma = RunningSidecar::start(config("gamma", Some(closed_port), data.path())).await;
    let client = reqwest::Client::new();

    let message = assert_dapr_error(
        client
            .get(alpha.url("/v1.0/invoke/nobody/method/x"))
            .send()
            .await
            .unwrap(),
        404,
        "ERR_DIRECT_INVOKE",
    )
    .await;
    assert!(message.contains("nobody"), "{message}");

    let message = assert_dapr_error(
        client
            .get(alpha.url("/v1.0/invoke/gamma/method/x"))
            .send()
            .await
            .unwrap(),
        500,
        "ERR_DIRECT_INVOKE",
    )
    .await;
    assert!(
        message.starts_with("fail to invoke, id: gamma, err:"),
        "{message}"
    );

    assert_dapr_error(
        client
            .post(alpha.url("/v1.0/invoke/alpha/method/x"))
            .body(vec![0u8; (1 << 20) + 1])
            .send()
            .await
            .unwrap(),
        413,
        "ERR_BODY_TOO_LARGE",
    )
    .await;

    assert_dapr_error(
        client
            .get(alpha.url("/no/such/route"))
            .send()
            .await
            .unwrap(),
        404,
        "ERR_NOT_FOUND",
    )
    .await;
    alpha.stop().await;
    gamma.stop().await;
}

#[tokio::test]
async fn api_tokens_guard_the_api_and_the_app_token_reaches_the_app() {
    let data = tempfile::tempdir().unwrap();
    let (app, _a) = start_echo_app().await;
    let mut guarded = config("guarded", Some(app.port()), data.path());
    guarded.api_token = Some("sidecar-secret".into());
    guarded.app_api_token = Some("app-secret".into());
    let sidecar = RunningSidecar::start(guarded).await;
    let client = reqwest::Client::new();

    // Every API, and any other path, without the token or with a wrong one.
    let apis = [
        ("GET", "/v1.0/invoke/guarded/method/hi"),
        ("POST", "/v1.0/invoke/guarded/method/hi"),
        // The route peers' sidecars call.
        ("POST", "/_dapr-wasm/internal/invoke/guarded/hi"),
        ("GET", "/hi"),
        ("POST", "/v1.0/state/statestore"),
        ("POST", "/v1.0/state/statestore/bulk"),
        ("POST", "/v1.0/state/statestore/transaction"),
        ("GET", "/v1.0/state/statestore/key"),
        ("DELETE", "/v1.0/state/statestore/key"),
        ("GET", "/v1.0/secrets/localsecrets/bulk"),
        ("GET", "/v1.0/secrets/localsecrets/name"),
        ("GET", "/v1.0/metadata"),
        ("PUT", "/v1.0/metadata/key"),
        ("GET", "/v1.0/no-such-api"),
    ];
    for (method, path) in apis {
        for token in [None, Some("wrong"), Some("")] {
            let mut request = client
                .request(method.parse().unwrap(), sidecar.url(path))
                .header("dapr-app-id", "guarded")
                .body("[]");
            if let Some(token) = token {
                request = request.header("dapr-api-token", token);
            }
            assert_dapr_error(request.send().await.unwrap(), 401, "ERR_API_UNAUTHORIZED").await;
        }
    }
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let health = client.get(sidecar.url(path)).send().await.unwrap();
        assert_eq!(health.status(), 204, "{path} needs no token");
    }

    let response = client
        .get(sidecar.url("/v1.0/invoke/guarded/method/hi"))
        .header("dapr-api-token", "sidecar-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(
        header(&echo, "dapr-api-token"),
        Some("app-secret"),
        "the app sees APP_API_TOKEN, never the sidecar's token"
    );
    sidecar.stop().await;
}

/// Regression: the token layer used to exempt every path that *starts with*
/// `/v1.0/healthz`, so `POST /v1.0/healthz-anything` with `dapr-app-id`
/// reached the app through the header-routed invocation without a token.
/// Only `GET /v1.0/healthz` and `GET /v1.0/healthz/outbound` are open, as in
/// daprd. The requests go out as raw bytes so that no client normalises
/// the paths first.
#[tokio::test]
async fn only_the_two_health_checks_pass_without_a_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let data = tempfile::tempdir().unwrap();
    let (app, _a) = start_echo_app().await;
    let mut guarded = config("guarded", Some(app.port()), data.path());
    guarded.api_token = Some("sidecar-secret".into());
    let sidecar = RunningSidecar::start(guarded).await;

    /// Sends one request as written and returns the status and the body.
    async fn send(address: std::net::SocketAddr, method: &str, target: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\ndapr-app-id: guarded\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    }

    let paths = [
        "/v1.0/healthz-anything",
        "/v1.0/healthzz",
        "/v1.0/healthz/",
        "/v1.0/healthz/anything",
        "/v1.0/healthz/outbound/anything",
        "/v1.0/healthz/outbound-anything",
        "/v1.0/healthz/../metadata",
        "/v1.0/healthz/..%2Fmetadata",
        "/v1.0/healthz%2Foutbound",
        "/v1.0/%68ealthz",
        "/v1.0/healthz%00",
        "/v1.0/healthz;x=1",
        "/v1.0/HEALTHZ",
        "//v1.0/healthz",
        "/v1.0//healthz",
        "http://127.0.0.1/v1.0/healthz-anything",
    ];
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in paths {
            let (status, body) = send(sidecar.address, method, path).await;
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            assert!(
                body.contains("ERR_API_UNAUTHORIZED"),
                "{method} {path}: {body}"
            );
        }
    }
    // The health paths themselves are open to GET only.
    for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
            let (status, body) = send(sidecar.address, method, path).await;
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
        }
    }
    for path in [
        "/v1.0/healthz",
        "/v1.0/healthz/outbound",
        "/v1.0/healthz?x=1",
        "http://127.0.0.1/v1.0/healthz",
    ] {
        let (status, body) = send(sidecar.address, "GET", path).await;
        assert_eq!(status, 204, "GET {path} needs no token: {body}");
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn a_stopped_sidecar_deregisters_and_a_dead_one_expires() {
    let data = tempfile::tempdir().unwrap();
    let sidecar = RunningSidecar::start(config("short-lived", None, data.path())).await;
    let registry =
        Registry::open(&data.path().join("nameres.db"), Duration::from_secs(10)).unwrap();
    assert_eq!(
        registry.lookup("short-lived").unwrap(),
        Some(Endpoints {
            http: sidecar.address,
            grpc: Some(sidecar.grpc_address)
        })
    );
    sidecar.stop().await;
    assert_eq!(
        registry.lookup("short-lived").unwrap(),
        None,
        "clean shutdown deregisters"
    );

    // A sidecar that died without deregistering: its row stops refreshing.
    let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(1_000_000));
    let short_ttl = Registry::open(&data.path().join("nameres.db"), Duration::from_secs(1))
        .unwrap()
        .with_clock({
            let now = now.clone();
            move || now.load(std::sync::atomic::Ordering::SeqCst)
        });
    let address = Endpoints::http("127.0.0.1:45678".parse().unwrap());
    short_ttl.register("crashed", address).unwrap();
    now.fetch_add(1_000, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        short_ttl.lookup("crashed").unwrap(),
        Some(address),
        "fresh for exactly the TTL"
    );
    now.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        short_ttl.lookup("crashed").unwrap(),
        None,
        "stale entries expire"
    );
    // The next heartbeat of any sidecar deletes it.
    short_ttl
        .register("alive", Endpoints::http("127.0.0.1:45679".parse().unwrap()))
        .unwrap();
    let live: Vec<String> = short_ttl
        .list()
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(live, ["alive"]);
}

/// Regression: sidecars started at the same moment on one data directory
/// (as `dapr-wasm up` starts them) failed with "database is locked" while
/// the first one switched the new SQLite files to WAL mode.
#[test]
fn sidecars_started_together_on_one_data_dir_all_start() {
    // Several rounds on fresh directories: the race is in creating the files.
    for round in 0..20 {
        let data = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let starts: Vec<_> = (0..6)
            .map(|i| {
                let config = config(&format!("together-{i}"), None, data.path());
                let barrier = barrier.clone();
                // Separate threads and runtimes: truly simultaneous opens.
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    barrier.wait();
                    runtime.block_on(sidecar::Sidecar::new(config)).map(drop)
                })
            })
            .collect();
        for start in starts {
            let result = start.join().unwrap();
            assert!(result.is_ok(), "round {round}: {:?}", result.err());
        }
    }
}

/// A service with no sidecar, invoked as daprd invokes one: by the name of
/// an `HTTPEndpoint` resource (its base URL and headers, one of them from
/// a secret), or by its URL as the app id, over HTTP (encoded, written
/// out, or in the `dapr-app-id` header) and gRPC. Neither this sidecar's
/// tokens nor its app id reach the endpoint.
#[tokio::test]
async fn non_dapr_endpoints_are_invoked_by_name_and_by_url() {
    use super::grpc::{client, invoke, with_token};
    let resources = TestResources::new();
    let (external, _external) = start_echo_app().await;
    std::fs::write(
        resources.resources.path().join("endpoints.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: external\n\
             spec:\n  baseUrl: http://{external}/base/\n  headers:\n  - name: x-endpoint\n    value: from-resource\n  \
             - name: authorization\n    secretKeyRef:\n      name: token\n      key: token\n\
             auth:\n  secretStore: localsecrets\n\
             ---\napiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata:\n  name: not-mine\n\
             spec:\n  baseUrl: http://{external}\nscopes: [another-app]\n"
        ),
    )
    .unwrap();
    let mut config = resources.config("endpoint-caller", None);
    config.api_token = Some("caller-token".into());
    config.app_api_token = Some("app-token".into());
    let caller = RunningSidecar::start(config).await;
    let client_http = reqwest::Client::new();
    let token = |request: reqwest::RequestBuilder| request.header("dapr-api-token", "caller-token");

    // By name: the method path and query after the base URL's path, the
    // resource's headers over the caller's.
    let response = token(client_http.post(caller.url("/v1.0/invoke/external/method/orders/7?x=1")))
        .header("x-endpoint", "from-caller")
        .header("x-custom", "kept")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body("to the endpoint")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(timing.contains("desc=\"endpoint-caller\""), "{timing}");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/base/orders/7");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body"], "to the endpoint");
    assert_eq!(header(&echo, "x-endpoint"), Some("from-resource"));
    assert_eq!(header(&echo, "authorization"), Some("t0k"));
    assert_eq!(header(&echo, "x-custom"), Some("kept"));
    assert_eq!(header(&echo, "host"), Some(external.to_string().as_str()));
    let trace = header(&echo, "traceparent").unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{trace}"
    );
    for absent in ["dapr-api-token", "dapr-caller-app-id", "dapr-callee-app-id"] {
        assert_eq!(header(&echo, absent), None, "{absent}: {echo}");
    }

    // By URL, three ways.
    let url = format!("http://{external}");
    let encoded = url.replace(':', "%3A").replace('/', "%2F");
    let by_url = [
        token(
            client_http.post(caller.url(&format!("/v1.0/invoke/{encoded}/method/direct/path?q=1"))),
        ),
        token(client_http.post(caller.url(&format!("/v1.0/invoke/{url}/method/direct/path?q=1")))),
        token(client_http.post(caller.url("/direct/path?q=1"))).header("dapr-app-id", &url),
    ];
    for request in by_url {
        let response = request.body("by url").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["path"], "/direct/path", "{echo}");
        assert_eq!(echo["query"], "q=1", "{echo}");
        assert_eq!(echo["body"], "by url", "{echo}");
        assert_eq!(header(&echo, "x-endpoint"), None, "{echo}");
    }
    // The endpoint's status, headers and body come back as they came.
    let response =
        token(client_http.get(caller.url(&format!("/v1.0/invoke/{encoded}/method/status/418"))))
            .send()
            .await
            .unwrap();
    assert_echo_status_passed_back(response, 418).await;

    // The caller still needs its token.
    let response = client_http
        .post(caller.url("/v1.0/invoke/external/method/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // An endpoint scoped to another app is not this one's: an unknown app.
    let response = token(client_http.post(caller.url("/v1.0/invoke/not-mine/method/x")))
        .send()
        .await
        .unwrap();
    assert_dapr_error(response, 404, "ERR_DIRECT_INVOKE").await;
    // An endpoint that does not answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let response =
        token(client_http.post(caller.url(&format!("/v1.0/invoke/http://{closed}/method/x"))))
            .send()
            .await
            .unwrap();
    let message = assert_dapr_error(response, 500, "ERR_DIRECT_INVOKE").await;
    assert!(message.contains(&closed.to_string()), "{message}");

    // Over gRPC, by name and by URL.
    let mut dapr = client(&caller).await;
    for (id, path) in [
        ("external", "/base/grpc/call"),
        (url.as_str(), "/grpc/call"),
    ] {
        let answer = dapr
            .invoke_service(with_token(
                invoke(id, "grpc/call", b"over grpc"),
                Some("caller-token"),
            ))
            .await
            .unwrap()
            .into_inner();
        let echo: Value = serde_json::from_slice(&answer.data.unwrap().value).unwrap();
        assert_eq!(echo["path"], path, "{echo}");
        assert_eq!(echo["body"], "over grpc", "{echo}");
    }

    // The metadata APIs list the endpoint in scope.
    let metadata: Value = token(client_http.get(caller.url("/v1.0/metadata")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["httpEndpoints"],
        serde_json::json!([{"name": "external"}])
    );
    let metadata = dapr
        .get_metadata(with_token(
            dapr::dapr::proto::runtime::v1::GetMetadataRequest {},
            Some("caller-token"),
        ))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = metadata
        .http_endpoints
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["external"]);
    caller.stop().await;
}

/// An `https://` endpoint is checked against the resource's `rootCA`, and
/// shown its client certificate (here from a secret store); without them,
/// the call fails cleanly: the server's certificate is not one the system
/// trusts, and the server wants a client certificate.
#[tokio::test]
async fn an_https_endpoint_is_called_with_its_root_ca_and_client_certificate() {
    use test_support::tls;
    let resources = TestResources::new();
    let (server, _server) = tls::start_mtls_echo_app().await;
    let secrets_file = resources.data.path().join("tls-secrets.json");
    std::fs::write(
        &secrets_file,
        serde_json::json!({"client-cert": tls::CLIENT_PEM, "client-key": tls::CLIENT_KEY})
            .to_string(),
    )
    .unwrap();
    // (JSON is YAML: the PEM texts go in as JSON strings.)
    let endpoint = |name: &str, client_tls: Value| {
        serde_json::json!({
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "HTTPEndpoint",
            "metadata": {"name": name},
            "spec": {"baseUrl": format!("https://{server}"), "clientTLS": client_tls},
            "auth": {"secretStore": "tls-secrets"},
        })
        .to_string()
    };
    let documents = [
        serde_json::json!({
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "tls-secrets"},
            "spec": {"type": "secretstores.local.file", "version": "v1",
                     "metadata": [{"name": "secretsFile", "value": secrets_file}]},
        })
        .to_string(),
        endpoint(
            "secure",
            serde_json::json!({
                "rootCA": {"value": tls::CA_PEM},
                "certificate": {"secretKeyRef": {"name": "client-cert"}},
                "privateKey": {"secretKeyRef": {"name": "client-key"}},
            }),
        ),
        endpoint(
            "no-client-cert",
            serde_json::json!({"rootCA": {"value": tls::CA_PEM}}),
        ),
        endpoint("system-roots", Value::Null),
    ];
    std::fs::write(
        resources.resources.path().join("tls.yaml"),
        documents.join("\n---\n"),
    )
    .unwrap();
    let caller = RunningSidecar::start(resources.config("tls-caller", None)).await;
    let client = reqwest::Client::new();

    let response = client
        .post(caller.url("/v1.0/invoke/secure/method/over/tls?x=1"))
        .body("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/over/tls");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body"], "secret");

    // (The reasons are rustls's, as the sidecar's message passes them on.)
    for (refused, reason) in [
        (
            "/v1.0/invoke/no-client-cert/method/x".to_string(),
            "CertificateRequired",
        ),
        (
            "/v1.0/invoke/system-roots/method/x".to_string(),
            "UnknownIssuer",
        ),
        (
            format!("/v1.0/invoke/https://{server}/method/x"),
            "UnknownIssuer",
        ),
    ] {
        let response = client.post(caller.url(&refused)).send().await.unwrap();
        let message = assert_dapr_error(response, 500, "ERR_DIRECT_INVOKE").await;
        assert!(message.contains(reason), "{refused}: {message}");
    }
    // And the sidecar goes on serving.
    let response = client
        .get(caller.url("/v1.0/invoke/secure/method/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    caller.stop().await;
}
