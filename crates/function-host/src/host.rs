//! [`FunctionHost`] owns the engine; [`Function`] is one loaded module, ready
//! to be called many times, each call in a fresh instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use wasmtime::{
    Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::cache::{CacheOutcome, ModuleCache};
use crate::config::HostConfig;
use crate::epoch::EpochTicker;
use crate::error::{CallError, LoadError};
use crate::limiter::MemoryLimiter;
use crate::metrics::HostMetrics;
use crate::nn::{Models, WASI_NN_MODULE};
use crate::stdio::{CallStdio, CappedBuffer};
use wasmtime_wasi_nn::witx::WasiNnCtx;

/// What a function may write to stderr; more fails the guest's write.
const MAX_STDERR_BYTES: usize = 1 << 20;
/// The longest stderr text carried in an error.
const MAX_REASON_CHARS: usize = 1_000;
/// Instances beyond `max_concurrent_calls` kept for [`Function::call_blocking`].
const SPARE_INSTANCES: u32 = 2;

/// The wasm engine, its linker, the module cache and the call slots.
///
/// Cheap to clone; all clones share one engine and one set of slots.
#[derive(Clone)]
pub struct FunctionHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    /// WASI preview1 only.
    linker: Linker<CallState>,
    /// WASI preview1 plus WASI-NN, for functions that import it.
    nn_linker: Linker<CallState>,
    cache: Option<ModuleCache>,
    ticker: EpochTicker,
    slots: Arc<Semaphore>,
    config: HostConfig,
    metrics: HostMetrics,
}

/// Per-call store data: the call's WASI (and WASI-NN) context, its output
/// buffers and its memory limiter.
struct CallState {
    wasi: WasiP1Ctx,
    nn: WasiNnCtx,
    stdout: CappedBuffer,
    stderr: CappedBuffer,
    limiter: MemoryLimiter,
}

impl CallStdio for CallState {
    fn stdio(&mut self, fd: i32) -> Option<&mut CappedBuffer> {
        match fd {
            1 => Some(&mut self.stdout),
            2 => Some(&mut self.stderr),
            _ => None,
        }
    }
}

impl FunctionHost {
    /// Creates the engine (pooling allocator, epoch interruption) and starts
    /// the deadline clock.
    pub fn new(config: HostConfig) -> Result<Self, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let slots = u32::try_from(config.max_concurrent_calls.max(1))
            .unwrap_or(u32::MAX - SPARE_INSTANCES)
            + SPARE_INSTANCES;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .max_memory_size(config.limits.max_memory_bytes)
            .linear_memory_keep_resident(config.keep_resident_bytes)
            // Reset only the pages a call touched (Linux 6.7+; else memset).
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .epoch_interruption(true)
            .profiler(crate::profiler_from_env())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm_config).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut CallState| &mut state.wasi)
            .map_err(engine_error)?;
        crate::stdio::shadow_fd_write(&mut linker).map_err(engine_error)?;
        let mut nn_linker = linker.clone();
        wasmtime_wasi_nn::witx::add_to_linker(&mut nn_linker, |state: &mut CallState| {
            &mut state.nn
        })
        .map_err(engine_error)?;

        let ticker = EpochTicker::start(&engine, config.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("cannot start the deadline clock: {e}")))?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| ModuleCache::new(dir, &engine));
        let metrics = HostMetrics::new(config.max_concurrent_calls.max(1))
            .map_err(|e| LoadError::Engine(format!("cannot set up the metrics: {e}")))?;
        Ok(FunctionHost {
            inner: Arc::new(HostInner {
                metrics,
                slots: Arc::new(Semaphore::new(config.max_concurrent_calls.max(1))),
                engine,
                linker,
                nn_linker,
                cache,
                ticker,
                config,
            }),
        })
    }

    /// The configuration this host was created with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// This host's metrics (see [`metrics`](crate::metrics)), for the app
    /// to serve with its own.
    pub fn metrics(&self) -> &service_kit::metrics::Registry {
        &self.inner.metrics.registry
    }

    pub(crate) fn host_metrics(&self) -> &HostMetrics {
        &self.inner.metrics
    }

    /// Loads the WASI command at `path` under `name`.
    pub fn load_file(&self, name: &str, path: &Path) -> Result<Function, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        self.load_bytes(name, &wasm)
    }

    /// Loads a WASI command from its bytes (binary or text format) under `name`.
    pub fn load_bytes(&self, name: &str, wasm: &[u8]) -> Result<Function, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.to_string(),
            reason: format!("{e:#}"),
        };
        let started = Instant::now();
        let (module, cache) = match &self.inner.cache {
            Some(cache) => cache
                .load_or_compile(&self.inner.engine, wasm)
                .map_err(invalid)?,
            None => (
                Module::new(&self.inner.engine, wasm).map_err(invalid)?,
                CacheOutcome::Uncached,
            ),
        };
        if module.get_export("_start").is_none() {
            return Err(LoadError::Invalid {
                name: name.to_string(),
                reason: "not a WASI command: it has no `_start` export".into(),
            });
        }
        let uses_nn = module
            .imports()
            .any(|import| import.module() == WASI_NN_MODULE);
        let linker = if uses_nn {
            &self.inner.nn_linker
        } else {
            &self.inner.linker
        };
        let pre = linker.instantiate_pre(&module).map_err(invalid)?;
        self.inner.metrics.record_load(name, cache);
        tracing::info!(
            function = name,
            wasi_nn = uses_nn,
            cache = ?cache,
            elapsed = ?started.elapsed(),
            "function loaded"
        );
        Ok(Function {
            name: name.into(),
            pre,
            cache,
            uses_nn,
            models: None,
            limits: self.inner.config.limits,
            dirs: Arc::from(Vec::new()),
            strict_sandbox: false,
            host: self.inner.clone(),
        })
    }
}

