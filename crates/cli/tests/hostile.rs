//! The hostile-input suite: the whole demo under `dapr-wasm up`, fed
//! thousands of generated bad inputs (see `support/hostile.rs`) through
//! web-port into both APIs and straight to each image app, plus bodies over
//! the limit, a 50 MB body and slowly trickled requests.
//!
//! Every answer must be a 2xx carrying a valid image (grayscale) or
//! classification (classify), or a 4xx/5xx carrying Dapr's JSON error
//! `{errorCode, message}`; no process may exit; each process's peak memory
//! must stay under the bounds the README states, and return near its
//! baseline afterwards.
//!
//! `HOSTILE_INPUTS` sets how many inputs (default 10,000) and
//! `HOSTILE_SEED` the generator's seed; `scripts/hostile.sh` runs it with a
//! release build and prints the tallies.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;
use support::hostile::{Input, generate};
use support::{DemoSpec, Up, memory_kib};

/// Peak resident memory each process may reach, in MiB: the bounds the
/// README's "Limits and guarantees" states.
const PEAK_MIB_WEB_PORT: u64 = 256;
const PEAK_MIB_SIDECAR: u64 = 128;
const PEAK_MIB_IMAGE_APP: u64 = 1536;
const PEAK_MIB_UP: u64 = 64;
/// How far above its baseline a process may stay once the suite is over
/// and it has been idle long enough to give freed memory back
/// (`service_kit::idle_trim`): the goal of issue 16.
const SETTLED_MIB_ABOVE_BASELINE: u64 = 16;
/// What an image app's instance slots keep: each up to
/// `HostConfig::keep_resident_bytes` (4 MiB) of the linear memory it
/// touched, warm for the next call, by configuration. The baseline's one
/// small photo warms less than that in one slot; the suite fills them all.
/// The goal holds them for the two slots of a 2-core machine; a slot beyond
/// those may add its own.
const KEEP_RESIDENT_MIB_PER_SLOT: u64 = 4;

const BODY_LIMIT: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Image,
    Classification,
}

#[derive(Clone, Debug)]
struct Target {
    name: &'static str,
    url: String,
    api: Option<&'static str>,
    expect: Expect,
}

fn targets(ports: &[u16; 9]) -> Vec<Target> {
    let web = format!("http://127.0.0.1:{}/api/hello", ports[0]);
    vec![
        Target {
            name: "web-port grayscale",
            url: web.clone(),
            api: Some("grayscale"),
            expect: Expect::Image,
        },
        Target {
            name: "web-port classify",
            url: web,
            api: Some("classify"),
            expect: Expect::Classification,
        },
        Target {
            name: "grayscale app",
            url: format!("http://127.0.0.1:{}/api/image", ports[2]),
            api: None,
            expect: Expect::Image,
        },
        Target {
            name: "classify app",
            url: format!("http://127.0.0.1:{}/api/image", ports[4]),
            api: None,
            expect: Expect::Classification,
        },
    ]
}

/// Checks one answer; `Ok` carries its tally key (`200` or the error code).
fn check(expect: Expect, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<String, String> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if (200..300).contains(&status) {
        match expect {
            Expect::Image => {
                if !content_type.starts_with("image/") {
                    return Err(format!("{status} with content type `{content_type}`"));
                }
                image::load_from_memory(body)
                    .map_err(|e| format!("{status} with an undecodable image: {e}"))?;
            }
            Expect::Classification => {
                let answer: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("{status} with invalid JSON: {e}"))?;
                let valid = answer["label"].is_string()
                    && answer["confidence"]
                        .as_f64()
                        .is_some_and(|c| (0.0..=1.0).contains(&c))
                    && answer["top5"].as_array().is_some_and(|t| t.len() == 5);
                if !valid {
                    return Err(format!("{status} with an incomplete answer: {answer}"));
                }
            }
        }
        return Ok(status.to_string());
    }
    if !(400..600).contains(&status) {
        return Err(format!("unexpected status {status}"));
    }
    if content_type != "application/json" {
        return Err(format!("{status} with content type `{content_type}`"));
    }
    let error: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{status} with a body that is not JSON: {e}"))?;
    let (Some(code), Some(message)) = (error["errorCode"].as_str(), error["message"].as_str())
    else {
        return Err(format!("{status} without errorCode and message: {error}"));
    };
    if message.is_empty() {
        return Err(format!("{status} {code} with an empty message"));
    }
    if code == "ERR_FUNCTION_TRAP" {
        // The caller got a clean 500, but the guest crashed on an input it
        // should have refused: a bug in the guest.
        return Err(format!("{status} {code}: {message}"));
    }
    if status == 503 && headers.get("retry-after").is_none() {
        return Err(format!("503 {code} without Retry-After"));
    }
    Ok(format!("{status} {code}"))
}

