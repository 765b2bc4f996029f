//! WASI entry point of the `classify` function.
//!
//! Reads an image from stdin, asks the host to run the model through
//! WASI-NN, and writes the JSON answer to stdout. On failure it writes a
//! one-line reason to stderr and exits with `1` (invalid image), `2`
//! (unsupported format), `3` (over a limit) or `4` (the host's inference
//! failed; not the caller's fault).
//!
//! With the argument `--timings` it also writes one line to stderr with the
//! time of each stage, as the guest's clock sees it (for the benchmark):
//! `timings decode_ms=.. preprocess_ms=.. inference_ms=.. answer_ms=..`.

use std::io::{Read, Write};
use std::process::ExitCode;

use std::time::Instant;

use classify::{CLASSES, Classification, INPUT_SHAPE, MODEL_NAME, to_tensor};
use wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

/// Exit code for a failed inference.
const INFERENCE_FAILED: u8 = 4;

fn infer(tensor: &[f32]) -> Result<Vec<f32>, wasi_nn::Error> {
    let graph = GraphBuilder::new(GraphEncoding::Onnx, ExecutionTarget::CPU)
        .build_from_cache(MODEL_NAME)?;
    let mut context = graph.init_execution_context()?;
    context.set_input(0, TensorType::F32, &INPUT_SHAPE, tensor)?;
    context.compute()?;
    let mut logits = vec![0f32; CLASSES];
    context.get_output(0, &mut logits)?;
    Ok(logits)
}

fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("could not read stdin: {err}");
        return ExitCode::from(1);
    }
    let timings = std::env::args().any(|a| a == "--timings");
    let started = Instant::now();
    let rgb = match image_input::decode_rgb(&input, &image_input::Limits::default()) {
        Ok(rgb) => rgb,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1));
        }
    };
    let decoded = Instant::now();
    let tensor = to_tensor(&rgb);
    let preprocessed = Instant::now();
    let logits = match infer(&tensor) {
        Ok(logits) => logits,
        Err(err) => {
            eprintln!("inference with model `{MODEL_NAME}` failed: {err}");
            return ExitCode::from(INFERENCE_FAILED);
        }
    };
    let inferred = Instant::now();
    let json = Classification::from_logits(&logits).to_json();
    if timings {
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
