//! The ONNX Runtime backend, through `ort` with its shared library loaded at
//! run time (`load-dynamic`): the fast path and the default.
//!
//! `ort` panics on first use if its library cannot be loaded or is too old,
//! so [`init`] loads it once, at startup, catching that panic and turning it
//! into an error; nothing on a request path loads the library.
//!
//! Each model gets [`NnConfig::sessions`](super::NnConfig) sessions, built
//! (and their graphs optimised) at startup. The `ort` API runs a session
//! through `&mut`, so one session runs one inference at a time; with a
//! session per call slot, concurrent calls never take turns. Each inference
//! may use [`NnConfig::threads`](super::NnConfig) threads. Every session
//! holds its own copy of the weights (EfficientNet-Lite0: about 19 MB).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;

use super::Model;

/// The library `ort` was initialised with.
static INITIALISED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Loads ONNX Runtime's shared library and creates its environment. Safe to
/// call again with the same path; a different path after a success is an
/// error (the library stays loaded for the life of the process). A missing
/// file is reported without touching `ort`, so a later call can still
/// succeed; a file that exists but fails to load fixes `ort`'s library path
/// for the process (its own rule), so later calls fail too.
pub fn init(library: &Path) -> Result<(), String> {
    if !library.is_file() {
        return Err(format!("{} does not exist", library.display()));
    }
    let mut initialised = INITIALISED.lock().unwrap_or_else(|p| p.into_inner());
    match initialised.as_ref() {
        Some(loaded) if loaded == library => Ok(()),
        Some(loaded) => Err(format!(
            "ONNX Runtime was already loaded from {}",
            loaded.display()
        )),
        None => {
            *initialised = Some(load(library)?);
            Ok(())
        }
    }
}

fn is_initialised() -> bool {
    INITIALISED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
}

fn load(library: &Path) -> Result<PathBuf, String> {
    let path = library.display().to_string();
    // Silence the default panic message: the panic becomes our error.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result =
        std::panic::catch_unwind(|| ort::init_from(path.clone()).with_name("dapr-wasm").commit());
    std::panic::set_hook(previous_hook);
    match result {
        Ok(Ok(_)) => {
            tracing::info!(library = %path, version = ort::info(), "ONNX Runtime loaded");
            Ok(library.to_path_buf())
        }
        Ok(Err(e)) => Err(format!("{path}: {e}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into());
            Err(message)
        }
    }
}

/// A model loaded into an ONNX Runtime session.
pub struct OrtGraph(Arc<OrtModel>);

struct OrtModel {
    /// At least one.
    sessions: Vec<Mutex<Session>>,
    /// Where the next call starts looking for a free session.
    next: AtomicUsize,
    input_shape: Vec<usize>,
}

impl OrtGraph {
    /// Builds `sessions` optimised sessions (at least one) from ONNX bytes,
    /// each running one inference at a time on `threads` threads. [`init`]
    /// must have succeeded first.
    pub fn load(onnx: &[u8], threads: usize, sessions: usize) -> Result<OrtGraph, String> {
        if !is_initialised() {
            return Err("ONNX Runtime is not initialised".into());
        }
        let build = || {
            Session::builder()
                .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
                .and_then(|b| b.with_intra_threads(threads.max(1)))
                .and_then(|b| b.with_inter_threads(1))
                .and_then(|b| b.commit_from_memory(onnx))
                .map_err(|e| e.to_string())
        };
        let sessions = (0..sessions.max(1))
            .map(|_| build().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let session = sessions[0].lock().unwrap_or_else(|p| p.into_inner());
        let input = session.inputs.first().ok_or("the model has no input")?;
        let ValueType::Tensor { shape, .. } = &input.input_type else {
            return Err("the model's input is not a tensor".into());
        };
        let input_shape = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| "the model's input shape is not fixed"))
            .collect::<Result<Vec<_>, _>>()?;
        drop(session);
        Ok(OrtGraph(Arc::new(OrtModel {
            sessions,
            next: AtomicUsize::new(0),
            input_shape,
        })))
    }

    /// The model's input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.0.input_shape
    }

    /// Runs one inference: `input` in the model's input shape, row-major.
    /// Returns the first output's shape and elements.
    pub fn run(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.0.infer(input)
    }

    /// The loaded model, for WASI-NN to share between calls.
    pub(crate) fn into_model(self) -> Arc<dyn Model> {
        self.0
    }
}

impl Model for OrtModel {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn infer(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        let dims: Vec<i64> = self.input_shape.iter().map(|&d| d as i64).collect();
        let tensor = ort::value::Tensor::from_array((dims, input))
            .map_err(|e| format!("ONNX Runtime: {e}"))?;
        let mut session = self.free_session();
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(|e| format!("ONNX Runtime: {e}"))?;
        if outputs.len() == 0 {
            return Err("ONNX Runtime: the model produced no output".into());
        }
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("ONNX Runtime: {e}"))?;
        let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
        Ok((shape, data.to_vec()))
    }
}

impl OrtModel {
    /// A session no other call is using, taking turns from a rotating start;
    /// if all are busy (more callers than sessions), waits for one. A
    /// poisoned session is still usable: ONNX Runtime keeps no partial state
    /// between runs.
    fn free_session(&self) -> std::sync::MutexGuard<'_, Session> {
        let count = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            match self.sessions[(start + offset) % count].try_lock() {
                Ok(session) => return session,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
