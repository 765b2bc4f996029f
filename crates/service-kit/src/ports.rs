//! Picking a free loopback port for a process that binds it itself.
//!
//! Whatever binds in-process binds port 0 and keeps the listener. This is
//! for the other case: `dapr-wasm up` tells each app and sidecar its ports
//! before they start (`DAPR_METRICS_PORT`, ...), so it has to pick ports
//! that are free now and that the kernel will not hand out meanwhile.

/// A port free on 127.0.0.1 now, for a process that binds it itself (as
/// `dapr run` picks a sidecar's metrics port when the run file names none).
///
/// The port comes from below the kernel's ephemeral range, never from it: a
/// port the kernel hands out for `bind(0)` can be handed out again at once,
/// to another listener or to any outgoing connection, before the app binds
/// it (a CI run failed on exactly that: "cannot listen for metrics ...:
/// Address already in use"). Ports are taken in turn from a start that
/// differs per process, so runs started side by side seldom try the same
/// one, and each is checked free before it is given out.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let end = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| (FIRST + 1_000..=u32::from(u16::MAX)).contains(&low))
        .unwrap_or(32_768);
    let span = end - FIRST;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every port from {FIRST} to {end} is taken on 127.0.0.1"),
    ))
}
