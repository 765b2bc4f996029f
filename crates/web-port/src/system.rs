//! The UI's System panel: each process of the demo, whether it answers, and
//! how many requests a second it serves, read from its metrics port.
//!
//! web-port is told where those ports are with `--system-metrics
//! NAME=URL,...` (env `SYSTEM_METRICS`; `dapr-wasm up` sets it for every
//! app, listing each app and each sidecar). `GET /api/system` scrapes them
//! all at once (each within [`SCRAPE_TIMEOUT`]) and gives, per target, its
//! health and its request rate since the previous scrape: the change in
//! the requests it counted, over the time between.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long one scrape may take before its target counts as down.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// The counters that count a process's requests: an app's HTTP requests,
/// a sidecar's HTTP and gRPC API calls.
const REQUEST_COUNTERS: [&str; 3] = [
    "http_server_requests_total",
    "dapr_http_server_request_count",
    "dapr_grpc_io_server_completed_rpcs",
];

/// One process to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in the panel (`web-port`, `web-port sidecar`, ...).
    pub name: String,
    /// Its `GET /metrics`.
    pub url: String,
}

/// Parses `NAME=URL,NAME=URL` (empty: no targets).
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}` is not NAME=URL"))?;
            if !url.starts_with("http://") {
                return Err(format!("`{url}` is not an http:// URL"));
            }
            Ok(Target {
                name: name.to_string(),
                url: url.to_string(),
            })
        })
        .collect()
}

/// One target as the panel shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Its name.
    pub name: String,
    /// Whether its metrics answered.
    pub healthy: bool,
    /// Requests a second since the last look (none on the first).
    pub requests_per_second: Option<f64>,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The targets and what the last look at each counted.
pub struct SystemWatch {
    targets: Vec<Target>,
    client: reqwest::Client,
    last: Mutex<HashMap<String, (Instant, f64)>>,
}

impl SystemWatch {
    /// Watches `targets`.
    pub fn new(targets: Vec<Target>) -> SystemWatch {
        SystemWatch {
            targets,
            client: reqwest::Client::new(),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Looks at every target at once.
    pub async fn look(&self) -> Vec<Status> {
        let scrapes = self.targets.iter().map(|target| async move {
            let scraped = self.requests_counted(&target.url).await;
            (target, scraped, Instant::now())
        });
        let mut statuses = Vec::new();
        for (target, scraped, at) in futures_util::future::join_all(scrapes).await {
            statuses.push(match scraped {
                Ok(total) => {
                    let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                    let rate = last.insert(target.url.clone(), (at, total)).and_then(
                        |(before, counted)| {
                            let seconds = at.duration_since(before).as_secs_f64();
                            (seconds > 0.0).then(|| (total - counted).max(0.0) / seconds)
                        },
                    );
                    Status {
                        name: target.name.clone(),
                        healthy: true,
                        requests_per_second: rate,
                        error: None,
                    }
                }
                Err(error) => Status {
                    name: target.name.clone(),
                    healthy: false,
                    requests_per_second: None,
                    error: Some(error),
                },
            });
        }
        statuses
    }

    /// The requests the process at `url` counted so far.
    async fn requests_counted(&self, url: &str) -> Result<f64, String> {
        let response = self
            .client
            .get(url)
            .timeout(SCRAPE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        Ok(requests_in(&text))
    }
}

/// The sum of the request counters in a Prometheus text exposition.
fn requests_in(text: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let name = line.split(['{', ' ']).next()?;
            if !REQUEST_COUNTERS.contains(&name) {
                return None;
            }
            line.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_name_equals_url_pairs() {
        let targets = parse_targets(
            "web-port=http://127.0.0.1:1/metrics, sidecar=http://127.0.0.1:2/metrics",
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].name, "sidecar");
        assert_eq!(targets[1].url, "http://127.0.0.1:2/metrics");
        assert!(parse_targets("").unwrap().is_empty());
        assert!(parse_targets("nourl").is_err());
        assert!(parse_targets("a=ftp://x").is_err());
    }

    #[test]
    fn only_request_counters_are_summed() {
        let text = "# TYPE http_server_requests_total counter\n\
            http_server_requests_total{http_route=\"/a\"} 3\n\
            http_server_requests_total{http_route=\"/b\"} 4\n\
            http_server_request_duration_seconds_count 7\n\
            dapr_grpc_io_server_completed_rpcs{grpc_server_method=\"x\"} 2\n";
        assert_eq!(requests_in(text), 9.0);
    }
}
