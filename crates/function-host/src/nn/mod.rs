//! WASI-NN for functions: models preloaded by name, run by ONNX Runtime
//! (or tract, in a build with the `tract` feature).
//!
//! A function that imports `wasi_ephemeral_nn` (the witx ABI of WASI-NN,
//! what the `wasi-nn` 0.6 guest crate calls) gets those imports linked; no
//! other function does (the host reads each module's imports). The guest
//! asks for a model with `load_by_name("efficientnet-lite0")`.
//!
//! - [`Models::load`] reads and optimises every configured model once, at
//!   startup, with the chosen [`Backend`]. Each call then gets a fresh
//!   [`WasiNnCtx`] whose registry holds those shared graphs; a call creates
//!   only its own execution context.
//! - Guests cannot load models from bytes: the context has no backends for
//!   `load`, so it fails with "unsupported operation". Only the operator's
//!   preloaded models run.
//! - [`Backend::Auto`] picks ONNX Runtime when its library is present. Without
//!   it, a build with the `tract` feature falls back to tract (and logs which
//!   and why); the default build fails at startup, naming the fix.
//!
//! Backends: [`onnxruntime`] (the `ort` crate, loading ONNX Runtime's shared
//! library at run time) and, with the `tract` feature, `tract` (pure Rust,
//! nothing to install).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, BackendGraph};
use wasmtime_wasi_nn::witx::WasiNnCtx;
use wasmtime_wasi_nn::{Graph, GraphRegistry, Registry};

use std::sync::Arc;

use service_kit::metrics::Histogram;

use crate::{Function, FunctionHost};

pub mod args;
pub mod onnxruntime;
#[cfg(feature = "tract")]
pub mod tract;

pub use args::{NnArgs, prepared_models};

/// The witx module name the guest imports.
pub const WASI_NN_MODULE: &str = "wasi_ephemeral_nn";

/// Which inference engine runs the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// ONNX Runtime when its library is available, else tract (if built).
    #[default]
    Auto,
    /// ONNX Runtime through `ort`; fails at startup without its library.
    OnnxRuntime,
    /// tract, pure Rust: only in a build with the `tract` feature.
    Tract,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Backend::Auto),
            "onnxruntime" | "ort" | "onnx-runtime" => Ok(Backend::OnnxRuntime),
            "tract" => Ok(Backend::Tract),
            other => Err(format!(
                "unknown backend `{other}`: use auto, onnxruntime or tract"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::OnnxRuntime => "onnxruntime",
            Backend::Tract => "tract",
        })
    }
}

/// One model to preload.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The name guests load it by.
    pub name: String,
    /// The ONNX file.
    pub path: PathBuf,
}

/// How to load models.
#[derive(Debug, Clone)]
pub struct NnConfig {
    /// The models to preload.
    pub models: Vec<ModelSpec>,
    /// The engine.
    pub backend: Backend,
    /// ONNX Runtime's shared library (`libonnxruntime.so.*`).
    pub onnxruntime_lib: Option<PathBuf>,
    /// Threads one inference may use (ONNX Runtime's intra-op threads;
    /// tract always uses one).
    pub threads: usize,
    /// Inferences one model may run at once (ONNX Runtime: one session
    /// each, built at start-up). The apps set it to their call slots, so
    /// that no call waits for another's inference.
    pub sessions: usize,
}

impl Default for NnConfig {
    fn default() -> Self {
        NnConfig {
            models: Vec::new(),
            backend: Backend::Auto,
            onnxruntime_lib: None,
            threads: 1,
            sessions: 1,
        }
    }
}

/// Why models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A function imports WASI-NN but a configured model file is missing.
    #[error(
        "`{function}` uses WASI-NN but model `{name}` is missing at {}: run `dapr-wasm models fetch` (or pass --model NAME=PATH)",
        path.display()
    )]
    ModelMissing {
        /// The function.
        function: String,
        /// The model's name.
        name: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// ONNX Runtime was asked for, or is the only backend, but cannot be
    /// used.
    #[error("ONNX Runtime is not available: {0}")]
    OnnxRuntimeUnavailable(String),
    /// tract was asked for, but this build does not have it.
    #[error(
        "the tract backend is not in this build (rebuild with `cargo build --features tract`), or use --nn-backend onnxruntime"
    )]
    TractNotBuilt,
    /// A model file could not be read.
    #[error("cannot read model `{name}` from {path}: {source}")]
    Read {
        /// The model's name.
        name: String,
        /// Its file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The backend rejected a model.
    #[error("cannot load model `{name}` with {backend}: {reason}")]
    Load {
        /// The model's name.
        name: String,
        /// The backend used.
        backend: Backend,
        /// What the backend said.
        reason: String,
    },
}

