//! From a [`RunFile`] to what each app needs to start: an [`AppPlan`].

use std::path::{Path, PathBuf};

use service_kit::trace::TracingConfig;

use crate::{RunFile, RunnerError};

/// Where the sidecars' HTTP ports start when the run file names none
/// (counting up from daprd's default, one per app in file order).
pub const FIRST_DAPR_HTTP_PORT: u16 = 3500;
/// Where the sidecars' gRPC ports start when the run file names none.
pub const FIRST_DAPR_GRPC_PORT: u16 = 50001;

/// One app, resolved: paths absolute, ports chosen, env vars set.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// The app id.
    pub app_id: String,
    /// Its working directory.
    pub dir: PathBuf,
    /// The port it listens on, if any.
    pub app_port: Option<u16>,
    /// How its sidecar calls it (`http` or `grpc`).
    pub app_protocol: String,
    /// Its sidecar's HTTP port.
    pub dapr_http_port: u16,
    /// Its sidecar's gRPC port.
    pub dapr_grpc_port: u16,
    /// Its sidecar's metrics port.
    pub metrics_port: u16,
    /// The app's own metrics port (`APP_METRICS_PORT`).
    pub app_metrics_port: u16,
    /// Its program (this very binary for `dapr-wasm`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its env vars: the run file's, then Dapr's (`APP_ID`, `APP_PORT`,
    /// `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `DAPR_METRICS_PORT`), and
    /// dapr-wasm's `APP_METRICS_PORT` and `SYSTEM_METRICS`; with a
    /// `Configuration` that traces, OpenTelemetry's (`OTEL_SERVICE_NAME`,
    /// the exporter and the rate: [`TracingConfig::to_env`]) where the run
    /// file sets none of its own, so the app's spans join its sidecar's.
    pub env: Vec<(String, String)>,
    /// The component folders its sidecar loads.
    pub resources: Vec<PathBuf>,
    /// Its sidecar's app health flags, if the run file enables them.
    pub health_args: Vec<String>,
    /// Its sidecar's Dapr `Configuration` file, if any.
    pub config_file: Option<PathBuf>,
}

/// Resolves `file` (read from `run_file`): directories relative to the run
/// file, and `own_binary` for commands that say `dapr-wasm`.
pub fn plan(
    run_file: &Path,
    file: &RunFile,
    own_binary: &Path,
) -> Result<Vec<AppPlan>, RunnerError> {
    let base = run_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let mut common_resources: Vec<PathBuf> = file
        .common
        .resources_paths
        .iter()
        .chain(&file.common.resources_path)
        .map(|p| base.join(p))
        .collect();
    common_resources.dedup();
    let mut plans = Vec::new();
    for (i, app) in file.apps.iter().enumerate() {
        let dir = base.join(app.app_dir_path.as_deref().unwrap_or("."));
        let dir = std::fs::canonicalize(&dir).map_err(|_| RunnerError::Invalid {
            path: run_file.to_path_buf(),
            reason: format!(
                "app `{}`: appDirPath {} does not exist",
                app.app_id,
                dir.display()
            ),
        })?;
        let program = if app.command[0] == "dapr-wasm" {
            own_binary.to_path_buf()
        } else {
            PathBuf::from(&app.command[0])
        };
        let mut env: Vec<(String, String)> = file
            .common
            .env
            .iter()
            .chain(&app.env)
            .map(|(k, v)| (k.clone(), sidecar::components::yaml_text(v)))
            .collect();
        let offset = u16::try_from(i).unwrap_or(u16::MAX);
        let dapr_http_port = app
            .dapr_http_port
            .unwrap_or(FIRST_DAPR_HTTP_PORT.saturating_add(offset));
        env.push(("APP_ID".into(), app.app_id.clone()));
        let dapr_grpc_port = app
            .dapr_grpc_port
            .unwrap_or(FIRST_DAPR_GRPC_PORT.saturating_add(offset));
        let port_or_free = |port: Option<u16>, what: &str| match port {
            Some(port) => Ok(port),
            None => service_kit::ports::free_port().map_err(|err| RunnerError::Invalid {
                path: run_file.to_path_buf(),
                reason: format!("app `{}`: no free port for {what}: {err}", app.app_id),
            }),
        };
        let metrics_port = port_or_free(app.metrics_port, "metrics")?;
        let app_metrics_port = port_or_free(app.app_metrics_port, "the app's metrics")?;
        env.push(("DAPR_HTTP_PORT".into(), dapr_http_port.to_string()));
        env.push(("DAPR_GRPC_PORT".into(), dapr_grpc_port.to_string()));
        env.push(("DAPR_METRICS_PORT".into(), metrics_port.to_string()));
        env.push(("APP_METRICS_PORT".into(), app_metrics_port.to_string()));
        if let Some(port) = app.app_port {
            env.push(("APP_PORT".into(), port.to_string()));
        }
        let config_file = app
            .config_file_path
            .as_ref()
            .or(file.common.config_file_path.as_ref())
            .map(|p| base.join(p));
        if let Some(path) = &config_file {
            let tracing = TracingConfig::from_dapr_configuration_file(path).map_err(|err| {
                RunnerError::Invalid {
                    path: run_file.to_path_buf(),
                    reason: format!("app `{}`: configFilePath: {err}", app.app_id),
                }
            })?;
            let tracing_env = tracing.to_env();
            if !tracing_env.is_empty() {
                let set_by_file = env.iter().any(|(key, _)| key.starts_with("OTEL_"));
                if !set_by_file {
                    env.push(("OTEL_SERVICE_NAME".into(), app.app_id.clone()));
                    env.extend(tracing_env.into_iter().map(|(k, v)| (k.to_string(), v)));
                }
            }
        }
        let mut resources = common_resources.clone();
        resources.extend(app.resources_path.as_ref().map(|p| base.join(p)));
        plans.push(AppPlan {
            app_id: app.app_id.clone(),
            dir,
            app_port: app.app_port,
            app_protocol: app.app_protocol.clone().unwrap_or_else(|| "http".into()),
            dapr_http_port,
            dapr_grpc_port,
            metrics_port,
            app_metrics_port,
            program,
            args: app.command[1..].to_vec(),
            env,
            resources,
            health_args: app.health.sidecar_args(),
            config_file,
        });
    }
    let system = system_metrics(&plans);
    for plan in &mut plans {
        plan.env.push(("SYSTEM_METRICS".into(), system.clone()));
    }
    Ok(plans)
}

