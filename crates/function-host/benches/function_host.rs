//! `bash scripts/bench.sh` (or `cargo bench -p function-host` after the
//! functions are built): the function host's figures, all measured in one run.
//!
//! - (a) grayscale of a 1024x768 JPEG: the same Rust code compiled natively
//!   against the wasm build called through the host, with each stage
//!   (decode to gray, PNG encode) timed on both sides;
//! - (b) per-call overhead: a call of a guest that does nothing, in time and
//!   in host memory allocated (this binary counts its allocations);
//! - (c) cold start: host + load + first call with an empty cache, then with
//!   a warm on-disk cache.
//!
//! Prints Markdown for `docs/performance.md`. `BENCH_ITERATIONS` sets the
//! number of timed calls per figure (default 40).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use function_host::{Function, FunctionHost, HostConfig};

mod sample;
use sample::{Sample, fmt, ratio};
use test_support::repo_path;

/// The system allocator, counting what is allocated (for the memory per call
/// in (b), the figure Go's benchmarks give as B/op).
struct CountingAllocator;

static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A growing realloc allocates the difference (as Go counts a new buffer).
        ALLOCATED_BYTES.fetch_add(
            new_size.saturating_sub(layout.size()) as u64,
            Ordering::Relaxed,
        );
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING_ALLOCATOR: CountingAllocator = CountingAllocator;

/// Host bytes and allocations per run of `f`, averaged over `runs`.
fn allocated_per_run(runs: u64, mut f: impl FnMut()) -> (u64, u64) {
    let (bytes, count) = (
        ALLOCATED_BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    for _ in 0..runs {
        f();
    }
    (
        (ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes) / runs,
        (ALLOCATIONS.load(Ordering::Relaxed) - count) / runs,
    )
}

fn wasm(name: &str) -> PathBuf {
    let path = repo_path("build/functions").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run bash scripts/bench.sh",
        path.display()
    );
    path
}

fn no_cache() -> HostConfig {
    HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    }
}