/// Gives `function` its models if it imports WASI-NN: checks that every
/// configured file is there, then loads and optimises them (blocking:
/// seconds for a big model). A function without WASI-NN comes back as it
/// was.
pub fn load_models_for(function: Function, config: &NnConfig) -> Result<Function, NnError> {
    if !function.uses_wasi_nn() {
        return Ok(function);
    }
    if let Some(missing) = config.models.iter().find(|m| !m.path.is_file()) {
        return Err(NnError::ModelMissing {
            function: function.name().to_string(),
            name: missing.name.clone(),
            path: missing.path.clone(),
        });
    }
    let models = Models::load_on(config, &function.host())?;
    Ok(function.with_models(models))
}

/// Preloaded, optimised models, shared by every call.
#[derive(Clone)]
pub struct Models {
    graphs: HashMap<String, Graph>,
    loaded: Vec<LoadedModel>,
    backend: Backend,
}

/// What loading one model found and took.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The name guests load it by.
    pub name: String,
    /// Its ONNX file.
    pub path: PathBuf,
    /// Its input shape, e.g. `[1, 3, 224, 224]`.
    pub input_shape: Vec<usize>,
    /// How long reading and optimising it took.
    pub load_time: std::time::Duration,
    /// How long one inference on a zero input took right after loading
    /// (one session, as configured: the model's cost without the function).
    pub inference_time: std::time::Duration,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("names", &self.graphs.keys().collect::<Vec<_>>())
            .field("backend", &self.backend)
            .finish()
    }
}

/// A model loaded by one backend, before WASI-NN wraps it.
enum BackendModel {
    OnnxRuntime(onnxruntime::OrtGraph),
    #[cfg(feature = "tract")]
    Tract(tract::TractGraph),
}

impl BackendModel {
    fn input_shape(&self) -> &[usize] {
        match self {
            BackendModel::OnnxRuntime(g) => g.input_shape(),
            #[cfg(feature = "tract")]
            BackendModel::Tract(g) => g.input_shape(),
        }
    }

    fn run(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        match self {
            BackendModel::OnnxRuntime(g) => g.run(input),
            #[cfg(feature = "tract")]
            BackendModel::Tract(g) => g.run(input),
        }
    }

    /// The model as WASI-NN's graph, its inferences timed by `inference`.
    fn into_graph(self, inference: Option<Histogram>) -> Graph {
        let model: Arc<dyn Model> = match self {
            BackendModel::OnnxRuntime(g) => g.into_model(),
            #[cfg(feature = "tract")]
            BackendModel::Tract(g) => g.into_model(),
        };
        let graph: Box<dyn BackendGraph> = Box::new(ModelGraph { model, inference });
        Graph::from(graph)
    }
}

impl Models {
    /// Resolves the backend, then loads and optimises every model, and
    /// runs each once (so the first call does not pay for a cold start,
    /// and [`LoadedModel::inference_time`] is known).
    pub fn load(config: &NnConfig) -> Result<Models, NnError> {
        Models::load_timed(config, None)
    }

    /// [`Models::load`], each inference then counted in `host`'s metrics
    /// (`dapr_wasm_nn_inference_duration_seconds`).
    pub fn load_on(config: &NnConfig, host: &FunctionHost) -> Result<Models, NnError> {
        Models::load_timed(config, Some(host))
    }

    fn load_timed(config: &NnConfig, host: Option<&FunctionHost>) -> Result<Models, NnError> {
        let backend = resolve_backend(config)?;
        let mut graphs = HashMap::new();
        let mut loaded = Vec::new();
        for spec in &config.models {
            let started = std::time::Instant::now();
            let bytes = std::fs::read(&spec.path).map_err(|source| NnError::Read {
                name: spec.name.clone(),
                path: spec.path.clone(),
                source,
            })?;
            let load_error = |reason| NnError::Load {
                name: spec.name.clone(),
                backend,
                reason,
            };
            // resolve_backend() gives tract only in a build that has it.
            let model = match backend {
                #[cfg(feature = "tract")]
                Backend::Tract => {
                    BackendModel::Tract(tract::TractGraph::load(&bytes).map_err(load_error)?)
                }
                _ => BackendModel::OnnxRuntime(
                    onnxruntime::OrtGraph::load(&bytes, config.threads, config.sessions)
                        .map_err(load_error)?,
                ),
            };
            let load_time = started.elapsed();
            let input_shape = model.input_shape().to_vec();
            let started = std::time::Instant::now();
            model
                .run(vec![0.0; input_shape.iter().product()])
                .map_err(load_error)?;
            let inference_time = started.elapsed();
            tracing::info!(
                model = %spec.name,
                path = %spec.path.display(),
                %backend,
                ?input_shape,
                ?load_time,
                ?inference_time,
                "model loaded"
            );
            let inference =
                host.map(|h| h.host_metrics().inference(&spec.name, &backend.to_string()));
            graphs.insert(spec.name.clone(), model.into_graph(inference));
            loaded.push(LoadedModel {
                name: spec.name.clone(),
                path: spec.path.clone(),
                input_shape,
                load_time,
                inference_time,
            });
        }
        Ok(Models {
            graphs,
            loaded,
            backend,
        })
    }

