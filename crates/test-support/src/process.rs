//! Service binaries started the way a user starts them, on port 0: the
//! test reads the address from the "listening on" line the service logs,
//! as wasmtime's CLI tests do, so no port is guessed.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Spawns `command` (which must log `listening on http://ADDRESS` at info
/// level to stderr) and returns the child and the address it bound. Its
/// stderr keeps being echoed to the test's.
pub fn spawn_listening(command: &mut Command) -> (Child, SocketAddr) {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let address = line
                .split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|address| address.trim_end_matches('/').parse().ok());
            if let Some(address) = address {
                let _ = tx.send(address);
            }
        }
    });
    let address: SocketAddr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the service logs `listening on http://ADDRESS` within 60 s");
    (child, address)
}

/// Runs a script of checks written with an official SDK (`command`, which
/// prints one line per check and closes with `N passed, M failed`), off
/// the runtime, echoing its output; fails the test unless it succeeds
/// with `passed` checks passed and none failed.
pub async fn run_sdk_checks(mut command: Command, what: &str, passed: usize) {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the script's thread")
        .unwrap_or_else(|e| panic!("{what}: cannot run the script: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{what}:\n{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed:\n{stdout}");
    assert!(
        stdout.contains(&format!("{passed} passed, 0 failed")),
        "{what}: {stdout}"
    );
}
