//! Calls real WASI guests through the host: what a call receives, what it may
//! not reach, and how each way of failing is reported.
//!
//! The guests come from `functions/` (built by `scripts/test.sh` into
//! `build/functions/`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use function_host::cache::CacheOutcome;
use function_host::{CallError, CallLimits, Function, FunctionHost, HostConfig, LoadError};

use test_support::wasm_path;

fn config(limits: CallLimits) -> HostConfig {
    HostConfig {
        cache_dir: None,
        limits,
        ..HostConfig::default()
    }
}

fn load(host: &FunctionHost, name: &str) -> Function {
    host.load_file(name, &wasm_path(name)).expect("load guest")
}

#[tokio::test]
async fn stdin_reaches_stdout_and_argv_is_passed_without_environment() {
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    let echo = load(&host, "echo");
    let input = Bytes::from_static(b"hello \x00 binary \xff world");
    let out = echo
        .call(input.clone(), &["--flag", "value"])
        .await
        .unwrap();
    assert_eq!(out.stdout, input);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "args=echo --flag value env=0"
    );
}

#[tokio::test]
async fn guest_cannot_reach_files_environment_or_network() {
    // The test process has an environment (PATH, HOME, ...) and a working
    // directory full of files; none of it may show through.
    assert!(std::env::vars().next().is_some());
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    let snoop = load(&host, "snoop");
    let out = snoop.call(Bytes::new(), &[]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sealed");
}

#[tokio::test]
async fn endless_loop_times_out_and_the_host_keeps_serving() {
    let limits = CallLimits {
        deadline: Duration::from_millis(300),
        ..CallLimits::default()
    };
    let host = FunctionHost::new(config(limits)).unwrap();
    let spin = load(&host, "spin");
    let started = Instant::now();
    let err = spin.call(Bytes::new(), &[]).await.unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { deadline } if deadline == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let echo = load(&host, "echo");
    let out = echo.call(Bytes::from_static(b"next"), &[]).await.unwrap();
    assert_eq!(out.stdout, Bytes::from_static(b"next"));
}

#[tokio::test]
async fn memory_growth_past_the_limit_is_reported_as_memory_limit() {
    let limits = CallLimits {
        max_memory_bytes: 64 << 20,
        ..CallLimits::default()
    };
    let host = FunctionHost::new(config(limits)).unwrap();
    let hog = load(&host, "hog");
    let err = hog.call(Bytes::new(), &[]).await.unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit { limit } if limit == 64 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn trap_is_reported_with_its_reason() {
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    let trap = load(&host, "trap");
    let err = trap.call(Bytes::from_static(b"x"), &[]).await.unwrap_err();
    match err {
        CallError::Trap { message, .. } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn output_past_the_limit_is_refused() {
    let limits = CallLimits {
        max_output_bytes: 1 << 20,
        ..CallLimits::default()
    };
    let host = FunctionHost::new(config(limits)).unwrap();
    let flood = load(&host, "flood");
    let err = flood.call(Bytes::new(), &[]).await.unwrap_err();
    assert!(
        matches!(err, CallError::OutputTooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn output_exactly_at_the_limit_is_accepted() {
    let limits = CallLimits {
        max_output_bytes: 1000,
        ..CallLimits::default()
    };
    let host = FunctionHost::new(config(limits)).unwrap();
    let echo = load(&host, "echo");
    let out = echo.call(Bytes::from(vec![7u8; 1000]), &[]).await.unwrap();
    assert_eq!(out.stdout.len(), 1000);
    let err = echo
        .call(Bytes::from(vec![7u8; 1001]), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::OutputTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn input_past_the_limit_is_refused_before_running() {
    let limits = CallLimits {
        max_input_bytes: 10,
        ..CallLimits::default()
    };
    let host = FunctionHost::new(config(limits)).unwrap();
    let echo = load(&host, "echo");
    let err = echo
        .call(Bytes::from(vec![0u8; 11]), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::InputTooLarge {
                size: 11,
                limit: 10
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn non_zero_exit_is_bad_input_carrying_stderr() {
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    let grayscale = load(&host, "grayscale");
    let err = grayscale
        .call(Bytes::from_static(b"this is not an image"), &[])
        .await
        .unwrap_err();
    match err {
        CallError::BadInput { exit_code, stderr } => {
            assert_eq!(exit_code, 2);
            assert!(stderr.starts_with("unsupported image"), "{stderr}");
        }
        other => panic!("expected bad input, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_past_the_concurrency_limit_get_busy_after_the_queue_timeout() {
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        max_concurrent_calls: 1,
        queue_timeout: Duration::from_millis(100),
        limits: CallLimits {
            deadline: Duration::from_secs(2),
            ..CallLimits::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let spin = load(&host, "spin");
    let running = tokio::spawn({
        let spin = spin.clone();
        async move { spin.call(Bytes::new(), &[]).await }
    });
    test_support::wait_until(
        "the spinning call holds the slot",
        Duration::from_secs(5),
        || {
            let free = spin.free_slots();
            async move { free == 0 }
        },
    )
    .await;
    let echo = load(&host, "echo");
    let err = echo.call(Bytes::new(), &[]).await.unwrap_err();
    assert!(
        matches!(err, CallError::Busy { slots: 1, waited } if waited >= Duration::from_millis(100)),
        "{err:?}"
    );
    assert!(matches!(
        running.await.unwrap(),
        Err(CallError::Timeout { .. })
    ));
    // The slot is free again.
    echo.call(Bytes::new(), &[]).await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_all_succeed_in_isolated_instances() {
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    let echo = load(&host, "echo");
    let calls = (0..16u8).map(|i| {
        let echo = echo.clone();
        tokio::spawn(async move {
            let input = Bytes::from(vec![i; 1000 + usize::from(i)]);
            let out = echo.call(input.clone(), &[]).await.unwrap();
            assert_eq!(out.stdout, input);
        })
    });
    for call in calls {
        call.await.unwrap();
    }
}

#[test]
fn compiled_modules_are_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let with_cache = || HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    };
    let first = FunctionHost::new(with_cache()).unwrap();
    assert_eq!(load(&first, "echo").cache_outcome(), CacheOutcome::Miss);
    let artifacts: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(artifacts.len(), 1, "one artifact, no temporary files left");

    let second = FunctionHost::new(with_cache()).unwrap();
    let echo = load(&second, "echo");
    assert_eq!(echo.cache_outcome(), CacheOutcome::Hit);
    let out = echo
        .call_blocking(Bytes::from_static(b"cached"), &[] as &[&str])
        .unwrap();
    assert_eq!(out.stdout, Bytes::from_static(b"cached"));
}

#[test]
fn the_cache_key_covers_the_module_and_the_engine_configuration() {
    use function_host::cache::ModuleCache;
    let epochs = wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
    let no_epochs =
        wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(false)).unwrap();
    let echo = std::fs::read(wasm_path("echo")).unwrap();
    let spin = std::fs::read(wasm_path("spin")).unwrap();
    let a = ModuleCache::new("/cache", &epochs);
    let b = ModuleCache::new("/cache", &no_epochs);
    assert_eq!(
        a.artifact_path(&echo),
        ModuleCache::new("/cache", &epochs).artifact_path(&echo)
    );
    assert_ne!(a.artifact_path(&echo), a.artifact_path(&spin));
    assert_ne!(a.artifact_path(&echo), b.artifact_path(&echo));
}

#[test]
fn a_corrupt_cache_artifact_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let host = FunctionHost::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostConfig::default()
    })
    .unwrap();
    load(&host, "echo");
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&artifact, b"garbage").unwrap();
    let echo = load(&host, "echo");
    assert_eq!(echo.cache_outcome(), CacheOutcome::Miss);
    echo.call_blocking(Bytes::new(), &[] as &[&str]).unwrap();
}

#[test]
fn modules_that_are_not_wasi_commands_are_rejected_at_load() {
    let host = FunctionHost::new(config(CallLimits::default())).unwrap();
    // The smallest valid module: no `_start`.
    let empty_module = b"\0asm\x01\0\0\0";
    let err = host.load_bytes("empty", empty_module).err().unwrap();
    assert!(
        matches!(&err, LoadError::Invalid { reason, .. } if reason.contains("_start")),
        "{err}"
    );
    let err = host.load_bytes("junk", b"not wasm at all").err().unwrap();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    let missing = host.load_file("missing", "/nonexistent/missing.wasm".as_ref());
    assert!(matches!(missing, Err(LoadError::Read { .. })));
}

/// Guests that trap, loop and exhaust memory, all at once and over and
/// over, beside well-behaved calls: every well-behaved call gets its own
/// input back, and every bad one its own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traps_loops_and_memory_exhaustion_never_affect_other_calls() {
    let limits = CallLimits {
        deadline: Duration::from_millis(500),
        max_memory_bytes: 64 << 20,
        ..CallLimits::default()
    };
    let host = FunctionHost::new(HostConfig {
        max_concurrent_calls: 8,
        ..config(limits)
    })
    .unwrap();
    let [echo, spin, hog, trap] = ["echo", "spin", "hog", "trap"].map(|name| load(&host, name));
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..6u8 {
        for (function, kind) in [(&spin, "spin"), (&hog, "hog"), (&trap, "trap")] {
            let function = function.clone();
            calls.spawn(async move { (kind, function.call(Bytes::from_static(b"x"), &[]).await) });
        }
        for i in 0..10u8 {
            let echo = echo.clone();
            calls.spawn(async move {
                let input = Bytes::from(vec![round.wrapping_mul(31) ^ i; 4096 + usize::from(i)]);
                let result = echo.call(input.clone(), &[]).await;
                match result {
                    Ok(out) if out.stdout == input => ("echo", Ok(out)),
                    Ok(_) => panic!("an echo call got someone else's output"),
                    Err(err) => ("echo", Err(err)),
                }
            });
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(done) = calls.join_next().await {
        let (kind, result) = done.unwrap();
        match (kind, &result) {
            ("echo", Ok(_))
            | ("spin", Err(CallError::Timeout { .. }))
            | ("hog", Err(CallError::MemoryLimit { .. }))
            | ("trap", Err(CallError::Trap { .. })) => {}
            _ => panic!("{kind}: {result:?}"),
        }
        *seen.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [("echo", 60), ("hog", 6), ("spin", 6), ("trap", 6)]
    );
}