    /// Each model, in the configured order, with what loading it took.
    pub fn loaded(&self) -> &[LoadedModel] {
        &self.loaded
    }

    /// The backend actually in use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The names guests can load.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graphs.keys().map(String::as_str)
    }

    /// A fresh WASI-NN context for one call: the shared graphs, no backends
    /// (so no loading from bytes), no execution contexts yet.
    pub(crate) fn call_context(&self) -> WasiNnCtx {
        WasiNnCtx::new(Vec::new(), Registry::from(Preloaded(self.graphs.clone())))
    }
}

/// An empty context for functions that do not use WASI-NN.
pub(crate) fn empty_context() -> WasiNnCtx {
    WasiNnCtx::new(Vec::new(), Registry::from(Preloaded(HashMap::new())))
}

/// A call's view of the preloaded graphs.
struct Preloaded(HashMap<String, Graph>);

impl GraphRegistry for Preloaded {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }
    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}

fn resolve_backend(config: &NnConfig) -> Result<Backend, NnError> {
    match config.backend {
        Backend::Tract if cfg!(feature = "tract") => Ok(Backend::Tract),
        Backend::Tract => Err(NnError::TractNotBuilt),
        Backend::OnnxRuntime => {
            let lib = config.onnxruntime_lib.as_deref().ok_or_else(|| {
                NnError::OnnxRuntimeUnavailable(
                    "no library path given (set --onnxruntime-lib, or run `dapr-wasm models fetch`)"
                        .into(),
                )
            })?;
            onnxruntime::init(lib).map_err(NnError::OnnxRuntimeUnavailable)?;
            tracing::info!(library = %lib.display(), "WASI-NN backend: ONNX Runtime (configured)");
            Ok(Backend::OnnxRuntime)
        }
        Backend::Auto => {
            let Some(lib) = config.onnxruntime_lib.as_deref() else {
                return auto_without_onnxruntime(
                    "no ONNX Runtime library configured (set --onnxruntime-lib, or run `dapr-wasm models fetch`)",
                );
            };
            if !lib.is_file() {
                return auto_without_onnxruntime(&format!(
                    "{} does not exist: `dapr-wasm models fetch` gets it",
                    lib.display()
                ));
            }
            match onnxruntime::init(lib) {
                Ok(()) => {
                    tracing::info!(library = %lib.display(), "WASI-NN backend: ONNX Runtime (auto: library found)");
                    Ok(Backend::OnnxRuntime)
                }
                Err(reason) => auto_without_onnxruntime(&reason),
            }
        }
    }
}

/// `auto` when ONNX Runtime cannot be used: tract, in a build that has it;
/// otherwise the reason, as an error.
fn auto_without_onnxruntime(reason: &str) -> Result<Backend, NnError> {
    if cfg!(feature = "tract") {
        tracing::warn!(%reason, "WASI-NN backend: tract (auto: ONNX Runtime cannot be used)");
        Ok(Backend::Tract)
    } else {
        Err(NnError::OnnxRuntimeUnavailable(reason.to_string()))
    }
}

thread_local! {
    /// The inferences of the call running on this thread: a call runs on
    /// one thread from start to end, and so do its WASI-NN calls.
    static INFERENCES: std::cell::Cell<Inferences> =
        const { std::cell::Cell::new(Inferences { total: std::time::Duration::ZERO, first_started: None }) };
}

/// What one call's inferences took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Inferences {
    /// Their time, added up.
    pub total: std::time::Duration,
    /// When the first began.
    pub first_started: Option<std::time::Instant>,
}

/// The inferences this thread ran since the last take; resets them.
pub(crate) fn take_inferences() -> Inferences {
    INFERENCES.with(|cell| cell.take())
}

/// A backend error with a message.
pub(crate) fn backend_error(message: impl std::fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::Error::msg(message.to_string()))
}