/// Every app's and sidecar's metrics, as `NAME=URL,...`: what web-port's
/// System panel shows (`SYSTEM_METRICS`, given to every app).
fn system_metrics(plans: &[AppPlan]) -> String {
    plans
        .iter()
        .flat_map(|plan| {
            [
                (plan.app_id.clone(), plan.app_metrics_port),
                (format!("{} sidecar", plan.app_id), plan.metrics_port),
            ]
        })
        .map(|(name, port)| format!("{name}=http://127.0.0.1:{port}/metrics"))
        .collect::<Vec<_>>()
        .join(",")
}

impl AppPlan {
    /// Loads the app's components the way its sidecar will, so a bad
    /// component fails here, before any process starts.
    pub fn check_components(&self) -> Result<(), RunnerError> {
        sidecar::components::load(&self.resources, &self.app_id)
            .map(drop)
            .map_err(|err| RunnerError::Components {
                app_id: self.app_id.clone(),
                reason: err.to_string(),
            })
    }

    /// Fails, naming the port and what it is for, when the app's port or
    /// its sidecar's is already taken on 127.0.0.1, so `up` stops before
    /// starting anything instead of leaving one process that cannot bind.
    pub fn check_ports_free(&self) -> Result<(), RunnerError> {
        let ports = [
            (self.app_port, "appPort"),
            (Some(self.dapr_http_port), "daprHTTPPort"),
            (Some(self.dapr_grpc_port), "daprGRPCPort"),
            (Some(self.metrics_port), "metricsPort"),
            (Some(self.app_metrics_port), "appMetricsPort"),
        ];
        for (port, field) in ports {
            let Some(port) = port.filter(|&p| p != 0) else {
                continue;
            };
            if let Err(err) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(RunnerError::PortTaken {
                    app_id: self.app_id.clone(),
                    field,
                    port,
                    reason: err.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The sidecar's command line (after the program, `dapr-wasm`). A
    /// pub/sub broker that cannot be reached falls back to the embedded
    /// one, so the demo runs on a machine without Redis.
    pub fn sidecar_args(&self) -> Vec<String> {
        let mut args = vec![
            "sidecar".to_string(),
            "--app-id".into(),
            self.app_id.clone(),
            "--dapr-http-port".into(),
            self.dapr_http_port.to_string(),
            "--dapr-grpc-port".into(),
            self.dapr_grpc_port.to_string(),
            "--metrics-port".into(),
            self.metrics_port.to_string(),
            "--app-port".into(),
            self.app_port.unwrap_or(0).to_string(),
            "--app-protocol".into(),
            self.app_protocol.clone(),
            "--embedded-pubsub-fallback".into(),
        ];
        for resources in &self.resources {
            args.push("--resources-path".into());
            args.push(resources.display().to_string());
        }
        if let Some(config) = &self.config_file {
            args.push("--config".into());
            args.push(config.display().to_string());
        }
        args.extend(self.health_args.iter().cloned());
        args
    }
}
