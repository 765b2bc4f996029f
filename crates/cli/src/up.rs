//! `dapr-wasm up`: runs a Dapr multi-app run file (`dapr.yaml`, the format
//! of `dapr run -f`) on one machine, with our sidecar beside each app.
//!
//! For each app it starts `dapr-wasm sidecar` and the app's command, with
//! the env vars Dapr sets (`APP_ID`, `APP_PORT`, `DAPR_HTTP_PORT`), prefixes
//! every log line with the app id, waits until every sidecar and app
//! answers, and prints the UI's URL. Ctrl-C (or SIGTERM) stops everything;
//! children are also tied to `up` with `PR_SET_PDEATHSIG`, so even a killed
//! `up` leaves no process behind. An app that exits is reported and the
//! others keep running. Each app is recorded in the run registry
//! ([`crate::apps`]) for `dapr-wasm list` and `dapr-wasm invoke`.
//!
//! Before starting, it fetches the model if it is missing, and builds the
//! wasm functions if the run file names a function that is not built and
//! the repository's `functions/` workspace is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::apps::{AppRecord, Registry};

/// Flags of `dapr-wasm up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The run file.
    #[arg(short = 'f', long = "run-file", default_value = "deploy/dapr.yaml")]
    pub run_file: PathBuf,
    /// How long to wait for every app and sidecar to answer.
    #[arg(long, default_value = "120s", value_parser = service_kit::units::parse_duration)]
    pub ready_timeout: Duration,
}

/// A `dapr.yaml` multi-app run file (the fields dapr-wasm uses).
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
    pub apps: Vec<App>,
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
pub struct App {
    /// The app id.
    #[serde(rename = "appID")]
    pub app_id: String,
    /// Its working directory, relative to the run file.
    #[serde(rename = "appDirPath", default)]
    pub app_dir_path: Option<String>,
    /// The port it listens on.
    #[serde(rename = "appPort", default)]
    pub app_port: Option<u16>,
    /// Its sidecar's HTTP port.
    #[serde(rename = "daprHTTPPort", default)]
    pub dapr_http_port: Option<u16>,
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
    /// Reads and checks a run file.
    pub fn load(path: &Path) -> anyhow::Result<RunFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the run file {}", path.display()))?;
        let file: RunFile = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid Dapr run file", path.display()))?;
        if let Some(version) = file.version.filter(|&v| v != 1) {
            bail!(
                "{}: run file version {version} is not supported (use 1)",
                path.display()
            );
        }
        if file.apps.is_empty() {
            bail!("{} lists no apps", path.display());
        }
        let mut seen = std::collections::HashSet::new();
        for app in &file.apps {
            if app.command.is_empty() {
                bail!("app `{}` has no command", app.app_id);
            }
            if !seen.insert(&app.app_id) {
                bail!("app id `{}` appears twice", app.app_id);
            }
        }
        Ok(file)
    }
}

/// One app, resolved: paths absolute, ports chosen.
struct Plan {
    app_id: String,
    dir: PathBuf,
    app_port: Option<u16>,
    dapr_http_port: u16,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    resources: Vec<PathBuf>,
}

fn plan(run_file: &Path, file: &RunFile) -> anyhow::Result<Vec<Plan>> {
    let base = run_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let own_binary = std::env::current_exe().context("cannot find the dapr-wasm binary")?;
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
        let dir = std::fs::canonicalize(&dir).with_context(|| {
            format!(
                "app `{}`: appDirPath {} does not exist",
                app.app_id,
                dir.display()
            )
        })?;
        let program = if app.command[0] == "dapr-wasm" {
            own_binary.clone()
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
        let dapr_http_port = app.dapr_http_port.unwrap_or(3500 + i as u16);
        env.push(("APP_ID".into(), app.app_id.clone()));
        env.push(("DAPR_HTTP_PORT".into(), dapr_http_port.to_string()));
        if let Some(port) = app.app_port {
            env.push(("APP_PORT".into(), port.to_string()));
        }
        let mut resources = common_resources.clone();
        resources.extend(app.resources_path.as_ref().map(|p| base.join(p)));
        plans.push(Plan {
            app_id: app.app_id.clone(),
            dir,
            app_port: app.app_port,
            dapr_http_port,
            program,
            args: app.command[1..].to_vec(),
            env,
            resources,
        });
    }
    Ok(plans)
}

