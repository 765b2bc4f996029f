//! The models dapr-wasm serves, made ready: [`prepare`] fetches the pinned
//! files ([`model_files::fetch`]) and converts the EfficientNet-Lite0
//! weights, once, to ONNX with this crate's own converter:
//! [`torch_legacy`] reads the legacy PyTorch pickle, [`efficientnet`]
//! builds the graph and [`onnx`] writes it. The output's SHA-256 is pinned
//! ([`model_files::ONNX_SHA256`]).

use std::path::Path;

use model_files::{
    EFFICIENTNET_LITE0_WEIGHTS, FetchError, ModelFiles, ONNX_FILE, ONNX_SHA256, digest, fetch,
};
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

/// Converts the EfficientNet-Lite0 weights at `weights` into the ONNX bytes.
pub fn convert_weights(weights: &[u8]) -> Result<Vec<u8>, efficientnet::ConvertError> {
    let state = torch_legacy::read_state_dict(weights)?;
    Ok(efficientnet::to_onnx(&state, efficientnet::Until::Logits)?.encode())
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

/// Fetches the pinned files into `dir` and converts the weights to ONNX
/// (once: an existing intact `.onnx` is kept). `progress` gets one line per
/// step.
pub fn prepare(dir: &Path, mut progress: impl FnMut(&str)) -> Result<ModelFiles, PrepareError> {
    fetch(dir, &mut progress)?;
    let files = ModelFiles::in_dir(dir);
    if digest(&files.onnx).is_ok_and(|(_, sha)| sha == ONNX_SHA256) {
        progress(&format!("{ONNX_FILE}: present, SHA-256 verified"));
        return Ok(files);
    }
    progress(&format!(
        "{ONNX_FILE}: converting {} (legacy PyTorch pickle) to ONNX opset {}",
        EFFICIENTNET_LITE0_WEIGHTS.file_name,
        onnx::OPSET
    ));
    let started = std::time::Instant::now();
    let weights_path = dir.join(EFFICIENTNET_LITE0_WEIGHTS.file_name);
    let weights = std::fs::read(&weights_path).map_err(|source| ConvertFileError::Io {
        context: format!("cannot read {}", weights_path.display()),
        source,
    })?;
    let bytes = convert_weights(&weights).map_err(ConvertFileError::from)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != ONNX_SHA256 {
        // Deterministic input and code give a deterministic output; anything
        // else is worth knowing, but the model is still usable.
        progress(&format!(
            "{ONNX_FILE}: note: SHA-256 {sha} differs from the pinned {ONNX_SHA256}"
        ));
    }
    let partial = dir.join(format!(".{ONNX_FILE}.{}", std::process::id()));
    std::fs::write(&partial, &bytes)
        .and_then(|()| std::fs::rename(&partial, &files.onnx))
        .map_err(|source| ConvertFileError::Io {
            context: format!("cannot write {}", files.onnx.display()),
            source,
        })?;
    progress(&format!(
        "{ONNX_FILE}: written, {} bytes in {:.1} s",
        bytes.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(files)
}
