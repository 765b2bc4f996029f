//! The load generator of the sidecar benchmark (`scripts/bench-sidecar.sh`):
//! one invocation path at a fixed rate, open loop, and its latency
//! percentiles as one JSON line.
//!
//! ```text
//! invoke_load direct  URL          RATE SECONDS BODY_BYTES   # POST URL
//! invoke_load direct-h2 URL        RATE SECONDS BODY_BYTES   # POST URL over HTTP/2 (h2c)
//! invoke_load haproxy URL          RATE SECONDS BODY_BYTES   # POST through HAProxy
//! invoke_load http    URL          RATE SECONDS BODY_BYTES   # POST through a sidecar
//! invoke_load grpc    ADDRESS/APP  RATE SECONDS BODY_BYTES   # gRPC InvokeService
//! invoke_load binding URL          RATE SECONDS BODY_BYTES   # POST {"operation":"execute","data":"xx..."}
//! ```
//!
//! Request `i` is due at `start + i / RATE` and is sent then, whether or
//! not earlier ones have answered (open loop: a stall does not slow the
//! offered load). Its latency runs from when it was sent; how late the
//! generator's timer sent it is reported apart (`max_send_lag_ms`), since
//! tokio's timer has a 1 ms granularity that is not the system's latency.
//! Every call's answer is read to its end before its latency is taken.
//! HTTP uses one pooled keep-alive client (reqwest, over hyper); gRPC one
//! HTTP/2 connection, as the SDKs do, on hyper's own HTTP/2 client, its
//! writes coalesced as the SDKs' are. With `GRPC_CLIENT=channel`, gRPC
//! goes through tonic's `Channel` instead, which hands every call to a
//! buffer task first: a cost of that client, not of the server measured,
//! and one the SDKs (grpc-go, grpcio) do not have. `direct-h2` posts over
//! that same HTTP/2 client (prior knowledge, one connection): a direct
//! call on the gRPC path's own client protocol, the baseline Dapr's perf
//! tests subtract from their gRPC figures. The generator runs on `THREADS`
//! worker threads (default 2).
//!
//! With `LATENCIES=FILE`, every call's latency (ms) is also appended to
//! FILE, one per line, so that runs can be pooled.

use std::time::{Duration, Instant};

use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use sidecar::grpc::coalesce::CoalescingStream;

/// gRPC (and `direct-h2`) over one HTTP/2 connection of hyper's own
/// client: no buffer task in between. Its writes are coalesced
/// ([`CoalescingStream`]), as grpc-go and grpcio write a unary request's
/// frames together: hyper alone writes a gRPC request's HEADERS, DATA and
/// end of stream as three segments, each of which can wake the server.
/// Coalesced, it is two: hyper queues the HEADERS from one task and the
/// body from another, so the two do not always meet in one turn.
#[derive(Clone)]
struct Http2Connection(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<hyper::Request<tonic::body::Body>> for Http2Connection {
    type Response = hyper::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

enum Target {
    Http(reqwest::Client, String),
    Http2(Http2Connection, hyper::Uri),
    Grpc(Box<DaprClient<Http2Connection>>, String),
    GrpcChannel(DaprClient<tonic::transport::Channel>, String),
}

fn invoke_request(app_id: &str, body: Vec<u8>) -> pb::InvokeServiceRequest {
    pb::InvokeServiceRequest {
        id: app_id.to_string(),
        message: Some(common::InvokeRequest {
            method: "echo".into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: body,
            }),
            content_type: "application/octet-stream".into(),
            http_extension: Some(common::HttpExtension {
                verb: Verb::Post.into(),
                querystring: String::new(),
            }),
        }),
    }
}