/// What a successful call produced.
#[derive(Debug, Clone)]
pub struct CallOutput {
    /// Everything the function wrote to stdout.
    pub stdout: Bytes,
    /// Everything the function wrote to stderr.
    pub stderr: Bytes,
    /// Time spent instantiating and running the function.
    pub elapsed: Duration,
    /// Of which instantiating it.
    pub instantiate: Duration,
    /// Of which its WASI-NN inferences.
    pub inference: Duration,
    /// When the first inference began, counted from the start of
    /// instantiation (none without inferences).
    pub inference_started: Option<Duration>,
    /// Time spent waiting for a call slot before (zero for
    /// [`Function::call_blocking`]).
    pub queue_wait: Duration,
}

/// A host directory a function may read, and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyDir {
    /// The directory on the host.
    pub host: PathBuf,
    /// The path the guest opens it by, e.g. `/data`.
    pub guest: String,
}

/// A loaded function: compiled, linked and ready to instantiate.
///
/// Cheap to clone; clones share the compiled code.
#[derive(Clone)]
pub struct Function {
    name: Arc<str>,
    pre: InstancePre<CallState>,
    cache: CacheOutcome,
    uses_nn: bool,
    models: Option<Models>,
    limits: crate::CallLimits,
    dirs: Arc<[ReadOnlyDir]>,
    strict_sandbox: bool,
    host: Arc<HostInner>,
}

/// A clock for [`Function::with_strict_sandbox`]: it starts at zero and
/// moves one millisecond each time it is read, whatever the real time is.
#[derive(Default)]
struct SteppingClock {
    reads: std::sync::atomic::AtomicU64,
}

impl SteppingClock {
    const STEP_NANOS: u64 = 1_000_000;

    fn next(&self) -> u64 {
        let reads = self
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reads.saturating_mul(Self::STEP_NANOS)
    }
}

impl wasmtime_wasi::HostWallClock for SteppingClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(Self::STEP_NANOS)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.next())
    }
}

impl wasmtime_wasi::HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        Self::STEP_NANOS
    }
    fn now(&self) -> u64 {
        self.next()
    }
}

/// The fixed bytes a strict sandbox's random numbers cycle through.
const STRICT_RANDOM_SEED: [u8; 16] = *b"dapr-wasm strict";

impl Function {
    /// The name the function was loaded under (its `argv[0]`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host this function runs on.
    pub fn host(&self) -> FunctionHost {
        FunctionHost {
            inner: self.host.clone(),
        }
    }

    /// The limits applied to each call: the host's, unless
    /// [`Function::with_limits`] gave this function its own.
    pub fn limits(&self) -> &crate::CallLimits {
        &self.limits
    }

