//! What a [`FunctionHost`](crate::FunctionHost) counts, per function, in a
//! Prometheus registry of its own ([`FunctionHost::metrics`](crate::FunctionHost::metrics)),
//! which the app embedding the host serves on its metrics port:
//!
//! - `dapr_wasm_function_calls_total{function, outcome}`: each call's
//!   outcome, one of [`OUTCOMES`];
//! - `dapr_wasm_function_call_duration_seconds{function}`: instantiating
//!   and running the guest;
//! - `dapr_wasm_function_queue_wait_seconds{function}`: waiting for a call
//!   slot;
//! - `dapr_wasm_function_peak_memory_bytes{function}`: the most linear
//!   memory a call had;
//! - `dapr_wasm_function_slots` and `dapr_wasm_function_slots_in_use`: the
//!   host's call slots, shared by its functions;
//! - `dapr_wasm_function_loads_total{function, cache}`: each load, by
//!   whether the compiled module came from the cache (`hit`), was compiled
//!   and stored (`miss`), or compiled with no cache (`uncached`);
//! - `dapr_wasm_nn_inference_duration_seconds{model, backend}`: each WASI-NN
//!   inference (models loaded with [`Models::load_on`](crate::nn::Models::load_on)).

use std::time::Duration;

use service_kit::metrics::prometheus_buckets;
use service_kit::metrics::{
    Histogram, HistogramVec, IntCounterVec, IntGauge, MetricsError, Registry, SECONDS_BUCKETS,
    counter, gauge, histogram,
};

use crate::cache::CacheOutcome;
use crate::error::CallError;

/// Every `outcome` label of `dapr_wasm_function_calls_total`.
pub const OUTCOMES: [&str; 8] = [
    "ok",
    "bad_input",
    "timeout",
    "trap",
    "memory",
    "busy",
    "output_limit",
    "internal",
];

/// One host's metric families.
pub(crate) struct HostMetrics {
    pub(crate) registry: Registry,
    calls: IntCounterVec,
    call_duration: HistogramVec,
    queue_wait: HistogramVec,
    peak_memory: HistogramVec,
    pub(crate) slots_in_use: IntGauge,
    loads: IntCounterVec,
    inference: HistogramVec,
}

impl HostMetrics {
    /// The families of a host with `slots` call slots, all at zero.
    pub(crate) fn new(slots: usize) -> Result<HostMetrics, MetricsError> {
        let registry = Registry::new();
        let r = &registry;
        let function = ["function"];
        let metrics = HostMetrics {
            calls: counter(
                r,
                "dapr_wasm_function_calls_total",
                "Function calls, by outcome.",
                &["function", "outcome"],
            )?,
            call_duration: histogram(
                r,
                "dapr_wasm_function_call_duration_seconds",
                "Time to instantiate and run the guest, per call.",
                &function,
                &SECONDS_BUCKETS,
            )?,
            queue_wait: histogram(
                r,
                "dapr_wasm_function_queue_wait_seconds",
                "Time a call waited for a free call slot.",
                &function,
                &SECONDS_BUCKETS,
            )?,
            peak_memory: histogram(
                r,
                "dapr_wasm_function_peak_memory_bytes",
                "The most linear memory a call had.",
                &function,
                // 64 KiB (one wasm page) to 4 GiB, by 4x.
                &prometheus_buckets(65536.0, 4.0, 9)?,
            )?,
            slots_in_use: gauge(
                r,
                "dapr_wasm_function_slots_in_use",
                "Call slots running a call now.",
                &[],
            )?
            .with_label_values::<&str>(&[]),
            loads: counter(
                r,
                "dapr_wasm_function_loads_total",
                "Functions loaded, by whether the compiled module came from the cache.",
                &["function", "cache"],
            )?,
            inference: histogram(
                r,
                "dapr_wasm_nn_inference_duration_seconds",
                "Time of one WASI-NN inference, by model and backend.",
                &["model", "backend"],
                &SECONDS_BUCKETS,
            )?,
            registry,
        };
        gauge(
            &metrics.registry,
            "dapr_wasm_function_slots",
            "Call slots (calls that may run at once), shared by the host's functions.",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .set(i64::try_from(slots).unwrap_or(i64::MAX));
        Ok(metrics)
    }

    /// One load of `function`.
    pub(crate) fn record_load(&self, function: &str, cache: CacheOutcome) {
        let cache = match cache {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Uncached => "uncached",
        };
        self.loads.with_label_values(&[function, cache]).inc();
    }

    /// One call of `function` that waited `waited` for its slot.
    pub(crate) fn record_queue_wait(&self, function: &str, waited: Duration) {
        self.queue_wait
            .with_label_values(&[function])
            .observe(waited.as_secs_f64());
    }

    /// One call's outcome; `run` is set when the guest ran (its time and
    /// its peak memory).
    pub(crate) fn record_call<T>(
        &self,
        function: &str,
        result: &Result<T, CallError>,
        run: Option<(Duration, usize)>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(CallError::InputTooLarge { .. } | CallError::BadInput { .. }) => "bad_input",
            Err(CallError::Timeout { .. }) => "timeout",
            Err(CallError::Trap { .. }) => "trap",
            Err(CallError::MemoryLimit { .. }) => "memory",
            Err(CallError::Busy { .. }) => "busy",
            Err(CallError::OutputTooLarge { .. }) => "output_limit",
            Err(CallError::Internal(_)) => "internal",
        };
        self.calls.with_label_values(&[function, outcome]).inc();
        if let Some((elapsed, peak_memory)) = run {
            self.call_duration
                .with_label_values(&[function])
                .observe(elapsed.as_secs_f64());
            self.peak_memory
                .with_label_values(&[function])
                .observe(peak_memory as f64);
        }
    }

    /// The inference timer of `model` on `backend`.
    pub(crate) fn inference(&self, model: &str, backend: &str) -> Histogram {
        self.inference.with_label_values(&[model, backend])
    }
}