/// Builds the wasm functions when a `--function NAME=PATH` is missing and
/// the repository's `functions/` workspace is at hand; fetches the model
/// when it is missing.
fn prepare(plans: &[Plan]) -> anyhow::Result<()> {
    for plan in plans {
        let missing: Vec<PathBuf> = plan
            .args
            .windows(2)
            .filter(|w| w[0] == "--function")
            .filter_map(|w| w[1].split_once('=').map(|(_, p)| plan.dir.join(p)))
            .filter(|p| !p.exists())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let workspace = plan.dir.join("functions");
        if !workspace.join("Cargo.toml").is_file() {
            bail!(
                "app `{}`: {} is not built, and there is no functions/ workspace in {} to build it from",
                plan.app_id,
                missing[0].display(),
                plan.dir.display()
            );
        }
        build_functions(&workspace, &plan.dir.join("build/functions"))?;
    }
    let models_dir = std::env::var_os("DAPR_WASM_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(models::default_models_dir)
        .context("no models directory: set DAPR_WASM_MODELS_DIR or HOME")?;
    if !models::ModelFiles::in_dir(&models_dir).onnx.is_file() {
        eprintln!(
            "up: the model is missing; fetching it into {}",
            models_dir.display()
        );
        models::prepare(&models_dir, |line| eprintln!("up:   {line}"))?;
    }
    Ok(())
}

fn build_functions(workspace: &Path, out: &Path) -> anyhow::Result<()> {
    eprintln!(
        "up: building the wasm functions in {} (cargo build --release)",
        workspace.display()
    );
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--locked"])
        .current_dir(workspace)
        .status()
        .context("cannot run cargo to build the functions")?;
    if !status.success() {
        bail!("building the functions failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm32-wasip1/release");
    std::fs::create_dir_all(out)?;
    for entry in
        std::fs::read_dir(&target).with_context(|| format!("cannot read {}", target.display()))?
    {
        let path = entry?.path();
        if let (true, Some(name)) = (
            path.extension().is_some_and(|e| e == "wasm"),
            path.file_name(),
        ) {
            std::fs::copy(&path, out.join(name))?;
        }
    }
    Ok(())
}

/// A started process and what it is.
struct Process {
    label: String,
    pid: u32,
}

fn spawn(
    label: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
    events: &mpsc::UnboundedSender<(String, std::process::ExitStatus)>,
) -> anyhow::Result<Process> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Tie the child to `up`: if `up` dies, even by SIGKILL, so does it.
    // SAFETY: prctl is async-signal-safe; the closure only calls it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child: Child = command
        .spawn()
        .with_context(|| format!("{label}: cannot start {}", program.display()))?;
    let pid = child.id().unwrap_or(0);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(label.to_string(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(label.to_string(), err));
    }
    let events = events.clone();
    let name = label.to_string();
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            let _ = events.send((name, status));
        }
    });
    Ok(Process {
        label: label.to_string(),
        pid,
    })
}

async fn prefix_lines(label: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[{label}] {line}");
    }
}