fn call(function: &Function, input: &Bytes, args: &[&str]) -> Bytes {
    function
        .call_blocking(input.clone(), args)
        .expect("call succeeds")
        .stdout
}

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let photo_path = repo_path("testdata/coffee-1024x768.jpg");
    let photo = Bytes::from(std::fs::read(&photo_path).expect("read the photo"));
    let limits = grayscale::Limits::default();

    println!("### function-host benchmark\n");
    println!(
        "- command: `bash scripts/bench.sh` ({iterations} timed calls per figure, after 3 warm-up calls)"
    );
    println!("- machine: {}, {} cores", cpu_model(), cores());
    println!(
        "- input: `testdata/coffee-1024x768.jpg` ({} bytes)\n",
        photo.len()
    );

    // (a) native against wasm, whole function and per stage.
    let native_full = Sample::measure(iterations, || {
        grayscale::grayscale(&photo, &limits).expect("native grayscale");
    });
    let format = grayscale::detect_format(&photo).expect("format");
    let native_decode = Sample::measure(iterations, || {
        grayscale::decode_gray(&photo, format, &limits).expect("native decode");
    });
    let gray = grayscale::decode_gray(&photo, format, &limits).expect("native decode");
    let native_encode = Sample::measure(iterations, || {
        grayscale::encode_png(&gray).expect("native encode");
    });

    let host = FunctionHost::new(no_cache()).expect("host");
    let grayscale_wasm = host
        .load_file("grayscale", &wasm("grayscale"))
        .expect("load");
    let stages = host.load_file("stages", &wasm("stages")).expect("load");
    let noop = host.load_file("noop", &wasm("noop")).expect("load");

    // The wasm output must be the native output, byte for byte.
    let (native_png, _) = grayscale::grayscale(&photo, &limits).expect("native grayscale");
    assert_eq!(
        call(&grayscale_wasm, &photo, &[]),
        native_png,
        "wasm and native differ"
    );

    let wasm_full = Sample::measure(iterations, || {
        call(&grayscale_wasm, &photo, &[]);
    });
    let wasm_decode = Sample::measure(iterations, || {
        call(&stages, &photo, &["decode"]);
    });
    let wasm_decode_encode = Sample::measure(iterations, || {
        call(&stages, &photo, &["encode", "paeth", "fast"]);
    });
    let wasm_encode = wasm_decode_encode
        .median()
        .saturating_sub(wasm_decode.median());

    println!("#### (a) grayscale of a 1024x768 JPEG: native against wasm\n");
    println!("| what | median | p10 | p90 |");
    println!("|---|---|---|---|");
    println!("{}", native_full.row("native: whole function"));
    println!(
        "{}",
        wasm_full.row("wasm through function-host: whole call")
    );
    println!("{}", native_decode.row("native: JPEG decode to gray"));
    println!("{}", wasm_decode.row("wasm: JPEG decode to gray (call)"));
    println!("{}", native_encode.row("native: PNG encode"));
    println!(
        "| wasm: PNG encode and output (difference of calls) | {} | | |",
        fmt(wasm_encode)
    );
    println!();
    println!(
        "**wasm / native = {:.2}x** for the whole function (decode {:.2}x, encode {:.2}x).\n",
        ratio(wasm_full.median(), native_full.median()),
        ratio(wasm_decode.median(), native_decode.median()),
        ratio(wasm_encode, native_encode.median()),
    );

    // What was tried, each against the shipped configuration above.
    println!("#### What was tried (same run)\n");
    println!("| change | wasm whole call | wasm / native |");
    println!("|---|---|---|");
    println!(
        "| as shipped (Paeth filter, fast deflate, simd128, 4 MiB kept resident) | {} | {:.2}x |",
        fmt(wasm_full.median()),
        ratio(wasm_full.median(), native_full.median())
    );
    let variants: [(&str, HostConfig, PathBuf); 5] = [
        (
            "linear memory returned to the kernel after every call (keep resident 0)",
            HostConfig {
                keep_resident_bytes: 0,
                ..no_cache()
            },
            wasm("grayscale"),
        ),
        (
            "2 MiB of linear memory kept resident",
            HostConfig {
                keep_resident_bytes: 2 << 20,
                ..no_cache()
            },
            wasm("grayscale"),
        ),
        (
            "8 MiB of linear memory kept resident (the default until 2026-11-30)",
            HostConfig {
                keep_resident_bytes: 8 << 20,
                ..no_cache()
            },
            wasm("grayscale"),
        ),
        (
            "guest built without simd128",
            no_cache(),
            repo_path("build/bench/grayscale-nosimd.wasm"),
        ),
        (
            "guest optimised again by binaryen's `wasm-opt -O3`",
            no_cache(),
            repo_path("build/bench/grayscale-wasm-opt.wasm"),
        ),
    ];
    for (label, config, path) in variants {
        if !path.exists() {
            println!("| {label} | not built ({}) | |", path.display());
            continue;
        }
        let host = FunctionHost::new(config).expect("host");
        let function = host.load_file("grayscale", &path).expect("load");
        let sample = Sample::measure(iterations, || {
            call(&function, &photo, &[]);
        });
        println!(
            "| {label} | {} | {:.2}x |",
            fmt(sample.median()),
            ratio(sample.median(), native_full.median())
        );
    }
    println!();
    png_encoder_choices(&gray, &stages, &photo, iterations / 4 + 1);

    // (b) per-call overhead.
    let empty = Bytes::new();
    let overhead = Sample::measure(iterations.max(200), || {
        call(&noop, &empty, &[]);
    });
    println!("#### (b) per-call overhead (guest that does nothing)\n");
    println!("| what | median | p10 | p90 |");
    println!("|---|---|---|---|");
    println!(
        "{}",
        overhead.row("store + WASI context + instantiate (pooling, InstancePre) + empty `_start`")
    );
    println!(
        "\nThat is {:.2}% of a wasm grayscale call.\n",
        100.0 * ratio(overhead.median(), wasm_full.median())
    );
    let input =
        Bytes::from_static(b"\"a 64-byte input, as a bindings.wasm call's JSON data could be\"");
    let (bytes, allocations) = allocated_per_run(1000, || {
        call(&noop, &input, &[]);
    });
    println!(
        "Host memory allocated per call of that guest (64-byte input; 1000 calls, \
         counted by this benchmark's allocator): **{:.1} KB** in {allocations} allocations. \
         The guest's linear memory is not allocated per call: each call gets a \
         slot of the pooling allocator, reused and reset.\n",
        bytes as f64 / 1000.0
    );

    // (c) cold start: everything a fresh process does before the first answer.
    let runs = 5;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = || HostConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..HostConfig::default()
        };
        for times in [&mut cold, &mut warm] {
            let start = Instant::now();
            let host = FunctionHost::new(config()).expect("host");
            let function = host
                .load_file("grayscale", &wasm("grayscale"))
                .expect("load");
            call(&function, &photo, &[]);
            times.push(start.elapsed());
        }
    }
    let cold = Sample {
        times: sorted(cold),
    };
    let warm = Sample {
        times: sorted(warm),
    };
    println!("#### (c) cold start: new host, load `grayscale`, first call ({runs} runs)\n");
    println!("| what | median | p10 | p90 |");
    println!("|---|---|---|---|");
    println!(
        "{}",
        cold.row("empty cache (compile with Cranelift, store artifact)")
    );
    println!(
        "{}",
        warm.row("warm on-disk cache (map precompiled artifact)")
    );
    println!(
        "\nThe warm cache starts **{:.1}x** faster than compiling.",
        ratio(cold.median(), warm.median())
    );
}

