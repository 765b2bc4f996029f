//! The apps `dapr-wasm up` is running: a small registry of JSON files in
//! `<data dir>/run/` (one per app id), and the two commands that read it,
//! `dapr-wasm list` (like `dapr list`) and `dapr-wasm invoke` (like
//! `dapr invoke`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

/// One running app, as `up` recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app id.
    pub app_id: String,
    /// Its port.
    pub app_port: Option<u16>,
    /// Its sidecar's HTTP port.
    pub dapr_http_port: u16,
    /// The app's pid.
    pub app_pid: u32,
    /// The sidecar's pid.
    pub sidecar_pid: u32,
    /// The pid of `up`.
    pub up_pid: u32,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Its command line.
    pub command: String,
}

/// Whether a process exists.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// The folder of run records.
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// `$DAPR_WASM_DATA_DIR/run`, else `~/.local/share/dapr-wasm/run`.
    pub fn open() -> anyhow::Result<Registry> {
        let data = std::env::var_os("DAPR_WASM_DATA_DIR")
            .map(PathBuf::from)
            .or_else(sidecar::args::default_data_dir)
            .context("no data directory: set DAPR_WASM_DATA_DIR or HOME")?;
        let dir = data.join("run");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Registry { dir })
    }

    fn path(&self, app_id: &str) -> PathBuf {
        self.dir.join(format!("{app_id}.json"))
    }

    /// Records an app (replacing an older record of the same id).
    pub fn record(&self, record: &AppRecord) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(record)?;
        std::fs::write(self.path(&record.app_id), json)
            .with_context(|| format!("cannot record app {}", record.app_id))
    }

    /// Forgets an app.
    pub fn remove(&self, app_id: &str) {
        let _ = std::fs::remove_file(self.path(app_id));
    }

    /// The recorded apps whose `up` still runs; stale records are removed.
    pub fn running(&self) -> Vec<AppRecord> {
        let mut apps = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return apps;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let record = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<AppRecord>(&bytes).ok());
            match record {
                Some(record) if pid_alive(record.up_pid) => apps.push(record),
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        apps
    }
}

fn age(started_unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(started_unix);
    let secs = now.saturating_sub(started_unix);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// `dapr-wasm list`: the running apps, like `dapr list`.
pub fn list() -> anyhow::Result<ExitCode> {
    let apps = Registry::open()?.running();
    if apps.is_empty() {
        println!("No apps are running (start them with `dapr-wasm up`).");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>11} {:>6}  COMMAND",
        "APP ID", "HTTP PORT", "APP PORT", "APP PID", "SIDECAR PID", "AGE"
    );
    for app in apps {
        println!(
            "{:<22} {:>9} {:>8} {:>8} {:>11} {:>6}  {}",
            app.app_id,
            app.dapr_http_port,
            app.app_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            app.app_pid,
            app.sidecar_pid,
            age(app.started_unix),
            app.command
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags of `dapr-wasm invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The app to call.
    #[arg(long)]
    pub app_id: String,
    /// The method (path) to call, e.g. api/image.
    #[arg(long)]
    pub method: String,
    /// The body, from a file.
    #[arg(long, conflicts_with = "data")]
    pub data_file: Option<PathBuf>,
    /// The body, inline.
    #[arg(long)]
    pub data: Option<String>,
    /// The HTTP verb.
    #[arg(long, default_value = "POST")]
    pub verb: String,
    /// The sidecar to go through [default: the called app's own, from
    /// `dapr-wasm list`].
    #[arg(long)]
    pub dapr_http_port: Option<u16>,
}

/// `dapr-wasm invoke`: one service invocation through a sidecar; the answer
/// goes to stdout, and a status of 400 or more is an error.
pub fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let port = match args.dapr_http_port {
        Some(port) => port,
        None => {
            let apps = Registry::open()?.running();
            match apps.iter().find(|a| a.app_id == args.app_id) {
                Some(app) => app.dapr_http_port,
                None => bail!(
                    "app `{}` is not running under `dapr-wasm up` (see `dapr-wasm list`); pass --dapr-http-port to use another sidecar",
                    args.app_id
                ),
            }
        }
    };
    let body = match (&args.data_file, &args.data) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => Vec::new(),
    };
    let method = reqwest::Method::from_bytes(args.verb.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("`{}` is not an HTTP verb", args.verb))?;
    let url = format!(
        "http://127.0.0.1:{port}/v1.0/invoke/{}/method/{}",
        args.app_id,
        args.method.trim_start_matches('/')
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, &url)
            .timeout(Duration::from_secs(60))
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the sidecar at {url}"))?;
        let status = response.status();
        anyhow::Ok((status, response.bytes().await?))
    })?;
    use std::io::Write;
    std::io::stdout().write_all(&answer)?;
    if status.is_client_error() || status.is_server_error() {
        eprintln!("\nerror: the call answered {status}");
        return Ok(ExitCode::FAILURE);
    }
    eprintln!("App invoked successfully ({status})");
    Ok(ExitCode::SUCCESS)
}