/// Little-endian bytes to f32s.
pub(crate) fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// f32s to little-endian bytes.
pub(crate) fn f32s_to_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Checks a guest tensor against the model's single f32 input and returns
/// its elements.
pub(crate) fn input_elements(
    tensor: &wasmtime_wasi_nn::Tensor,
    expected: &[usize],
) -> Result<Vec<f32>, BackendError> {
    if tensor.ty != wasmtime_wasi_nn::wit::TensorType::Fp32 {
        return Err(backend_error(format!(
            "the model takes f32 input, got {:?}",
            tensor.ty
        )));
    }
    let dims: Vec<usize> = tensor.dimensions.iter().map(|&d| d as usize).collect();
    if dims != expected {
        return Err(backend_error(format!(
            "the model takes input of shape {expected:?}, got {dims:?}"
        )));
    }
    let count: usize = dims.iter().product();
    if tensor.data.len() != count * 4 {
        return Err(backend_error(format!(
            "a {dims:?} f32 tensor needs {} bytes, got {}",
            count * 4,
            tensor.data.len()
        )));
    }
    Ok(f32s_from_le(&tensor.data))
}

/// What a backend provides: one inference on a loaded model. The model is
/// shared by every call (behind an `Arc`, in a [`ModelGraph`]); each call's
/// execution context is a [`ModelContext`] around it.
pub(crate) trait Model: Send + Sync + 'static {
    /// The model's input shape.
    fn input_shape(&self) -> &[usize];
    /// Runs one inference; returns the first output's shape and elements.
    fn infer(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String>;
}

/// A backend's model as WASI-NN's graph: each call's execution context is
/// a fresh [`ModelContext`] over the shared model.
struct ModelGraph {
    model: Arc<dyn Model>,
    /// Where each inference's time goes, if anywhere.
    inference: Option<Histogram>,
}

impl BackendGraph for ModelGraph {
    fn init_execution_context(&self) -> Result<wasmtime_wasi_nn::ExecutionContext, BackendError> {
        let context: Box<dyn BackendExecutionContext> = Box::new(ModelContext {
            model: self.model.clone(),
            inference: self.inference.clone(),
            input: None,
            outputs: Vec::new(),
        });
        Ok(context.into())
    }
}

/// One call's execution context: the input the guest set and the outputs
/// of the last `compute`, over the shared model.
struct ModelContext {
    model: Arc<dyn Model>,
    inference: Option<Histogram>,
    input: Option<Vec<f32>>,
    outputs: Vec<wasmtime_wasi_nn::Tensor>,
}

impl BackendExecutionContext for ModelContext {
    fn set_input(
        &mut self,
        id: wasmtime_wasi_nn::backend::Id,
        tensor: &wasmtime_wasi_nn::Tensor,
    ) -> Result<(), BackendError> {
        if id.index().is_some_and(|i| i != 0) {
            return Err(backend_error("the model has one input, index 0"));
        }
        self.input = Some(input_elements(tensor, self.model.input_shape())?);
        Ok(())
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<wasmtime_wasi_nn::backend::NamedTensor>>,
    ) -> Result<Option<Vec<wasmtime_wasi_nn::backend::NamedTensor>>, BackendError> {
        // The named-tensor (WIT) form runs through the witx steps.
        let named = inputs.is_some();
        for input in inputs.into_iter().flatten() {
            self.set_input(wasmtime_wasi_nn::backend::Id::Index(0), &input.tensor)?;
        }
        let input = self
            .input
            .take()
            .ok_or_else(|| backend_error("compute before set_input"))?;
        let started = std::time::Instant::now();
        let (shape, values) = self.model.infer(input).map_err(backend_error)?;
        let elapsed = started.elapsed();
        INFERENCES.with(|cell| {
            let so_far = cell.get();
            cell.set(Inferences {
                total: so_far.total + elapsed,
                first_started: so_far.first_started.or(Some(started)),
            });
        });
        if let Some(inference) = &self.inference {
            inference.observe(elapsed.as_secs_f64());
        }
        self.outputs = vec![wasmtime_wasi_nn::Tensor {
            dimensions: shape.iter().map(|&d| d as u32).collect(),
            ty: wasmtime_wasi_nn::wit::TensorType::Fp32,
            data: f32s_to_le(&values),
        }];
        if !named {
            return Ok(None);
        }
        Ok(Some(vec![wasmtime_wasi_nn::backend::NamedTensor {
            name: "0".into(),
            tensor: self.outputs[0].clone(),
        }]))
    }

    fn get_output(
        &mut self,
        id: wasmtime_wasi_nn::backend::Id,
    ) -> Result<wasmtime_wasi_nn::Tensor, BackendError> {
        let index = id.index().unwrap_or(0) as usize;
        self.outputs
            .get(index)
            .cloned()
            .ok_or_else(|| backend_error(format!("no output {index}; call compute first")))
    }
}
