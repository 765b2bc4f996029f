//! `bash scripts/bench-classify.sh`: the classify figures, all in one run.
//!
//! - (a) One 224x224 inference of EfficientNet-Lite0, single-threaded: the
//!   tract backend (built with `--features tract`, as the script does), the
//!   ONNX Runtime backend, and the reference, Python's
//!   `onnxruntime` on the same ONNX file and the same input (when
//!   `BENCH_PYTHON` names a Python that has it; the script makes one).
//! - (b) One photo end to end through the classify service over HTTP, and
//!   the stages inside the call as the guest's clock sees them (decode,
//!   crop and resize, inference on the host, the JSON answer).
//!
//! - (c) Each model (EfficientNet-Lite0, Lite1, Lite2): one inference on
//!   ONNX Runtime, 1 thread; one photo end to end over HTTP
//!   (`?model=NAME`); throughput of the service with 2 call slots and 2
//!   clients on the 2 cores, all models measured in the same run; and the
//!   memory one model adds at rest (2 sessions, measured in a child
//!   process per model).
//!
//! Prints Markdown for `docs/performance.md`. `BENCH_ITERATIONS` sets the
//! number of timed runs per figure (default 50), `BENCH_SECONDS` the
//! length of each throughput run (default 10).

use std::time::Duration;

use bytes::Bytes;
use function_host::nn::onnxruntime::{OrtGraph, init};
use function_host::nn::{Backend, ModelSpec, Models, NnConfig};
use function_host::{FunctionHost, HostConfig};

#[path = "../../function-host/benches/sample/mod.rs"]
mod sample;
use sample::{Sample, fmt, ratio};
use test_support::repo_path;

fn top1(logits: &[f32]) -> usize {
    (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0)
}

