//! App health checks (`--enable-app-health-check`), as daprd does them.
//!
//! The sidecar probes its app every `--app-health-probe-interval`: an HTTP
//! app with `GET --app-health-check-path` (a 2xx is healthy), a gRPC app
//! with `AppCallbackHealthCheck.HealthCheck` (an OK is healthy). Each probe
//! has `--app-health-probe-timeout`. After `--app-health-threshold` failures
//! in a row the app is unhealthy; one success makes it healthy again.
//!
//! While the app is unhealthy, invocations of it end in the sidecar with
//! `ERR_DIRECT_INVOKE` ([`Sidecar::check_app_healthy`]) instead of piling
//! onto an app that cannot take them. The app counts as unhealthy until
//! its first successful probe. Without the flag the app is always healthy.

use std::time::Duration;

use axum::body::Body;

use crate::Sidecar;
use crate::args::AppProtocol;
use crate::error::DaprError;

/// How the app is probed (daprd's flags and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealthConfig {
    /// The HTTP path probed (`--app-health-check-path`, `/healthz`).
    pub path: String,
    /// Time between probes (`--app-health-probe-interval`, 5 s).
    pub interval: Duration,
    /// How long a probe may take (`--app-health-probe-timeout`, 500 ms).
    pub timeout: Duration,
    /// Failures in a row that make the app unhealthy
    /// (`--app-health-threshold`, 3).
    pub threshold: u32,
}

impl Sidecar {
    /// Whether the app may be sent work: always without health checks;
    /// with them, whether the last probes say so.
    pub fn app_is_healthy(&self) -> bool {
        *self.app_healthy.borrow()
    }

    /// [`Sidecar::app_is_healthy`], as the error an invocation ends with.
    pub(crate) fn check_app_healthy(&self) -> Result<(), DaprError> {
        if self.app_is_healthy() {
            Ok(())
        } else {
            Err(DaprError::DirectInvoke {
                id: self.config.app_id.clone(),
                reason: "app is not in a healthy state".into(),
            })
        }
    }

    /// One probe of the app: `Ok` when it answers healthy in time, else
    /// why not.
    async fn probe_app(&self, config: &AppHealthConfig) -> Result<(), String> {
        let port = self.config.app_port.ok_or("no app port")?;
        let probe = async {
            match (self.config.app_protocol, &self.app_health_client) {
                (AppProtocol::Grpc, Some(client)) => client
                    .clone()
                    .health_check(())
                    .await
                    .map(drop)
                    .map_err(|status| format!("HealthCheck answered {status}")),
                _ => {
                    let uri = format!("http://127.0.0.1:{port}{}", config.path);
                    let request = axum::http::Request::get(uri)
                        .body(Body::empty())
                        .map_err(|e| e.to_string())?;
                    let response = self
                        .client
                        .request(request)
                        .await
                        .map_err(|e| e.to_string())?;
                    if response.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "GET {} answered {}",
                            config.path,
                            response.status()
                        ))
                    }
                }
            }
        };
        tokio::time::timeout(config.timeout, probe)
            .await
            .map_err(|_| format!("no answer within {:?}", config.timeout))?
    }

    /// Probes the app until the sidecar stops, updating its health and
    /// logging each change.
    pub(crate) async fn watch_app_health(self: std::sync::Arc<Self>, config: AppHealthConfig) {
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                _ = ticker.tick() => {}
            }
            match self.probe_app(&config).await {
                Ok(()) => {
                    failures = 0;
                    if !self.app_healthy.send_replace(true) {
                        tracing::info!(app_id = %self.config.app_id, "app is healthy");
                    }
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(failures, %reason, "app health probe failed");
                    if failures >= config.threshold && self.app_healthy.send_replace(false) {
                        tracing::warn!(app_id = %self.config.app_id, %reason, "app is unhealthy; invocations of it are refused");
                    }
                }
            }
        }
    }
}
