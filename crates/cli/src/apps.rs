//! The two commands that read the run records of `dapr-wasm up`
//! ([`runner::RunRecords`]): `dapr-wasm list` (like `dapr list`) and
//! `dapr-wasm invoke` (like `dapr invoke`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use runner::RunRecords;

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
    let apps = RunRecords::open()?.running();
    if apps.is_empty() {
        println!("No apps are running (start them with `dapr-wasm up`).");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<22} {:>9} {:>9} {:>12} {:>8} {:>16} {:>8} {:>11} {:>6}  COMMAND",
        "APP ID",
        "HTTP PORT",
        "GRPC PORT",
        "METRICS PORT",
        "APP PORT",
        "APP METRICS PORT",
        "APP PID",
        "SIDECAR PID",
        "AGE"
    );
    for app in apps {
        println!(
            "{:<22} {:>9} {:>9} {:>12} {:>8} {:>16} {:>8} {:>11} {:>6}  {}",
            app.app_id,
            app.dapr_http_port,
            app.dapr_grpc_port,
            app.metrics_port,
            app.app_port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            app.app_metrics_port,
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
            let apps = RunRecords::open()?.running();
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