async fn port_answers(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

async fn sidecar_healthy(client: &reqwest::Client, port: u16) -> bool {
    client
        .get(format!("http://127.0.0.1:{port}/v1.0/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn signal(pid: u32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) with a pid we started; no memory is involved.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

/// Runs `dapr-wasm up`.
pub fn up(args: UpArgs) -> anyhow::Result<std::process::ExitCode> {
    let file = RunFile::load(&args.run_file)?;
    let plans = plan(&args.run_file, &file)?;
    prepare(&plans)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(plans, args.ready_timeout))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(plans: Vec<Plan>, ready_timeout: Duration) -> anyhow::Result<()> {
    let registry = Registry::open()?;
    let own_binary = std::env::current_exe()?;
    let (events, mut exits) = mpsc::unbounded_channel();
    let mut processes: Vec<Process> = Vec::new();
    let shutdown = service_kit::shutdown::signal();
    tokio::pin!(shutdown);

    let started = async {
        for plan in &plans {
            let mut sidecar_args = vec![
                "sidecar".to_string(),
                "--app-id".into(),
                plan.app_id.clone(),
                "--dapr-http-port".into(),
                plan.dapr_http_port.to_string(),
                "--app-port".into(),
                plan.app_port.unwrap_or(0).to_string(),
            ];
            for resources in &plan.resources {
                sidecar_args.push("--resources-path".into());
                sidecar_args.push(resources.display().to_string());
            }
            let sidecar = spawn(
                &format!("{} sidecar", plan.app_id),
                &own_binary,
                &sidecar_args,
                &plan.env,
                &plan.dir,
                &events,
            )?;
            let app = spawn(
                &plan.app_id,
                &plan.program,
                &plan.args,
                &plan.env,
                &plan.dir,
                &events,
            )?;
            registry.record(&AppRecord {
                app_id: plan.app_id.clone(),
                app_port: plan.app_port,
                dapr_http_port: plan.dapr_http_port,
                app_pid: app.pid,
                sidecar_pid: sidecar.pid,
                up_pid: std::process::id(),
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                command: std::iter::once(plan.program.display().to_string())
                    .chain(plan.args.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
            processes.push(sidecar);
            processes.push(app);
        }
        anyhow::Ok(())
    };
    let start_result = started.await;

    let client = reqwest::Client::new();
    let deadline = Instant::now() + ready_timeout;
    let mut ready = start_result.is_ok();
    if ready {
        loop {
            let mut all = true;
            for plan in &plans {
                let app_ok = match plan.app_port {
                    Some(port) => port_answers(port).await,
                    None => true,
                };
                all &= app_ok && sidecar_healthy(&client, plan.dapr_http_port).await;
            }
            if all {
                break;
            }
            if Instant::now() > deadline {
                println!("up: not every app answered within {ready_timeout:?}; stopping");
                ready = false;
                break;
            }
            tokio::select! {
                () = &mut shutdown => { ready = false; break; }
                Some((label, status)) = exits.recv() => {
                    println!("up: {label} exited during start-up ({status}); stopping");
                    ready = false;
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
    if ready {
        let ui = plans
            .iter()
            .find(|p| p.app_id == "web-port")
            .or_else(|| plans.first())
            .and_then(|p| p.app_port);
        println!("up: all {} apps and their sidecars are ready", plans.len());
        if let Some(port) = ui {
            println!("up: open http://127.0.0.1:{port}/");
        }
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some((label, status)) = exits.recv() => {
                    println!("up: {label} exited ({status}); the others keep running");
                }
            }
        }
    }

    // Stop: SIGTERM everything, wait up to 10 s, then SIGKILL what is left.
    println!("up: stopping");
    for process in &processes {
        signal(process.pid, libc::SIGTERM);
    }
    let stop_deadline = Instant::now() + Duration::from_secs(10);
    let mut alive: Vec<&Process> = processes.iter().collect();
    while !alive.is_empty() && Instant::now() < stop_deadline {
        alive.retain(|p| crate::apps::pid_alive(p.pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for process in alive {
        println!("up: {} did not stop; killing it", process.label);
        signal(process.pid, libc::SIGKILL);
    }
    for plan in &plans {
        registry.remove(&plan.app_id);
    }
    start_result?;
    if !ready {
        bail!("the apps did not all start");
    }
    Ok(())
}
