//! WASI entry point of the `classify` function.
//!
//! Reads an image from stdin, asks the host to run the model through
//! WASI-NN, and writes the JSON answer to stdout. On failure it writes a
//! one-line reason to stderr and exits with `1` (invalid image), `2`
//! (unsupported format), `3` (over a limit), `4` (the host's inference
//! failed; not the caller's fault) or `5` (an unknown model).
//!
//! Arguments: `--model NAME` picks the model (default
//! `efficientnet-lite0`; see [`classify::MODELS`]). With `--timings` it also
//! writes one line to stderr with the time of each stage, as the guest's
//! clock sees it (for the benchmark):
//! `timings decode_ms=.. preprocess_ms=.. inference_ms=.. answer_ms=..`.

use std::io::{Read, Write};
use std::process::ExitCode;

use std::time::Instant;

use classify::{CLASSES, Classification, DEFAULT_MODEL, ModelInput, Options, to_tensor};
use wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

/// Exit code for a failed inference.
const INFERENCE_FAILED: u8 = 4;
/// Exit code for a model that does not exist (here or on the host).
const UNKNOWN_MODEL: u8 = 5;

/// Why the inference did not happen.
enum InferError {
    /// The host has no model by that name.
    NotLoaded(wasi_nn::Error),
    /// It failed after loading.
    Failed(wasi_nn::Error),
}

fn infer(model: ModelInput, tensor: &[f32]) -> Result<Vec<f32>, InferError> {
    // The host's `load_by_name` fails only for a name it has not loaded.
    let graph = GraphBuilder::new(GraphEncoding::Onnx, ExecutionTarget::CPU)
        .build_from_cache(model.name)
        .map_err(InferError::NotLoaded)?;
    let run = || -> Result<Vec<f32>, wasi_nn::Error> {
        let mut context = graph.init_execution_context()?;
        context.set_input(0, TensorType::F32, &model.input_shape(), tensor)?;
        context.compute()?;
        let mut logits = vec![0f32; CLASSES];
        context.get_output(0, &mut logits)?;
        Ok(logits)
    };
    run().map_err(InferError::Failed)
}

fn main() -> ExitCode {
    let options = Options::parse(std::env::args().skip(1));
    let model = match options.model.as_deref().map(classify::model) {
        None => DEFAULT_MODEL,
        Some(Ok(model)) => model,
        Some(Err(unknown)) => {
            eprintln!("{unknown}");
            return ExitCode::from(UNKNOWN_MODEL);
        }
    };
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("could not read stdin: {err}");
        return ExitCode::from(1);
    }
    let started = Instant::now();
    let rgb = match image_input::decode_rgb(&input, &image_input::Limits::default()) {
        Ok(rgb) => rgb,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1));
        }
    };
    let decoded = Instant::now();
    let tensor = to_tensor(&rgb, model.side);
    let preprocessed = Instant::now();
    let logits = match infer(model, &tensor) {
        Ok(logits) => logits,
        Err(InferError::NotLoaded(err)) => {
            eprintln!("the host has no model `{}` loaded ({err})", model.name);
            // Asked for by name, the caller's mistake; the default missing,
            // the host's.
            return ExitCode::from(if options.model.is_some() {
                UNKNOWN_MODEL
            } else {
                INFERENCE_FAILED
            });
        }
        Err(InferError::Failed(err)) => {
            eprintln!("inference with model `{}` failed: {err}", model.name);
            return ExitCode::from(INFERENCE_FAILED);
        }
    };
    let inferred = Instant::now();
    let json = Classification::from_logits(&logits, model.name).to_json();
    if options.timings {
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        eprintln!(
            "timings decode_ms={:.3} preprocess_ms={:.3} inference_ms={:.3} answer_ms={:.3}",
            ms(started, decoded),
            ms(decoded, preprocessed),
            ms(preprocessed, inferred),
            ms(inferred, Instant::now())
        );
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(json.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("could not write stdout: {err}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
