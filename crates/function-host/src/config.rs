//! Configuration of a [`FunctionHost`](crate::FunctionHost) and the limits
//! applied to every call.

use std::path::PathBuf;
use std::time::Duration;

/// Limits applied to each call of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Wall-clock time a call may run before it is interrupted.
    pub deadline: Duration,
    /// Largest stdin a call accepts, in bytes.
    pub max_input_bytes: usize,
    /// Largest stdout a call may produce, in bytes.
    pub max_output_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            max_memory_bytes: 512 << 20,
            deadline: Duration::from_secs(10),
            max_input_bytes: 16 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

/// Configuration of a [`FunctionHost`](crate::FunctionHost).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where precompiled modules are cached. `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// How many calls may run at once (across all functions of this host).
    pub max_concurrent_calls: usize,
    /// How long a call waits for a free slot before it fails as busy.
    pub queue_timeout: Duration,
    /// Limits applied to every call.
    pub limits: CallLimits,
    /// How often the deadline clock ticks; deadlines are rounded up to it.
    pub epoch_tick: Duration,
    /// Bytes of each instance slot's linear memory kept resident between
    /// calls and reset with `memset` instead of being returned to the kernel.
    /// Calls then reuse warm pages instead of page-faulting on every page
    /// they touch; `0` returns everything. Costs up to this much resident
    /// memory per instance slot. The default, 4 MiB, is as fast as 8 MiB
    /// on a 1024x768 photo and half the memory; see `docs/performance.md`.
    pub keep_resident_bytes: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            max_concurrent_calls: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue_timeout: Duration::from_secs(5),
            limits: CallLimits::default(),
            epoch_tick: Duration::from_millis(10),
            keep_resident_bytes: 4 << 20,
        }
    }
}

/// The limit flags of every command that serves guests over HTTP
/// (`dapr-wasm functions`, `image-api` and `serve`): what one call may take
/// in and give out, its memory and deadline, and how long it waits for a
/// free slot.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Largest request body (a function's input), e.g. 16Mi.
    #[arg(long, default_value = "16Mi", value_parser = service_kit::units::parse_size)]
    pub max_body_size: usize,

    /// Largest response body (a function's output), e.g. 64Mi.
    #[arg(long, default_value = "64Mi", value_parser = service_kit::units::parse_size)]
    pub max_output_size: usize,

    /// Largest linear memory of one call, e.g. 512Mi (in a function app,
    /// also the most its functions file may give one function).
    #[arg(long, default_value = "512Mi", value_parser = service_kit::units::parse_size)]
    pub max_memory: usize,

    /// Wall-clock deadline of one call, e.g. 10s or 500ms (a component's
    /// response body included).
    #[arg(long, default_value = "10s", value_parser = service_kit::units::parse_duration)]
    pub timeout: Duration,

    /// How long a call waits for a free slot before it gets 503 busy.
    #[arg(long, default_value = "5s", value_parser = service_kit::units::parse_duration)]
    pub queue_timeout: Duration,
}

impl LimitArgs {
    /// The limits of one call, checked: every size and the deadline must be
    /// greater than zero.
    pub fn call_limits(&self) -> Result<CallLimits, String> {
        if self.max_body_size == 0 || self.max_output_size == 0 || self.max_memory == 0 {
            return Err("sizes must be greater than zero".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be greater than zero".into());
        }
        Ok(CallLimits {
            max_memory_bytes: self.max_memory,
            deadline: self.timeout,
            max_input_bytes: self.max_body_size,
            max_output_bytes: self.max_output_size,
        })
    }
}

/// The module-cache flags every command that loads functions takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CacheArgs {
    /// Where compiled modules are cached [default: ~/.cache/dapr-wasm/modules].
    #[arg(long, env = "DAPR_WASM_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile on every start instead of using the disk cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

impl CacheArgs {
    /// The cache directory for [`HostConfig::cache_dir`]: the flag, else the
    /// default, or none with `--no-cache`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(local_dirs::module_cache_dir)
        }
    }
}

/// The environment variable that makes an engine write a perf map.
pub const PERF_MAP_ENV: &str = "DAPR_WASM_PERF_MAP";

/// The profiler an engine reports its compiled wasm to: a perf map
/// (`/tmp/perf-PID.map`, which `perf report` reads to name wasm functions)
/// when [`PERF_MAP_ENV`] is set to anything but `0`, else none. A
/// diagnostic for profiling guests in a running app; nothing else changes.
pub fn profiler_from_env() -> wasmtime::ProfilingStrategy {
    match std::env::var_os(PERF_MAP_ENV) {
        Some(value) if value != "0" && !value.is_empty() => wasmtime::ProfilingStrategy::PerfMap,
        _ => wasmtime::ProfilingStrategy::None,
    }
}