    /// Gives this function its own limits. Its memory limit is capped by the
    /// host's ([`HostConfig::limits`](crate::HostConfig)), which sizes the
    /// instance pool's slots.
    pub fn with_limits(mut self, limits: crate::CallLimits) -> Self {
        self.limits = crate::CallLimits {
            max_memory_bytes: limits
                .max_memory_bytes
                .min(self.host.config.limits.max_memory_bytes),
            ..limits
        };
        self
    }

    /// Lets every call read these host directories (and nothing else of
    /// the file system). A directory that cannot be opened fails the call
    /// as [`CallError::Internal`].
    pub fn with_read_only_dirs(mut self, dirs: Vec<ReadOnlyDir>) -> Self {
        self.dirs = Arc::from(dirs);
        self
    }

    /// Makes every call deterministic, as Dapr's `strictSandbox` asks:
    /// both clocks start at zero and step 1 ms per reading, and random
    /// numbers repeat a fixed sequence, so a guest can neither time the
    /// host nor tell two calls apart.
    pub fn with_strict_sandbox(mut self, strict: bool) -> Self {
        self.strict_sandbox = strict;
        self
    }

    /// The directories this function may read.
    pub fn read_only_dirs(&self) -> &[ReadOnlyDir] {
        &self.dirs
    }

    /// Whether the function imports WASI-NN, and so needs
    /// [`Function::with_models`] before it can do its work.
    pub fn uses_wasi_nn(&self) -> bool {
        self.uses_nn
    }

    /// Gives the function the preloaded models its WASI-NN calls can load by
    /// name. Without them `load_by_name` fails with "not found".
    pub fn with_models(mut self, models: Models) -> Self {
        self.models = Some(models);
        self
    }

    /// The models this function can load, if any were given.
    pub fn models(&self) -> Option<&Models> {
        self.models.as_ref()
    }

    /// How many of its host's call slots (shared by every function of the
    /// host, [`HostConfig::max_concurrent_calls`]) are free right now: for
    /// health reports, and for tests that must know a call holds a slot.
    pub fn free_slots(&self) -> usize {
        self.host.slots.available_permits()
    }

