//! The Dapr multi-app run file (`dapr.yaml`, the format of `dapr run -f`):
//! the fields dapr-wasm uses, and the checks made before anything starts.
//!
//! ```yaml
//! version: 1
//! common:
//!   resourcesPath: ./components
//!   configFilePath: ./config.yaml   # a Dapr Configuration (tracing)
//!   env: { KEY: value }
//! apps:
//!   - appID: web-port
//!     appDirPath: ..
//!     appPort: 8080
//!     daprHTTPPort: 3500
//!     daprGRPCPort: 50001
//!     command: ["dapr-wasm", "web-port"]
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::RunnerError;

/// A `dapr.yaml` multi-app run file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFile {
    /// Format version (1).
    #[serde(default)]
    pub version: Option<u32>,
    /// Settings for every app.
    #[serde(default)]
    pub common: Common,
    /// The apps.
    pub apps: Vec<RunFileApp>,
}

/// `common:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// One components folder.
    pub resources_path: Option<String>,
    /// Several components folders.
    #[serde(default)]
    pub resources_paths: Vec<String>,
    /// Env vars for every app.
    #[serde(default)]
    pub env: BTreeMap<String, serde_yaml::Value>,
    /// A Dapr `Configuration` file for every sidecar (`--config`).
    pub config_file_path: Option<String>,
}

/// One entry of `apps:`.
#[derive(Debug, Deserialize)]
pub struct RunFileApp {
    /// The app id.
    #[serde(rename = "appID")]
    pub app_id: String,
    /// Its working directory, relative to the run file.
    #[serde(rename = "appDirPath", default)]
    pub app_dir_path: Option<String>,
    /// The port it listens on.
    #[serde(rename = "appPort", default)]
    pub app_port: Option<u16>,
    /// How its sidecar calls it: `http` (the default) or `grpc`.
    #[serde(rename = "appProtocol", default)]
    pub app_protocol: Option<String>,
    /// Its sidecar's HTTP port.
    #[serde(rename = "daprHTTPPort", default)]
    pub dapr_http_port: Option<u16>,
    /// Its sidecar's gRPC port.
    #[serde(rename = "daprGRPCPort", default)]
    pub dapr_grpc_port: Option<u16>,
    /// Its sidecar's metrics port (a free one when not given, as `dapr
    /// run` picks).
    #[serde(rename = "metricsPort", default)]
    pub metrics_port: Option<u16>,
    /// The app's own metrics port, passed as `APP_METRICS_PORT` (a
    /// dapr-wasm field; a free one when not given).
    #[serde(rename = "appMetricsPort", default)]
    pub app_metrics_port: Option<u16>,
    /// Its command line.
    pub command: Vec<String>,
    /// Its own env vars.
    #[serde(default)]
    pub env: BTreeMap<String, serde_yaml::Value>,
    /// Its own components folder.
    #[serde(rename = "resourcesPath", default)]
    pub resources_path: Option<String>,
    /// Its sidecar's Dapr `Configuration` file (`--config`), instead of
    /// the common one.
    #[serde(rename = "configFilePath", default)]
    pub config_file_path: Option<String>,
    /// How its sidecar probes its health (`dapr run`'s fields).
    #[serde(flatten)]
    pub health: AppHealthFields,
}

/// The app health fields of a run file entry; each becomes the sidecar
/// flag of the same name (`enableAppHealthCheck` → `--enable-app-health-check`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppHealthFields {
    /// Probe the app, and refuse invocations while it fails.
    #[serde(default)]
    pub enable_app_health_check: bool,
    /// The HTTP path probed.
    pub app_health_check_path: Option<String>,
    /// Seconds between probes.
    pub app_health_probe_interval: Option<u64>,
    /// Milliseconds a probe may take.
    pub app_health_probe_timeout: Option<u64>,
    /// Failures in a row that make the app unhealthy.
    pub app_health_threshold: Option<u32>,
}

