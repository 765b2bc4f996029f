//! `dapr-wasm up`: runs a Dapr multi-app run file (`dapr.yaml`, the format
//! of `dapr run -f`) on one machine, with our sidecar beside each app. The
//! work is the [`runner`] crate's; this is the command around it: the
//! flags, the progress lines (`up: ...`), and Ctrl-C or SIGTERM to stop.
//!
//! An app that exits is reported and the others keep running.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use runner::{RunFile, Supervisor};

/// Flags of `dapr-wasm up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The run file.
    #[arg(short = 'f', long = "run-file", default_value = "deploy/dapr.yaml")]
    pub run_file: PathBuf,
    /// How long to wait for every app and sidecar to answer.
    #[arg(long, default_value = "120s", value_parser = service_kit::units::parse_duration)]
    pub ready_timeout: Duration,
    /// Rebuild functions when their sources change, as `spin watch` does:
    /// every app gets DAPR_WASM_WATCH=true, so the function apps
    /// (`dapr-wasm functions`) run each entry's `build` command when its
    /// watched files change, and serve the new wasm file live.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `dapr-wasm up`: checks and plans everything first, prepares the
/// functions and the model, then starts, waits, supervises and stops.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let own_binary = std::env::current_exe().context("cannot find the dapr-wasm binary")?;
    let file = RunFile::load(&args.run_file)?;
    let mut plans = runner::plan(&args.run_file, &file, &own_binary)?;
    if args.watch {
        for plan in &mut plans {
            plan.env.push(("DAPR_WASM_WATCH".into(), "true".into()));
        }
    }
    for plan in &plans {
        plan.check_ports_free()?;
        plan.check_components()?;
    }
    runner::prepare(&plans, |line| eprintln!("up: {line}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = service_kit::shutdown::signal();
        tokio::pin!(shutdown);
        let count = plans.len();
        let mut supervisor = Supervisor::start(plans, &own_binary).await?;
        let ready = supervisor
            .wait_ready(args.ready_timeout, &mut shutdown)
            .await;
        if ready.is_ok() {
            match count {
                1 => println!("up: the app and its sidecar are ready"),
                _ => println!("up: all {count} apps and their sidecars are ready"),
            }
            if let Some(url) = supervisor.ui_url() {
                println!("up: open {url}");
            }
            supervisor
                .supervise(&mut shutdown, |label, how| {
                    println!("up: {label} exited ({how}); the others keep running");
                })
                .await;
        }
        println!("up: stopping");
        for label in supervisor.stop().await {
            println!("up: {label} did not stop; killed it");
        }
        ready.map_err(anyhow::Error::from)
    })?;
    Ok(ExitCode::SUCCESS)
}