async fn send(client: &reqwest::Client, target: &Target, input: &Input) -> Result<String, String> {
    let mut request = client.post(&target.url).body(input.body.clone());
    if let Some(api) = target.api {
        request = request.header("api", api);
    }
    let mut headers = HeaderMap::new();
    for content_type in &input.content_types {
        headers.append(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let response = request
        .headers(headers)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status} with a broken body: {e}"))?;
    check(target.expect, status, &headers, &body)
}

/// Asserts that every target answers the photo `name` with a valid 200.
async fn assert_photo_served(
    client: &reqwest::Client,
    targets: &[Target],
    name: &str,
    media_type: &'static str,
) {
    let photo = Input {
        kind: "photo".into(),
        body: test_support::photo(name),
        content_types: vec![media_type],
    };
    for target in targets {
        assert_eq!(
            send(client, target, &photo).await,
            Ok("200".to_string()),
            "{}",
            target.name
        );
    }
}

/// Memory of every process: (name, pid, rss KiB, peak KiB).
fn memory(up: &Up) -> Vec<(String, u64, u64, u64)> {
    up.processes()
        .into_iter()
        .map(|(name, pid)| {
            let (rss, peak) = memory_kib(pid).unwrap_or_else(|| panic!("{name} ({pid}) is gone"));
            (name, pid, rss, peak)
        })
        .collect()
}

/// Every process's memory once it has stopped falling: polled until no
/// process's RSS has changed by more than 1 MiB for two seconds (the idle
/// trim comes a second after the last request), for 30 s at most.
async fn idle_memory(up: &Up) -> Vec<(String, u64, u64, u64)> {
    const POLL: Duration = Duration::from_millis(250);
    const STEADY_POLLS: usize = 8;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = memory(up);
    let mut steady = 0;
    while steady < STEADY_POLLS && Instant::now() < deadline {
        // A poll with a deadline, not a wait for luck.
        tokio::time::sleep(POLL).await;
        let now = memory(up);
        let moved = last
            .iter()
            .zip(&now)
            .any(|((_, _, before, _), (_, _, rss, _))| before.abs_diff(*rss) > 1024);
        steady = if moved { 0 } else { steady + 1 };
        last = now;
    }
    last
}

fn peak_bound_mib(name: &str) -> u64 {
    if name == "up" {
        PEAK_MIB_UP
    } else if name.ends_with("sidecar") {
        PEAK_MIB_SIDECAR
    } else if name == "web-port" {
        PEAK_MIB_WEB_PORT
    } else {
        PEAK_MIB_IMAGE_APP
    }
}

/// How far above its baseline `name` may stay once idle: the goal, and
/// for an image app the warm pages of each slot beyond two (one slot per
/// core, the default `--max-concurrent-calls`).
fn settled_bound_mib(name: &str) -> u64 {
    if name.starts_with("image-api") && !name.ends_with("sidecar") {
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
        SETTLED_MIB_ABOVE_BASELINE + KEEP_RESIDENT_MIB_PER_SLOT * slots.saturating_sub(2)
    } else {
        SETTLED_MIB_ABOVE_BASELINE
    }
}

/// A raw HTTP/1.1 exchange: sends `head`, then `body` from another thread
/// (the server may answer before reading it all), and reads the answer.
fn raw_exchange(
    port: u16,
    head: String,
    body: Vec<u8>,
    chunk_delay: Option<Duration>,
) -> Result<(u16, HeaderMap, Vec<u8>), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || match chunk_delay {
        None => {
            let _ = writer.write_all(&body);
        }
        Some(delay) => {
            for byte in body {
                if writer.write_all(&[byte]).is_err() {
                    break;
                }
                // Deliberately slow: this client trickles its body.
                std::thread::sleep(delay);
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed without an answer ({} bytes)", answer.len())),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1).filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            headers.append(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or("no content-length")?;
    let mut body = answer[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("body cut: {e}")),
        }
    }
    Ok((status, headers, body))
}

fn head_for(target: &Target, framing: &str) -> (u16, String) {
    let url = target.url.trim_start_matches("http://127.0.0.1:");
    let (port, path) = url.split_once('/').unwrap();
    let api = target
        .api
        .map(|a| format!("api: {a}\r\n"))
        .unwrap_or_default();
    (
        port.parse().unwrap(),
        format!(
            "POST /{path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{api}content-type: image/jpeg\r\n{framing}\r\n"
        ),
    )
}

/// Bodies 1 byte over the limit, of 50 MB, and of 50 MB without a declared
/// length: each refused with 413, to every target.
fn oversized_bodies(targets: &[Target]) -> Vec<String> {
    let mut failures = Vec::new();
    for target in targets {
        for (what, len, chunked) in [
            ("limit + 1 byte", BODY_LIMIT + 1, false),
            ("50 MB", 50_000_000, false),
            ("50 MB chunked", 50_000_000, true),
        ] {
            let body = vec![0xffu8; len];
            let (port, head) = if chunked {
                head_for(target, "transfer-encoding: chunked\r\n")
            } else {
                head_for(target, &format!("content-length: {len}\r\n"))
            };
            let body = if chunked {
                let mut framed = Vec::with_capacity(len + 1024);
                for chunk in body.chunks(1 << 20) {
                    framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                }
                framed.extend_from_slice(b"0\r\n\r\n");
                framed
            } else {
                body
            };
            match raw_exchange(port, head, body, None) {
                Ok((413, headers, body)) => {
                    if let Err(e) = check(target.expect, 413, &headers, &body) {
                        failures.push(format!("{}, {what}: {e}", target.name));
                    }
                }
                Ok((status, _, body)) => failures.push(format!(
                    "{}, {what}: {status} {}",
                    target.name,
                    String::from_utf8_lossy(&body)
                )),
                Err(e) => failures.push(format!("{}, {what}: {e}", target.name)),
            }
        }
    }
    failures
}

fn print_memory(label: &str, memory: &[(String, u64, u64, u64)]) {
    eprintln!("memory {label}:");
    for (name, pid, rss, peak) in memory {
        eprintln!(
            "  {name:<28} pid {pid:<8} rss {:>6} MiB  peak {:>6} MiB",
            rss / 1024,
            peak / 1024
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_inputs_get_valid_answers_or_json_errors_and_nothing_crashes() {
    let count: usize = std::env::var("HOSTILE_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_124);
    let generated = Instant::now();
    let inputs = Arc::new(generate(count, seed));
    eprintln!(
        "generated {} inputs (seed {seed}) in {:?}",
        inputs.len(),
        generated.elapsed()
    );

    let (up, ports, _dir) = Up::start_demo_with(&DemoSpec::default());
    up.wait_ready();
    let targets = targets(&ports);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    // Warm every path once, then take the baseline once idle: what the
    // start (compiling the functions, loading the models) and the warm-up
    // freed goes back to the kernel a second after the last request
    // (service_kit::idle_trim), as it will after the suite.
    assert_photo_served(&client, &targets, "cat.jpg", "image/jpeg").await;
    let baseline = idle_memory(&up).await;
    print_memory("at baseline", &baseline);

    // Every input to every target, four at a time.
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..inputs.len() {
        for target in targets.clone() {
            let permit = semaphore.clone().acquire_owned().await.unwrap();
            let (client, inputs) = (client.clone(), inputs.clone());
            tasks.spawn(async move {
                let input = &inputs[index];
                let outcome = send(&client, &target, input).await;
                drop(permit);
                (target.name, index, outcome)
            });
        }
    }
    let mut tallies: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    // Inputs that failed are kept for replay.
    let keep = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| test_support::repo_path("target"))
        .join("hostile-inputs");
    let mut kept = std::collections::BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (target, index, outcome) = done.unwrap();
        if outcome.is_err() && kept.insert(index) {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::write(keep.join(format!("input-{index}")), &inputs[index].body).unwrap();
        }
        match outcome {
            Ok(key) => *tallies.entry((target, key)).or_default() += 1,
            Err(e) => failures.push(format!(
                "{target}, input {index} ({}): {e}",
                inputs[index].kind
            )),
        }
    }
    if !kept.is_empty() {
        eprintln!(
            "kept {} inputs for replay in {}",
            kept.len(),
            keep.display()
        );
    }
    eprintln!(
        "{} inputs x {} targets in {:.1} s",
        inputs.len(),
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    for ((target, key), n) in &tallies {
        eprintln!("  {target:<20} {key:<40} {n}");
    }
    failures.extend(oversized_bodies(&targets));

    // Nothing exited, and memory stayed bounded.
    let after = memory(&up);
    print_memory("after the suite", &after);
    let exits = up.exits();
    assert!(exits.is_empty(), "processes exited: {exits:?}");
    for ((name, pid, _, _), (after_name, after_pid, _, peak)) in baseline.iter().zip(&after) {
        assert_eq!(
            (name, pid),
            (after_name, after_pid),
            "a process was replaced"
        );
        let bound = peak_bound_mib(name);
        if peak / 1024 > bound {
            failures.push(format!(
                "{name} peaked at {} MiB, over its bound of {bound} MiB",
                peak / 1024
            ));
        }
    }
    // Back near the baseline once idle: polled, since freed memory goes
    // back to the kernel a second after the last request
    // (service_kit::idle_trim); what is still high after 30 s fails.
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let settled = memory(&up);
        let high = baseline
            .iter()
            .zip(&settled)
            .any(|((name, _, base, _), (_, _, rss, _))| {
                rss.saturating_sub(*base) / 1024 > settled_bound_mib(name)
            });
        if !high || std::time::Instant::now() > settle_deadline {
            break settled;
        }
        // A poll with a deadline, not a wait for luck.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    print_memory("settled", &settled);
    for ((name, _, base, _), (_, _, rss, _)) in baseline.iter().zip(&settled) {
        if rss.saturating_sub(*base) / 1024 > settled_bound_mib(name) {
            failures.push(format!(
                "{name} stayed at {} MiB after the suite (baseline {} MiB, bound +{} MiB)",
                rss / 1024,
                base / 1024,
                settled_bound_mib(name)
            ));
        }
    }
    // And the services still answer.
    assert_photo_served(&client, &targets, "coffee.png", "image/png").await;
    assert!(
        failures.is_empty(),
        "{} failures, the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Opens a connection that sends a request's headers one line a second and
/// never finishes them; returns how it ended within `within`.
fn trickle_headers(port: u16, within: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
        .write_all(b"POST /api/image HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1024];
    let mut line = 0;
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            // Closed (or answered and closed): the server gave up on us.
            Ok(_) => return Ok(started.elapsed()),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Ok(started.elapsed()),
        }
        if started.elapsed().as_millis() / 1000 > line {
            line += 1;
            if stream
                .write_all(format!("x-slow-{line}: 1\r\n").as_bytes())
                .is_err()
            {
                return Ok(started.elapsed());
            }
        }
    }
    Err(format!("still open after {within:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let two_seconds = || vec!["--body-timeout".to_string(), "2s".to_string()];
    let spec = DemoSpec {
        app_args: [two_seconds(), two_seconds(), two_seconds()],
        ..DemoSpec::default()
    };
    let (up, ports, _dir) = Up::start_demo_with(&spec);
    up.wait_ready();
    let targets = targets(&ports);

    // 40 connections per listener (the three apps and their sidecars)
    // trickle headers forever.
    let mut slow = Vec::new();
    for port in ports {
        for _ in 0..40 {
            slow.push(std::thread::spawn(move || {
                trickle_headers(port, Duration::from_secs(60))
            }));
        }
    }
    // Meanwhile a body trickled a byte every 200 ms gets 408 after the
    // 2 s body timeout, and whole requests are served as usual.
    let trickled: Vec<_> = [&targets[0], &targets[2], &targets[3]]
        .into_iter()
        .map(|target| {
            let target = target.clone();
            std::thread::spawn(move || {
                let (port, head) = head_for(&target, "content-length: 40\r\n");
                (
                    target.name,
                    raw_exchange(port, head, vec![0xff; 40], Some(Duration::from_millis(200))),
                )
            })
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_photo_served(&client, &targets, "cat.jpg", "image/jpeg").await;
    for handle in trickled {
        let (name, answer) = handle.join().unwrap();
        let (status, headers, body) = answer.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(status, 408, "{name}: {}", String::from_utf8_lossy(&body));
        let key = check(Expect::Image, status, &headers, &body).unwrap();
        assert_eq!(key, "408 ERR_BODY_TIMEOUT", "{name}");
    }
    // Every header trickler was cut off (by the 10 s header timeout).
    for handle in slow {
        let ended = handle.join().unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }
    let exits = up.exits();
    assert!(exits.is_empty(), "processes exited: {exits:?}");
}