impl AppHealthFields {
    /// The sidecar flags these fields stand for.
    pub fn sidecar_args(&self) -> Vec<String> {
        if !self.enable_app_health_check {
            return Vec::new();
        }
        let mut args = vec!["--enable-app-health-check".to_string()];
        let numbers = [
            (
                "--app-health-probe-interval",
                self.app_health_probe_interval,
            ),
            ("--app-health-probe-timeout", self.app_health_probe_timeout),
            (
                "--app-health-threshold",
                self.app_health_threshold.map(u64::from),
            ),
        ];
        let path = self.app_health_check_path.clone();
        let flags = numbers
            .into_iter()
            .map(|(flag, value)| (flag, value.map(|v| v.to_string())))
            .chain([("--app-health-check-path", path)]);
        for (flag, value) in flags {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value);
            }
        }
        args
    }
}

impl RunFile {
    /// Reads and checks a run file: version 1, at least one app, every app
    /// with a command and an id of its own, no port used twice.
    pub fn load(path: &Path) -> Result<RunFile, RunnerError> {
        let text = std::fs::read_to_string(path).map_err(|source| RunnerError::Io {
            what: "cannot read the run file",
            path: path.to_path_buf(),
            source,
        })?;
        let file: RunFile = serde_yaml::from_str(&text).map_err(|source| RunnerError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        file.check().map_err(|reason| RunnerError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(version) = self.version.filter(|&v| v != 1) {
            return Err(format!(
                "run file version {version} is not supported (use 1)"
            ));
        }
        if self.apps.is_empty() {
            return Err("it lists no apps".into());
        }
        let mut ids = HashSet::new();
        let mut ports = HashSet::new();
        for app in &self.apps {
            if app.app_id.is_empty() || app.app_id.contains('/') {
                return Err(format!("`{}` is not a valid app id", app.app_id));
            }
            if let Some(protocol) = app.app_protocol.as_deref()
                && !matches!(protocol, "http" | "grpc")
            {
                return Err(format!(
                    "app `{}`: appProtocol {protocol} is not supported (use http or grpc)",
                    app.app_id
                ));
            }
            if app.command.is_empty() {
                return Err(format!("app `{}` has no command", app.app_id));
            }
            if !ids.insert(&app.app_id) {
                return Err(format!("app id `{}` appears twice", app.app_id));
            }
            let named = [
                app.app_port,
                app.dapr_http_port,
                app.dapr_grpc_port,
                app.metrics_port,
                app.app_metrics_port,
            ]
            .into_iter()
            .flatten();
            for port in named.filter(|&port| port != 0) {
                if !ports.insert(port) {
                    return Err(format!("port {port} is used twice (app `{}`)", app.app_id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The sidecar's own flag parser.
    #[derive(Parser)]
    struct SidecarCommand {
        #[command(flatten)]
        args: sidecar::SidecarArgs,
    }

    #[test]
    fn app_health_fields_become_flags_the_sidecar_accepts() {
        let app: RunFileApp = serde_yaml::from_str(
            "appID: probed\nappPort: 8080\ncommand: [app]\nenableAppHealthCheck: true\n\
             appHealthCheckPath: /ready\nappHealthProbeInterval: 2\n\
             appHealthProbeTimeout: 300\nappHealthThreshold: 4\n",
        )
        .unwrap();
        let mut argv = vec!["sidecar", "--app-id", "probed", "--app-port", "8080"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        argv.extend(app.health.sidecar_args());
        let config = SidecarCommand::parse_from(argv)
            .args
            .validate()
            .unwrap()
            .app_health
            .expect("health checks are enabled");
        assert_eq!(config.path, "/ready");
        assert_eq!(config.interval, std::time::Duration::from_secs(2));
        assert_eq!(config.timeout, std::time::Duration::from_millis(300));
        assert_eq!(config.threshold, 4);

        let plain: RunFileApp = serde_yaml::from_str("appID: plain\ncommand: [app]\n").unwrap();
        assert!(plain.health.sidecar_args().is_empty());
    }
}
