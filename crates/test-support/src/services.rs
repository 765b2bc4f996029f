//! Real servers for the tests that talk to one.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_until_blocking;

/// Asserts that `name` (Redis, PostgreSQL, …) accepts connections at
/// `address`, with the fix in the message when it does not. The tests that
/// call it are `#[ignore = "needs …"]`: once asked to run, they fail
/// rather than skip.
pub fn require_service(name: &str, address: &str) {
    let address: SocketAddr = address.parse().expect("a socket address");
    let reachable = TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok();
    assert!(
        reachable,
        "{name} is not reachable at {address}: `bash scripts/test.sh` installs and starts it"
    );
}

/// The machine's services the ignored suites need, checked only under `CI`
/// (set by CI): a plain `cargo test` there fails when one is missing
/// instead of reporting those suites as merely ignored. Locally it checks
/// nothing: the suites stay visibly ignored.
pub fn require_services_under_ci(services: &[(&str, &str)]) {
    if std::env::var_os("CI").is_some() {
        for (name, address) in services {
            require_service(name, address);
        }
    }
}

/// A `redis-server` of the test's own (so stopping or freezing it disturbs
/// nothing else), on a free loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it accepts connections.
    /// Redis binds its port itself, so a port found free can be taken
    /// before it starts: then it tries another.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = RedisServer::try_start(port) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts one on `port` again (after [`RedisServer::kill`]); panics if
    /// it does not come up.
    pub fn restart(&mut self) {
        let port = self.port;
        let server = RedisServer::try_start(port)
            .unwrap_or_else(|| panic!("redis-server did not restart on port {port}"));
        *self = server;
    }

    fn try_start(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let mut server = RedisServer { child, port };
        let mut exited = false;
        wait_until_blocking(
            "redis-server accepts connections",
            Duration::from_secs(10),
            || {
                exited = server.child.try_wait().ok().flatten().is_some();
                exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
        );
        (!exited).then_some(server)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its pid, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
