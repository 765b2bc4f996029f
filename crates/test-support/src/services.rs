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
        let args = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .into_iter()
            .chain(["--save", "", "--appendonly", "no"])
            .map(String::from)
            .collect::<Vec<_>>();
        run_until_listening("redis-server", &args, port).map(|child| RedisServer { child, port })
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

/// A broker of the test's own (`nats-server -js`, `mosquitto`), on a free
/// loopback port with its data in a temporary folder, killed when dropped,
/// so that no test sees another's events.
pub struct BrokerServer {
    child: Child,
    port: u16,
    /// How it was started, to start it again.
    program: String,
    args: Vec<String>,
    _data: tempfile::TempDir,
}

impl BrokerServer {
    /// NATS with JetStream.
    pub fn nats() -> BrokerServer {
        BrokerServer::start("nats-server", |port, dir| {
            vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-js".into(),
                "-sd".into(),
                dir.display().to_string(),
            ]
        })
    }

    /// Mosquitto (MQTT 3.1.1).
    pub fn mosquitto() -> BrokerServer {
        BrokerServer::start("mosquitto", |port, dir| {
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
            )
            .expect("write mosquitto.conf");
            vec!["-c".into(), config.display().to_string()]
        })
    }

    fn start(program: &str, args: impl Fn(u16, &std::path::Path) -> Vec<String>) -> BrokerServer {
        for _ in 0..5 {
            let data = tempfile::tempdir().expect("a temporary folder");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let args = args(port, data.path());
            let Some(child) = run_until_listening(program, &args, port) else {
                continue;
            };
            return BrokerServer {
                child,
                port,
                program: program.to_string(),
                args,
                _data: data,
            };
        }
        panic!("{program} did not start on any of 5 free ports");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it and waits for it to exit: the broker is down.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on its port, with its data folder (after
    /// [`BrokerServer::kill`]); panics if it does not come up.
    pub fn restart(&mut self) {
        self.child = run_until_listening(&self.program, &self.args, self.port)
            .unwrap_or_else(|| panic!("{} did not restart on port {}", self.program, self.port));
    }
}

/// Starts `program` and waits until it accepts connections on `port`;
/// `None` if it exited instead (the port was taken meanwhile).
fn run_until_listening(program: &str, args: &[String], port: u16) -> Option<Child> {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is installed (scripts/test.sh installs it): {e}"));
    let mut exited = false;
    wait_until_blocking(
        &format!("{program} accepts connections"),
        Duration::from_secs(10),
        || {
            exited = child.try_wait().ok().flatten().is_some();
            exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
    (!exited).then_some(child)
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A RabbitMQ virtual host of the test's own on the machine's RabbitMQ
/// (127.0.0.1:5672, guest/guest), deleted when dropped.
pub struct RabbitVhost {
    name: String,
}

impl RabbitVhost {
    /// Creates one and lets `guest` use it.
    pub fn create() -> RabbitVhost {
        require_service("RabbitMQ", "127.0.0.1:5672");
        let name = format!(
            "dapr-wasm-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let vhost = RabbitVhost { name };
        add_vhost(&vhost.name);
        vhost
    }

    /// The AMQP URL of the vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Deletes the vhost with everything in it: RabbitMQ closes its
    /// connections and refuses new ones, as a broker that is down would.
    pub async fn take_down(&self) {
        let name = self.name.clone();
        off_runtime(move || rabbitmqctl(&["delete_vhost", &name])).await;
    }

    /// Creates the vhost again, empty, after [`RabbitVhost::take_down`].
    pub async fn bring_back(&self) {
        let name = self.name.clone();
        off_runtime(move || add_vhost(&name)).await;
    }

    /// Has RabbitMQ close every connection to the vhost, as an operator
    /// or a broker restart does.
    pub async fn close_connections(&self) {
        let name = self.name.clone();
        off_runtime(move || {
            rabbitmqctl(&["close_all_connections", "-p", &name, "closed by a test"]);
        })
        .await;
    }

    /// How many consumers `queue` has (0 when it does not exist).
    pub async fn consumers(&self, queue: &str) -> u32 {
        let (name, queue) = (self.name.clone(), queue.to_string());
        let listing = off_runtime(move || {
            let output = Command::new("rabbitmqctl")
                .args(["list_queues", "-p", &name, "--quiet", "--no-table-headers"])
                .args(["name", "consumers"])
                .stderr(Stdio::null())
                .output()
                .expect("rabbitmqctl is installed with RabbitMQ");
            assert!(output.status.success(), "rabbitmqctl list_queues failed");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .await;
        listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| *name == queue)
            .and_then(|(_, consumers)| consumers.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Runs `work` (a `rabbitmqctl` command, which takes a second or two) on a
/// thread of its own, so that the sidecars on the test's runtime go on.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the rabbitmqctl command finished")
}

/// Creates vhost `name` and lets `guest` use it.
fn add_vhost(name: &str) {
    rabbitmqctl(&["add_vhost", name]);
    rabbitmqctl(&["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]);
}

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl is installed with RabbitMQ");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

impl Drop for RabbitVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
