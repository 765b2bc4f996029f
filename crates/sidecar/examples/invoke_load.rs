//! The load generator of the sidecar benchmark (`scripts/bench-sidecar.sh`):
//! one invocation path at a fixed rate, open loop, and its latency
//! percentiles as one JSON line.
//!
//! ```text
//! invoke_load direct URL          RATE SECONDS BODY_BYTES   # POST URL
//! invoke_load http   URL          RATE SECONDS BODY_BYTES   # POST through a sidecar
//! invoke_load grpc   ADDRESS/APP  RATE SECONDS BODY_BYTES   # gRPC InvokeService
//! ```
//!
//! Request `i` is due at `start + i / RATE` and is sent then, whether or
//! not earlier ones have answered (open loop: a stall does not slow the
//! offered load). Its latency runs from when it was sent; how late the
//! generator's timer sent it is reported apart (`max_send_lag_ms`), since
//! tokio's timer has a 1 ms granularity that is not the system's latency.
//! HTTP uses one pooled keep-alive client; gRPC one HTTP/2 channel, as the
//! SDKs do. The generator runs on `THREADS` worker threads (default 2; 1
//! runs it on the current thread, which measured worse for gRPC: tonic's
//! channel then shares that thread with the timer loop).

use std::time::{Duration, Instant};

use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;

enum Target {
    Http(reqwest::Client, String),
    Grpc(DaprClient<tonic::transport::Channel>, String),
}

impl Target {
    async fn call(&self, body: Vec<u8>) -> bool {
        match self {
            Target::Http(client, url) => client
                .post(url)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Target::Grpc(client, app_id) => {
                let request = pb::InvokeServiceRequest {
                    id: app_id.clone(),
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
                };
                client.clone().invoke_service(request).await.is_ok()
            }
        }
    }
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
        eprintln!("usage: invoke_load direct|http|grpc URL|ADDRESS/APP RATE SECONDS BODY_BYTES");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE is a number");
    let seconds: f64 = seconds.parse().expect("SECONDS is a number");
    let body = vec![b'x'; body_bytes.parse().expect("BODY_BYTES is a number")];
    let target = match mode.as_str() {
        "direct" | "http" => Target::Http(reqwest::Client::new(), target.clone()),
        "grpc" => {
            let (address, app_id) = target.split_once('/').expect("grpc takes ADDRESS/APP");
            let client = DaprClient::connect(format!("http://{address}"))
                .await
                .expect("the sidecar's gRPC API");
            Target::Grpc(client, app_id.to_string())
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
            let ok = target.call(body).await;
            let lag = sent.saturating_duration_since(due).as_secs_f64() * 1000.0;
            (ok, sent.elapsed().as_secs_f64() * 1000.0, lag)
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut ok = 0;
    let mut max_lag: f64 = 0.0;
    while let Some(result) = calls.join_next().await {
        let (success, ms, lag) = result.expect("a call task");
        ok += usize::from(success);
        latencies.push(ms);
        max_lag = max_lag.max(lag);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{{\"requests\": {total}, \"ok\": {ok}, \"p50_ms\": {:.4}, \"p90_ms\": {:.4}, \"p99_ms\": {:.4}, \"max_send_lag_ms\": {max_lag:.3}}}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0)
    );
}
