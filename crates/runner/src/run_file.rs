//! The Dapr multi-app run file (`dapr.yaml`, the format of `dapr run -f`):
//! the fields dapr-wasm uses, and the checks made before anything starts.
//!
//! ```yaml
//! version: 1
//! common:
//!   resourcesPath: ./components
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
    /// Its command line.
    pub command: Vec<String>,
    /// Its own env vars.
    #[serde(default)]
    pub env: BTreeMap<String, serde_yaml::Value>,
    /// Its own components folder.
    #[serde(rename = "resourcesPath", default)]
    pub resources_path: Option<String>,
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
            let named = [app.app_port, app.dapr_http_port, app.dapr_grpc_port]
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
