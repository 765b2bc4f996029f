//! The WASI-NN flags every command that runs functions takes
//! ([`NnArgs`]), checked into an [`NnConfig`].

use std::path::PathBuf;

use clap::Args;

use super::{Backend, ModelSpec, NnConfig};

/// WASI-NN flags, shared by `dapr-wasm image-api` and `dapr-wasm run`.
/// Their defaults are the model `dapr-wasm models fetch` prepares
/// ([`model_files`]) in the models directory ([`local_dirs::models_dir`]).
#[derive(Debug, Clone, Args)]
pub struct NnArgs {
    /// A model for WASI-NN, as NAME=PATH to an ONNX file (repeatable). Used
    /// only by functions that import WASI-NN. [default: every model
    /// `dapr-wasm models fetch` prepares: efficientnet-lite0, -lite1 and
    /// -lite2, each NAME=MODELS_DIR/NAME.onnx]
    #[arg(long = "model", value_name = "NAME=PATH")]
    pub models: Vec<String>,

    /// Where `dapr-wasm models fetch` put the models [default:
    /// ~/.local/share/dapr-wasm/models].
    #[arg(long, env = "DAPR_WASM_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// The inference engine: auto (ONNX Runtime; tract when its library is
    /// missing, in a build with the `tract` feature), onnxruntime, or tract
    /// (that feature only).
    #[arg(long, env = "DAPR_WASM_NN_BACKEND", default_value = "auto")]
    pub nn_backend: Backend,

    /// ONNX Runtime's shared library [default: the one `dapr-wasm models
    /// fetch` put in MODELS_DIR].
    #[arg(long, env = "DAPR_WASM_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,

    /// Threads one inference may use (ONNX Runtime; tract uses one).
    #[arg(long, default_value_t = 1)]
    pub nn_threads: usize,
}

impl NnArgs {
    /// Checks the flags and fills in the defaults from the models directory.
    pub fn validate(&self) -> Result<NnConfig, String> {
        let models_dir = self.models_dir.clone().or_else(local_dirs::models_dir);
        let mut specs = Vec::new();
        for model in &self.models {
            let (name, path) = model
                .split_once('=')
                .ok_or_else(|| format!("--model `{model}` must be NAME=PATH"))?;
            specs.push(ModelSpec {
                name: name.to_string(),
                path: PathBuf::from(path),
            });
        }
        if let (true, Some(dir)) = (specs.is_empty(), &models_dir) {
            specs = prepared_models(dir);
        }
        if let Some(name) = duplicate(specs.iter().map(|s| s.name.as_str())) {
            return Err(format!("--model `{name}` is given twice"));
        }
        if self.nn_threads == 0 {
            return Err("--nn-threads must be at least 1".into());
        }
        let onnxruntime_lib = self.onnxruntime_lib.clone().or_else(|| {
            let pinned = model_files::onnxruntime_lib()?;
            Some(models_dir.as_ref()?.join(pinned.file_name))
        });
        Ok(NnConfig {
            models: specs,
            backend: self.nn_backend,
            onnxruntime_lib,
            threads: self.nn_threads,
            sessions: 1,
        })
    }
}

/// Every model `dapr-wasm models fetch` prepares in `dir`
/// ([`model_files::CLASSIFIERS`]), by its name, smallest first.
pub fn prepared_models(dir: &std::path::Path) -> Vec<ModelSpec> {
    let files = model_files::ModelFiles::in_dir(dir);
    model_files::CLASSIFIERS
        .iter()
        .map(|model| ModelSpec {
            name: model.name.to_string(),
            path: files.onnx(model),
        })
        .collect()
}

/// The first name that occurs twice.
fn duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}