fn main() {
    if let Ok(name) = std::env::var("BENCH_RSS_MODEL") {
        return rss_of_one_model(&name);
    }
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = local_dirs::models_dir().expect("HOME is set");
    let files = model_files::ModelFiles::in_dir(&dir);
    let onnx = std::fs::read(files.default_onnx()).expect("run `dapr-wasm models fetch` first");
    let library = files
        .onnxruntime
        .clone()
        .expect("ONNX Runtime is pinned for this platform");
    let photo = std::fs::read(repo_path("testdata/cat.jpg")).unwrap();
    let input = classify::preprocess(
        &photo,
        &classify::Limits::default(),
        classify::DEFAULT_MODEL.side,
    )
    .unwrap();

    // (a) one inference, one thread.
    #[cfg(feature = "tract")]
    let tract = {
        let tract = function_host::nn::tract::TractGraph::load(&onnx).unwrap();
        let top = top1(&tract.run(input.clone()).unwrap().1);
        let sample = Sample::measure(iterations, || {
            tract.run(input.clone()).unwrap();
        });
        (sample, top)
    };
    init(&library).unwrap();
    let ort = OrtGraph::load(&onnx, 1, 1).unwrap();
    let ort_top1 = top1(&ort.run(input.clone()).unwrap().1);
    let ort_sample = Sample::measure(iterations, || {
        ort.run(input.clone()).unwrap();
    });
    let python = python_reference(&files.default_onnx(), &input, iterations);

    println!("### Classify: one 224x224 inference, 1 thread ({iterations} runs, cat.jpg)\n");
    println!("| engine | median | p10 | p90 | vs Python onnxruntime |");
    println!("|---|---|---|---|---|");
    let vs = |s: &Sample| match &python {
        Some((median, ..)) => format!("{:.2}x", ratio(s.median(), *median)),
        None => "n/a".into(),
    };
    #[cfg(feature = "tract")]
    println!(
        "{} {} |",
        tract.0.row(&format!("tract (top-1 {})", tract.1)),
        vs(&tract.0)
    );
    #[cfg(not(feature = "tract"))]
    println!("| tract | not built: `--features tract` | | | |");
    println!(
        "{} {} |",
        ort_sample.row(&format!("ONNX Runtime via ort (top-1 {ort_top1})")),
        vs(&ort_sample)
    );
    match &python {
        Some((median, p10, p90, top)) => println!(
            "| Python onnxruntime 1.22.1, reference (top-1 {top}) | {} | {} | {} | 1.00x |",
            fmt(*median),
            fmt(*p10),
            fmt(*p90)
        ),
        None => println!("| Python onnxruntime | not measured: set BENCH_PYTHON | | | |"),
    }
    #[cfg(feature = "tract")]
    println!(
        "\ntract / ONNX Runtime: {:.2}x\n",
        ratio(tract.0.median(), ort_sample.median())
    );

    // (b) end to end through the service, ONNX Runtime, one thread.
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .unwrap();
    let function = host
        .load_file("classify", &repo_path("build/functions/classify.wasm"))
        .expect("build the functions first");
    let models = Models::load(&NnConfig {
        models: vec![ModelSpec {
            name: model_files::MODEL_NAME.into(),
            path: files.default_onnx(),
        }],
        backend: Backend::OnnxRuntime,
        onnxruntime_lib: Some(library),
        threads: 1,
        sessions: 1,
    })
    .unwrap();
    let function = function.with_models(models);

    let mut stages: Vec<[f64; 4]> = Vec::new();
    let photo_bytes = Bytes::from(photo.clone());
    let call = Sample::measure(iterations, || {
        let out = function
            .call_blocking(photo_bytes.clone(), &["--timings"])
            .unwrap();
        stages.push(parse_timings(&String::from_utf8_lossy(&out.stderr)));
    });

    let (runtime, url) = serve_on_loopback(&function);
    let client = reqwest::Client::new();
    let http = Sample::measure(iterations, || {
        runtime.block_on(async {
            let response = client.post(&url).body(photo.clone()).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
        });
    });

    let median_of = |i: usize| {
        let mut v: Vec<f64> = stages.iter().map(|s| s[i]).collect();
        v.sort_by(f64::total_cmp);
        Duration::from_secs_f64(v[v.len() / 2] / 1e3)
    };
    let (decode, resize, infer, answer) = (median_of(0), median_of(1), median_of(2), median_of(3));
    println!(
        "### Classify end to end: cat.jpg (451x300 JPEG) through the service, ONNX Runtime, 1 thread\n"
    );
    println!("| stage | median |");
    println!("|---|---|");
    println!(
        "| HTTP round trip (POST /api/image on loopback) | {} |",
        fmt(http.median())
    );
    println!(
        "| the function call (instantiate, run, collect output) | {} |",
        fmt(call.median())
    );
    println!("| - decode the JPEG to RGB, in wasm | {} |", fmt(decode));
    println!(
        "| - centre crop, bicubic resize, normalise, in wasm | {} |",
        fmt(resize)
    );
    println!(
        "| - inference (WASI-NN, ONNX Runtime on the host) | {} |",
        fmt(infer)
    );
    println!("| - softmax, top 5, JSON, in wasm | {} |", fmt(answer));
    let inside = decode + resize + infer + answer;
    println!(
        "| host overhead (call minus guest stages) | {} |",
        fmt(call.median().saturating_sub(inside))
    );
    println!(
        "| HTTP and service overhead (round trip minus call) | {} |",
        fmt(http.median().saturating_sub(call.median()))
    );
    drop(runtime);
    per_model(iterations, &files, &photo);
}

/// (c): the models side by side.
fn per_model(iterations: usize, files: &model_files::ModelFiles, photo: &[u8]) {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let library = files.onnxruntime.clone().expect("ONNX Runtime is pinned");
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        max_concurrent_calls: 2,
        ..HostConfig::default()
    })
    .unwrap();
    let models = Models::load(&NnConfig {
        models: function_host::nn::prepared_models(&files.dir),
        backend: Backend::OnnxRuntime,
        onnxruntime_lib: Some(library),
        threads: 1,
        sessions: 2,
    })
    .unwrap();
    let function = host
        .load_file("classify", &repo_path("build/functions/classify.wasm"))
        .unwrap()
        .with_models(models);
    let (runtime, base) = serve_on_loopback(&function);
    let client = reqwest::Client::new();
    let exe = std::env::current_exe().unwrap();
    println!(
        "\n### Classify per model: cat.jpg, ONNX Runtime, 1 thread per inference ({iterations} runs; throughput: 2 call slots, 2 clients, {seconds} s)\n"
    );
    println!(
        "| model | input | top-1 (published) | inference median | end to end median | end to end p90 | throughput | memory at rest |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for model in &model_files::CLASSIFIERS {
        let onnx = std::fs::read(files.onnx(model)).unwrap();
        let ort = OrtGraph::load(&onnx, 1, 1).unwrap();
        let input =
            classify::preprocess(photo, &classify::Limits::default(), model.input_size).unwrap();
        let inference = Sample::measure(iterations, || {
            ort.run(input.clone()).unwrap();
        });
        drop(ort);
        let url = format!("{base}?model={}", model.name);
        let post = |client: &reqwest::Client| {
            let request = client.post(&url).body(photo.to_vec());
            async move {
                let response = request.send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
            }
        };
        let end_to_end = Sample::measure(iterations, || runtime.block_on(post(&client)));
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        let started = std::time::Instant::now();
        let body = Bytes::copy_from_slice(photo);
        let calls: usize = runtime.block_on(async {
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..2 {
                let (client, url, body) = (reqwest::Client::new(), url.clone(), body.clone());
                clients.spawn(async move {
                    let mut calls = 0usize;
                    while std::time::Instant::now() < deadline {
                        let response = client.post(&url).body(body.clone()).send().await.unwrap();
                        assert!(response.status().is_success(), "{}", response.status());
                        response.bytes().await.unwrap();
                        calls += 1;
                    }
                    calls
                });
            }
            clients.join_all().await.into_iter().sum()
        });
        let throughput = calls as f64 / started.elapsed().as_secs_f64();
        let rss = std::process::Command::new(&exe)
            .env("BENCH_RSS_MODEL", model.name)
            .output()
            .unwrap();
        let rss = String::from_utf8_lossy(&rss.stdout).trim().to_string();
        println!(
            "| {} | {}x{} | {}% | {} | {} | {} | {throughput:.1} photos/s | {rss} |",
            model.name,
            model.input_size,
            model.input_size,
            model.top1_accuracy,
            fmt(inference.median()),
            fmt(end_to_end.median()),
            fmt(end_to_end.quantile(0.9)),
        );
    }
}