/// PNG filter and compression choices: native encode time, wasm encode time
/// (difference of a decode+encode call and a decode-only call) and size.
fn png_encoder_choices(
    gray: &image::DynamicImage,
    stages: &Function,
    photo: &Bytes,
    iterations: usize,
) {
    use grayscale::{CompressionType as C, FilterType as F};
    println!("PNG encode of the 1024x768 gray image ({iterations} calls each):\n");
    println!("| filter, compression | native | wasm | wasm / native | PNG bytes |");
    println!("|---|---|---|---|---|");
    let decode_only = Sample::measure(iterations, || {
        call(stages, photo, &["decode"]);
    });
    let choices = [
        (F::NoFilter, "none", C::Fast, "fast"),
        (F::Sub, "sub", C::Fast, "fast"),
        (F::Up, "up", C::Fast, "fast"),
        (F::Avg, "avg", C::Fast, "fast"),
        (F::Paeth, "paeth", C::Fast, "fast"),
        (F::Adaptive, "adaptive", C::Fast, "fast"),
        (F::Paeth, "paeth", C::Default, "default"),
        (F::Adaptive, "adaptive", C::Default, "default"),
    ];
    for (filter, filter_name, compression, compression_name) in choices {
        let native = Sample::measure(iterations, || {
            grayscale::encode_png_with(gray, compression, filter).expect("encode");
        });
        let size = grayscale::encode_png_with(gray, compression, filter)
            .expect("encode")
            .len();
        let with_encode = Sample::measure(iterations, || {
            call(stages, photo, &["encode", filter_name, compression_name]);
        });
        let wasm = with_encode.median().saturating_sub(decode_only.median());
        println!(
            "| {filter_name}, {compression_name} | {} | {} | {:.2}x | {size} |",
            fmt(native.median()),
            fmt(wasm),
            ratio(wasm, native.median())
        );
    }
    println!();
}

fn sorted(mut times: Vec<Duration>) -> Vec<Duration> {
    times.sort();
    times
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
