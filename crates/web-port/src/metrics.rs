//! web-port's own metrics, served with its HTTP requests' on its metrics
//! port (`--metrics-port`, see [`service_kit::metrics`]):
//!
//! - `web_port_uploads_total{api, status}`: uploads, by image API and the
//!   status they were answered with;
//! - `web_port_upload_duration_seconds{api}`: an upload's round trip
//!   through the image app (its answer's `Server-Timing` has the parts);
//! - `web_port_stats_conflict_retries_total`: stats updates started over
//!   because another writer won the etag race (409, see [`crate::stats`]).

use std::time::Duration;

use service_kit::metrics::{
    HistogramVec, IntCounter, IntCounterVec, MetricsError, Registry, SECONDS_BUCKETS, counter,
    histogram,
};

/// web-port's metric families.
pub struct WebPortMetrics {
    registry: Registry,
    uploads: IntCounterVec,
    upload_duration: HistogramVec,
    stats_conflict_retries: IntCounter,
}

impl WebPortMetrics {
    /// The families, all at zero, in a registry of their own.
    pub fn new() -> Result<WebPortMetrics, MetricsError> {
        let registry = Registry::new();
        Ok(WebPortMetrics {
            uploads: counter(
                &registry,
                "web_port_uploads_total",
                "Uploads, by image API and answer status.",
                &["api", "status"],
            )?,
            upload_duration: histogram(
                &registry,
                "web_port_upload_duration_seconds",
                "An upload's round trip through the image app, by image API.",
                &["api"],
                &SECONDS_BUCKETS,
            )?,
            stats_conflict_retries: counter(
                &registry,
                "web_port_stats_conflict_retries_total",
                "Stats updates started over after losing an etag race (409).",
                &[],
            )?
            .with_label_values::<&str>(&[]),
            registry,
        })
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One upload to `api`, answered with `status` after `elapsed`.
    pub fn record_upload(&self, api: &str, status: u16, elapsed: Duration) {
        self.uploads
            .with_label_values(&[api, status.to_string().as_str()])
            .inc();
        self.upload_duration
            .with_label_values(&[api])
            .observe(elapsed.as_secs_f64());
    }

    /// One stats update started over after a 409.
    pub fn record_stats_conflict(&self) {
        self.stats_conflict_retries.inc();
    }
}