    /// Whether loading compiled the module or found it in the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Runs the function once with `input` on stdin and `args` after argv[0].
    ///
    /// Waits for a call slot (bounded by the queue timeout), then runs on a
    /// blocking thread. If this future is dropped, the call still finishes
    /// (within its deadline) and only then frees its slot.
    pub async fn call(&self, input: Bytes, args: &[&str]) -> Result<CallOutput, CallError> {
        let limits = &self.limits;
        if input.len() > limits.max_input_bytes {
            return self.refused(CallError::InputTooLarge {
                size: input.len(),
                limit: limits.max_input_bytes,
            });
        }
        let queued = Instant::now();
        let queue_timeout = self.host.config.queue_timeout;
        let permit = match tokio::time::timeout(
            queue_timeout,
            self.host.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return self.refused(CallError::Internal(closed.to_string())),
            Err(_elapsed) => {
                return self.refused(CallError::Busy {
                    slots: self.host.config.max_concurrent_calls,
                    waited: queued.elapsed(),
                });
            }
        };
        let metrics = &self.host.metrics;
        let queue_wait = queued.elapsed();
        metrics.record_queue_wait(&self.name, queue_wait);
        let function = self.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        metrics.slots_in_use.inc();
        let slot_in_use = metrics.slots_in_use.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let output = function.call_blocking(input, &args);
            slot_in_use.dec();
            output.map(|output| CallOutput {
                queue_wait,
                ..output
            })
        })
        .await
        .map_err(|e| CallError::Internal(format!("call thread failed: {e}")))?
    }

    /// A call refused before it ran, counted as such.
    fn refused(&self, error: CallError) -> Result<CallOutput, CallError> {
        let result = Err(error);
        self.host.metrics.record_call(&self.name, &result, None);
        result
    }

    /// Runs the function once on the current thread, without waiting for a
    /// call slot. For benchmarks and one-shot runners; servers use
    /// [`Function::call`].
    pub fn call_blocking(
        &self,
        input: Bytes,
        args: &[impl AsRef<str>],
    ) -> Result<CallOutput, CallError> {
        if input.len() > self.limits.max_input_bytes {
            return self.refused(CallError::InputTooLarge {
                size: input.len(),
                limit: self.limits.max_input_bytes,
            });
        }
        let started = Instant::now();
        let mut peak_memory = 0;
        let result = self.run(input, args, &mut peak_memory);
        self.host
            .metrics
            .record_call(&self.name, &result, Some((started.elapsed(), peak_memory)));
        result
    }

    /// One run of the guest; sets `peak_memory` to the most memory it had.
    fn run(
        &self,
        input: Bytes,
        args: &[impl AsRef<str>],
        peak_memory: &mut usize,
    ) -> Result<CallOutput, CallError> {
        let limits = self.limits;
        let started = Instant::now();
        // stdout and stderr are written by `stdio`'s direct `fd_write`.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(input))
            .arg(&*self.name)
            .args(args)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in self.dirs.iter() {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    CallError::Internal(format!(
                        "cannot open {} for function `{}`: {e:#}",
                        dir.host.display(),
                        self.name
                    ))
                })?;
        }
        if self.strict_sandbox {
            wasi.wall_clock(SteppingClock::default())
                .monotonic_clock(SteppingClock::default())
                .secure_random(wasmtime_wasi::Deterministic::new(
                    STRICT_RANDOM_SEED.to_vec(),
                ))
                .insecure_random(wasmtime_wasi::Deterministic::new(
                    STRICT_RANDOM_SEED.to_vec(),
                ))
                .insecure_random_seed(0);
        }
        let wasi = wasi.build_p1();
        let mut store = Store::new(
            &self.host.engine,
            CallState {
                wasi,
                nn: match &self.models {
                    Some(models) => models.call_context(),
                    None => crate::nn::empty_context(),
                },
                stdout: CappedBuffer::new(limits.max_output_bytes),
                stderr: CappedBuffer::new(MAX_STDERR_BYTES),
                limiter: MemoryLimiter::new(limits.max_memory_bytes),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.host.ticker.ticks_for(limits.deadline));
        store.epoch_deadline_trap();

        // A host function that panics (wasmtime-wasi-nn 48 does on some
        // malformed guest arguments) unwinds out of `call`; it becomes this
        // call's error instead of taking the thread, or the server, down.
        let mut instantiate = Duration::ZERO;
        crate::nn::take_inferences();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let instance = self.pre.instantiate(&mut store);
            instantiate = started.elapsed();
            instance.and_then(|instance| {
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call(&mut store, ())
            })
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(wasmtime::Error::msg(format!(
                "a host function failed: {message}"
            )))
        });
        // Dropping the store returns the instance's slot to the pool; its
        // data keeps the call's output.
        let state = store.into_data();
        *peak_memory = state.limiter.peak();
        let elapsed = started.elapsed();
        let inferences = crate::nn::take_inferences();
        let inference = inferences.total;
        let inference_started = inferences
            .first_started
            .map(|at| at.saturating_duration_since(started));
        if state.stdout.overflowed() {
            return Err(CallError::OutputTooLarge {
                limit: limits.max_output_bytes,
            });
        }
        let memory_limit_hit = state.limiter.hit();
        let stdout = Bytes::from(state.stdout.into_bytes());
        let stderr = Bytes::from(state.stderr.into_bytes());
        let err = match result {
            Ok(()) => {
                return Ok(CallOutput {
                    stdout,
                    stderr,
                    elapsed,
                    instantiate,
                    inference,
                    inference_started,
                    queue_wait: Duration::ZERO,
                });
            }
            Err(err) => err,
        };
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            if exit.0 == 0 {
                return Ok(CallOutput {
                    stdout,
                    stderr,
                    elapsed,
                    instantiate,
                    inference,
                    inference_started,
                    queue_wait: Duration::ZERO,
                });
            }
            return Err(CallError::BadInput {
                exit_code: exit.0,
                stderr: reason(&stderr),
            });
        }
        if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
            return Err(CallError::Timeout {
                deadline: limits.deadline,
            });
        }
        if memory_limit_hit {
            return Err(CallError::MemoryLimit {
                limit: limits.max_memory_bytes,
            });
        }
        if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return Err(CallError::Busy {
                slots: self.host.config.max_concurrent_calls,
                waited: Duration::ZERO,
            });
        }
        tracing::warn!(function = %self.name, error = ?err, "function trapped");
        Err(CallError::Trap {
            message: err.root_cause().to_string(),
            stderr: reason(&stderr),
        })
    }
}

/// The guest's stderr as a short, trimmed, single-line reason.
fn reason(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim().replace(['\n', '\r'], " ");
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
