//! The models dapr-wasm serves, made ready: [`prepare`] fetches the pinned
//! files ([`model_files::fetch`]) and converts each EfficientNet-Lite's
//! weights ([`model_files::CLASSIFIERS`]), once, to ONNX with this crate's
//! own converter: [`torch_legacy`] reads the legacy PyTorch pickle,
//! [`efficientnet`] builds the graph and [`onnx`] writes it. Each output's
//! SHA-256 is pinned ([`model_files::Classifier::onnx_sha256`]).

use std::path::Path;

use model_files::{CLASSIFIERS, Classifier, FetchError, ModelFiles, digest, fetch};
use sha2::{Digest, Sha256};

pub mod efficientnet;
pub mod onnx;
pub mod torch_legacy;

/// Why the model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertFileError {
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The weights could not be converted.
    #[error(transparent)]
    Convert(#[from] efficientnet::ConvertError),
}

/// Converts `model`'s weights (the bytes of its `.pth`) into ONNX bytes.
pub fn convert_weights(
    model: &Classifier,
    weights: &[u8],
) -> Result<Vec<u8>, efficientnet::ConvertError> {
    let state = torch_legacy::read_state_dict(weights)?;
    Ok(efficientnet::to_onnx(&state, model, efficientnet::Until::Logits)?.encode())
}

/// Why [`prepare`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Downloading failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Converting failed.
    #[error("cannot convert the weights to ONNX: {0}")]
    Convert(#[from] ConvertFileError),
}

/// Fetches the pinned files into `dir` and converts every model's weights
/// to ONNX (once: an existing intact `.onnx` is kept). `progress` gets one
/// line per step.
pub fn prepare(dir: &Path, mut progress: impl FnMut(&str)) -> Result<ModelFiles, PrepareError> {
    fetch(dir, &mut progress)?;
    let files = ModelFiles::in_dir(dir);
    for model in &CLASSIFIERS {
        convert_once(&files, model, &mut progress)?;
    }
    Ok(files)
}

/// Converts `model` unless its intact ONNX file is already there.
fn convert_once(
    files: &ModelFiles,
    model: &Classifier,
    progress: &mut impl FnMut(&str),
) -> Result<(), ConvertFileError> {
    let onnx_file = model.onnx_file;
    let destination = files.onnx(model);
    if digest(&destination).is_ok_and(|(_, sha)| sha == model.onnx_sha256) {
        progress(&format!("{onnx_file}: present, SHA-256 verified"));
        return Ok(());
    }
    progress(&format!(
        "{onnx_file}: converting {} (legacy PyTorch pickle) to ONNX opset {}",
        model.weights.file_name,
        onnx::OPSET
    ));
    let started = std::time::Instant::now();
    let weights_path = files.dir.join(model.weights.file_name);
    let weights = std::fs::read(&weights_path).map_err(|source| ConvertFileError::Io {
        context: format!("cannot read {}", weights_path.display()),
        source,
    })?;
    let bytes = convert_weights(model, &weights)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != model.onnx_sha256 {
        // Deterministic input and code give a deterministic output; anything
        // else is worth knowing, but the model is still usable.
        progress(&format!(
            "{onnx_file}: note: SHA-256 {sha} differs from the pinned {}",
            model.onnx_sha256
        ));
    }
    let partial = files
        .dir
        .join(format!(".{onnx_file}.{}", std::process::id()));
    std::fs::write(&partial, &bytes)
        .and_then(|()| std::fs::rename(&partial, &destination))
        .map_err(|source| ConvertFileError::Io {
            context: format!("cannot write {}", destination.display()),
            source,
        })?;
    progress(&format!(
        "{onnx_file}: written, {} bytes in {:.1} s",
        bytes.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