impl Target {
    /// Makes one call; a failure says what went wrong.
    async fn call(&self, body: Vec<u8>) -> Result<(), String> {
        let grpc_failure =
            |status: tonic::Status| format!("gRPC {:?}: {}", status.code(), status.message());
        match self {
            Target::Http(client, url) => {
                let response = client.post(url).body(body).send().await;
                let response = response.map_err(|e| format!("HTTP: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("HTTP status {}", response.status()));
                }
                let read = response.bytes().await;
                read.map(drop).map_err(|e| format!("HTTP body: {e}"))
            }
            Target::Http2(client, uri) => {
                use http_body_util::BodyExt;
                let body =
                    tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                let request = hyper::Request::post(uri.clone())
                    .body(body)
                    .map_err(|e| format!("HTTP/2 request: {e}"))?;
                let response = tower::ServiceExt::oneshot(client.clone(), request)
                    .await
                    .map_err(|e| format!("HTTP/2: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("HTTP/2 status {}", response.status()));
                }
                let read = response.into_body().collect().await;
                read.map(drop).map_err(|e| format!("HTTP/2 body: {e}"))
            }
            Target::Grpc(client, app_id) => client
                .clone()
                .invoke_service(invoke_request(app_id, body))
                .await
                .map(drop)
                .map_err(grpc_failure),
            Target::GrpcChannel(client, app_id) => client
                .clone()
                .invoke_service(invoke_request(app_id, body))
                .await
                .map(drop)
                .map_err(grpc_failure),
        }
    }
}

/// One HTTP/2 connection to `authority` (prior knowledge, no Nagle delay),
/// as the gRPC SDKs hold one to their sidecar.
async fn http2_connection(authority: &str) -> Http2Connection {
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .expect("the server accepts connections");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let io = hyper_util::rt::TokioIo::new(CoalescingStream::new(tcp));
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    Http2Connection(sender)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
    .enable_all()
    .build()
    .expect("a tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, target, rate, seconds, body_bytes] = args.as_slice() else {
        eprintln!(
            "usage: invoke_load direct|direct-h2|haproxy|http|grpc|binding URL|ADDRESS/APP RATE SECONDS BODY_BYTES"
        );
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE is a number");
    let seconds: f64 = seconds.parse().expect("SECONDS is a number");
    let mut body = vec![b'x'; body_bytes.parse().expect("BODY_BYTES is a number")];
    if mode == "binding" {
        // An output binding's request: the same bytes as its `data`.
        let data = String::from_utf8(body).expect("x's are UTF-8");
        body = serde_json::to_vec(&serde_json::json!({"operation": "execute", "data": data}))
            .expect("JSON");
    }
    let target = match mode.as_str() {
        "direct" | "haproxy" | "http" | "binding" => {
            Target::Http(reqwest::Client::new(), target.clone())
        }
        "grpc" => {
            let (address, app_id) = target.split_once('/').expect("grpc takes ADDRESS/APP");
            let origin: hyper::Uri = format!("http://{address}")
                .parse()
                .expect("ADDRESS is host:port");
            if std::env::var("GRPC_CLIENT").is_ok_and(|c| c == "channel") {
                let client = DaprClient::connect(origin)
                    .await
                    .expect("the sidecar's gRPC API");
                Target::GrpcChannel(client, app_id.to_string())
            } else {
                Target::Grpc(
                    Box::new(DaprClient::with_origin(
                        http2_connection(address).await,
                        origin,
                    )),
                    app_id.to_string(),
                )
            }
        }
        "direct-h2" => {
            let uri: hyper::Uri = target.parse().expect("URL is a URL");
            let authority = uri.authority().expect("URL has a host:port").to_string();
            Target::Http2(http2_connection(&authority).await, uri)
        }
        other => panic!("unknown mode {other}"),
    };
    let target = std::sync::Arc::new(target);
    let total = (rate * seconds) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (target, body) = (target.clone(), body.clone());
        calls.spawn(async move {
            let sent = Instant::now();
            let outcome = target.call(body).await;
            let lag = sent.saturating_duration_since(due).as_secs_f64() * 1000.0;
            (outcome, sent.elapsed().as_secs_f64() * 1000.0, lag)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut ok = 0;
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    let mut max_lag: f64 = 0.0;
    while let Some(result) = calls.join_next().await {
        let (outcome, ms, lag) = result.expect("a call task");
        match outcome {
            Ok(()) => ok += 1,
            Err(failure) => *failures.entry(failure).or_default() += 1,
        }
        latencies.push(ms);
        max_lag = max_lag.max(lag);
    }
    for (failure, count) in &failures {
        eprintln!("invoke_load: {count} call(s) failed: {failure}");
    }
    if let Ok(path) = std::env::var("LATENCIES") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("LATENCIES names a writable file");
        let lines: String = latencies.iter().map(|ms| format!("{ms:.4}\n")).collect();
        file.write_all(lines.as_bytes()).expect("latencies written");
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{{\"requests\": {total}, \"ok\": {ok}, \"p50_ms\": {:.4}, \"p90_ms\": {:.4}, \"p99_ms\": {:.4}, \"max_send_lag_ms\": {max_lag:.3}}}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0)
    );
}
