//! The native baseline of `scripts/soak.sh`'s three-way comparison: the
//! same work as the `grayscale` or `classify` function, compiled natively
//! (no wasm, no HTTP), on `threads` threads for `seconds`.
//!
//! `cargo run --release -p function-app --example native_throughput -- \
//!     grayscale|classify PHOTO SECONDS THREADS`
//!
//! Prints one JSON line: images, images per second, p50 and p99 latency,
//! and CPU seconds used. Classify gives each thread its own ONNX Runtime
//! session (one intra-op thread), the best a native server could do.

use std::time::{Duration, Instant};

use function_host::nn::onnxruntime::{OrtGraph, init};

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks (100 per second).
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api, photo, seconds, threads] = &args[..] else {
        eprintln!("usage: native_throughput grayscale|classify PHOTO SECONDS THREADS");
        std::process::exit(2);
    };
    let photo = std::fs::read(photo).expect("the photo");
    let run_for = Duration::from_secs_f64(seconds.parse().expect("seconds"));
    let threads: usize = threads.parse().expect("threads");
    let limits = classify::Limits::default();

    let work: Box<dyn Fn() -> Box<dyn FnMut() + Send> + Sync> = match api.as_str() {
        "grayscale" => {
            let photo = photo.clone();
            Box::new(move || {
                let photo = photo.clone();
                Box::new(move || {
                    let (gray, _) = grayscale::grayscale(&photo, &limits).expect("grayscale");
                    assert!(!gray.is_empty());
                })
            })
        }
        "classify" => {
            let files = model_files::ModelFiles::in_dir(&local_dirs::models_dir().expect("HOME"));
            let onnx =
                std::fs::read(files.default_onnx()).expect("run `dapr-wasm models fetch` first");
            init(
                files
                    .onnxruntime
                    .as_deref()
                    .expect("ONNX Runtime is pinned here"),
            )
            .expect("ONNX Runtime");
            let photo = photo.clone();
            Box::new(move || {
                let session = OrtGraph::load(&onnx, 1, 1).expect("the model");
                let photo = photo.clone();
                Box::new(move || {
                    let tensor =
                        classify::preprocess(&photo, &limits, classify::DEFAULT_MODEL.side)
                            .expect("preprocess");
                    let (_, logits) = session.run(tensor).expect("inference");
                    let answer = classify::Classification::from_logits(
                        &logits,
                        classify::DEFAULT_MODEL.name,
                    )
                    .to_json();
                    assert!(answer.contains("label"));
                })
            })
        }
        other => panic!("unknown api {other}"),
    };

    // One warm-up call per thread, then run together until the deadline.
    let mut jobs: Vec<Box<dyn FnMut() + Send>> = (0..threads).map(|_| work()).collect();
    for job in &mut jobs {
        job();
    }
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let deadline = started + run_for;
    let mut latencies: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|mut job| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        job();
                        latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"api\": \"{api}\", \"images\": {}, \"seconds\": {elapsed:.2}, \"images_per_s\": {:.2}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"cpu_seconds\": {cpu:.2}}}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        quantile(0.5),
        quantile(0.99),
    );
}
