//! `dapr-wasm run`: one call of a WASI function from the shell, through the
//! same function host the services use. The guest's stdout goes to stdout; on
//! failure its reason goes to stderr and the exit code is the guest's (or 70
//! when the host stopped it: timeout, trap, memory or output limit).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use function_host::{CacheArgs, CallError, CallLimits, FunctionHost, HostConfig};

/// Flags of `dapr-wasm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The WASI command (.wasm) to run.
    pub path: PathBuf,
    /// Arguments passed to the function after its name.
    #[arg(trailing_var_arg = true)]
    pub args: Vec<String>,
    /// Wall-clock deadline, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = service_kit::units::parse_duration)]
    pub timeout: Duration,
    /// Largest linear memory, e.g. 512Mi.
    #[arg(long, default_value = "512Mi", value_parser = service_kit::units::parse_size)]
    pub max_memory: usize,
    /// The module cache: compiled once, then loaded from disk by every run.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// WASI-NN models and engine (for functions that import WASI-NN).
    #[command(flatten)]
    pub nn: function_host::nn::NnArgs,
}

/// The exit code when the host, not the guest, ended the call (EX_SOFTWARE).
const HOST_STOPPED: u8 = 70;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("function")
        .to_string();
    let host = FunctionHost::new(HostConfig {
        max_concurrent_calls: 1,
        cache_dir: args.cache.cache_dir(),
        limits: CallLimits {
            deadline: args.timeout,
            max_memory_bytes: args.max_memory,
            max_input_bytes: usize::MAX,
            max_output_bytes: usize::MAX - 1,
        },
        ..HostConfig::default()
    })?;
    let function = host.load_file(&name, &args.path)?;
    let nn = args.nn.validate().map_err(anyhow::Error::msg)?;
    let function = function_host::nn::load_models_for(function, &nn)?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("cannot read stdin")?;
    match function.call_blocking(Bytes::from(input), &args.args) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&output.stdout)?;
            stdout.flush()?;
            std::io::stderr().write_all(&output.stderr)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::BadInput { exit_code, stderr }) => {
            eprintln!("{stderr}");
            Ok(ExitCode::from(u8::try_from(exit_code).unwrap_or(1)))
        }
        Err(err) => {
            eprintln!("{name}: {err}");
            Ok(ExitCode::from(HOST_STOPPED))
        }
    }
}
