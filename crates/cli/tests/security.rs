//! Security properties of the whole demo under `dapr-wasm up`: every
//! listening socket of every process is on loopback, and request heads are
//! bounded on every listener. (The sidecar's API token is tested in
//! crates/sidecar/tests/sidecar/invoke.rs, static files in
//! crates/web-port/tests/web_port.rs, the guest sandbox in
//! crates/function-host/tests/calls.rs.)

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Up;

/// The socket inodes `pid` holds.
fn socket_inodes(pid: u64) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect()
}

/// The local addresses (hex, as in /proc/net/tcp*) of listening TCP sockets
/// with one of `inodes`.
fn listening_addresses(inodes: &HashSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, ..., st (0A = LISTEN), ..., inode (field 9).
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                found.push(fields[1].to_string());
            }
        }
    }
    found
}

fn is_loopback(hex_address: &str) -> bool {
    let (ip, _port) = hex_address.split_once(':').unwrap();
    // 127.0.0.1 little-endian, or ::1.
    ip == "0100007F" || ip == "00000000000000000000000001000000"
}

/// Sends `head` and returns the status line of the answer (or how the
/// connection ended).
fn status_line(port: u16, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer and close before reading everything.
    let _ = stream.write_all(head);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines()
        .next()
        .unwrap_or("closed without an answer")
        .to_string()
}

#[test]
fn every_listener_is_on_loopback_and_request_heads_are_bounded() {
    let (up, ports, _dir) = Up::start_demo();
    up.wait_ready();

    // Every process of the demo, every listening socket: loopback only.
    let processes = up.processes();
    assert_eq!(processes.len(), 7, "{processes:?}");
    let mut listeners = 0;
    for (name, pid) in &processes {
        let addresses = listening_addresses(&socket_inodes(*pid));
        for address in &addresses {
            assert!(is_loopback(address), "{name} listens on {address}");
        }
        listeners += addresses.len();
    }
    assert!(listeners >= 9, "found only {listeners} listening sockets");

    // The HTTP/1.1 listeners (apps and the sidecars' HTTP APIs; the gRPC
    // APIs' bounds are tested in crates/sidecar/tests/sidecar/grpc.rs).
    for port in &ports[..6] {
        let port = *port;
        // 100 headers and 30 KiB of head are fine; 101 headers, or 65 KiB
        // of head, get 431.
        let mut hundred = b"GET /nothing-here HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..99 {
            hundred.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(305)).as_bytes());
        }
        hundred.extend_from_slice(b"\r\n");
        assert!(hundred.len() > 30 << 10 && hundred.len() < 32 << 10);
        let answer = status_line(port, &hundred);
        assert!(
            answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 405"),
            "port {port}, 100 headers: {answer}"
        );
        let mut many = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let answer = status_line(port, &many);
        assert!(
            answer.contains(" 431 "),
            "port {port}, 101 headers: {answer}"
        );
        let big = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(65 << 10)
        );
        let answer = status_line(port, big.as_bytes());
        assert!(
            answer.contains(" 431 "),
            "port {port}, 65 KiB header: {answer}"
        );
    }
}