/// Serves `function` as the image service on a loopback port, on a new
/// runtime; returns the runtime and the `POST /api/image` URL.
fn serve_on_loopback(function: &function_host::Function) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/image", listener.local_addr().unwrap());
        let app = function_app::single_function_app(
            function.clone(),
            service_kit::body::BodyLimits::max_bytes(16 << 20),
        );
        tokio::spawn(function_app::serve(
            listener,
            app,
            Default::default(),
            std::future::pending(),
        ));
        url
    });
    (runtime, url)
}

/// The child of (c): the resident memory one model adds, loaded as the
/// service loads it (2 sessions, one warm-up inference), after ONNX
/// Runtime itself is loaded. Prints `+N MiB (process M MiB)`.
fn rss_of_one_model(name: &str) {
    let files = model_files::ModelFiles::in_dir(&local_dirs::models_dir().expect("HOME"));
    let model = model_files::classifier(name).expect("a known model");
    init(
        files
            .onnxruntime
            .as_deref()
            .expect("ONNX Runtime is pinned"),
    )
    .unwrap();
    let before = rss_mib();
    let models = Models::load(&NnConfig {
        models: vec![ModelSpec {
            name: name.into(),
            path: files.onnx(model),
        }],
        backend: Backend::OnnxRuntime,
        onnxruntime_lib: files.onnxruntime.clone(),
        threads: 1,
        sessions: 2,
    })
    .unwrap();
    let after = rss_mib();
    drop(models);
    println!("+{:.0} MiB (process {after:.0} MiB)", after - before);
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// `timings decode_ms=.. preprocess_ms=.. inference_ms=.. answer_ms=..`
fn parse_timings(stderr: &str) -> [f64; 4] {
    let mut out = [0f64; 4];
    let line = stderr
        .lines()
        .find(|l| l.starts_with("timings "))
        .expect("timings line");
    for (i, part) in line.split_whitespace().skip(1).take(4).enumerate() {
        out[i] = part
            .split('=')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
    }
    out
}

/// Runs the Python reference, if `BENCH_PYTHON` is set: (median, p10, p90, top-1).
fn python_reference(
    model: &std::path::Path,
    input: &[f32],
    iterations: usize,
) -> Option<(Duration, Duration, Duration, usize)> {
    let python = std::env::var_os("BENCH_PYTHON")?;
    let input_path =
        std::env::temp_dir().join(format!("classify-input-{}.f32", std::process::id()));
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_path, bytes).unwrap();
    let output = std::process::Command::new(python)
        .arg(repo_path("scripts/bench_ort_reference.py"))
        .arg(model)
        .arg(&input_path)
        .arg(iterations.to_string())
        .output()
        .expect("run the Python reference");
    let _ = std::fs::remove_file(&input_path);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
    Some((
        ms(field("median_ms")),
        ms(field("p10_ms")),
        ms(field("p90_ms")),
        field("top1") as usize,
    ))
}
