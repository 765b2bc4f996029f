//! The load generator of `scripts/bench-serve.sh`: one URL at saturation,
//! closed loop, and the result as one JSON line.
//!
//! ```text
//! http_saturate URL CONNECTIONS SECONDS
//! ```
//!
//! `CONNECTIONS` workers each send `GET URL` on their own keep-alive
//! connection, the next as soon as the last is answered, for `SECONDS`
//! (after one second of warm-up, not counted). It prints requests per
//! second, the p50 and p99 latency and the count of failed requests.
//! With `LATENCIES=FILE`, every latency (ms) is appended to FILE, one per
//! line, so that rounds can be pooled. Runs on `THREADS` worker threads
//! (default 1, so the generator keeps to the core it is pinned to).

use std::io::Write;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, connections, seconds] = args.as_slice() else {
        return Err("usage: http_saturate URL CONNECTIONS SECONDS".into());
    };
    let connections: usize = connections.parse()?;
    let seconds: f64 = seconds.parse()?;
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let (latencies, failures) = runtime.block_on(saturate(
        url.clone(),
        connections,
        Duration::from_secs_f64(seconds),
    ))?;
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        sorted
            .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{{\"requests\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"failures\":{}}}",
        sorted.len(),
        sorted.len() as f64 / seconds,
        percentile(0.50),
        percentile(0.99),
        failures
    );
    if let Ok(path) = std::env::var("LATENCIES") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for latency in &latencies {
            writeln!(file, "{latency:.4}")?;
        }
    }
    Ok(())
}

async fn saturate(
    url: String,
    connections: usize,
    measured: Duration,
) -> Result<(Vec<f64>, u64), Box<dyn std::error::Error>> {
    let warm_up = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warm_up;
    let end = measure_from + measured;
    let mut workers = Vec::new();
    for _ in 0..connections {
        // One client per worker: one keep-alive connection each.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = match client.get(&url).send().await {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failures += 1;
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (mine, failed) = worker.await?;
        latencies.extend(mine);
        failures += failed;
    }
    Ok((latencies, failures))
}
