//! What the tests that run the whole demo as real processes share: a run
//! file on free ports, `dapr-wasm up` as a child with its output readable
//! line by line, the run records (pids), and the processes' memory.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use test_support::repo_path;

pub mod hostile;

/// The app ids of the demo, in run-file order.
pub const APP_IDS: [&str; 3] = ["web-port", "image-api-grayscale", "image-api-classify"];

/// A port free right now, from below the kernel's ephemeral range, as `up`
/// picks the ports a run file leaves open ([`service_kit::ports::free_port`]).
/// Only for run files: `dapr-wasm up` starts other processes that bind the
/// ports the file names, so no listener can be handed over; `up` names a
/// port taken in between (`check_ports_free`). Everything in-process binds
/// port 0 and keeps the listener instead.
pub fn free_port() -> u16 {
    service_kit::ports::free_port().expect("a free port on 127.0.0.1")
}

pub fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Resident and peak resident memory of `pid`, in KiB (VmRSS, VmHWM).
pub fn memory_kib(pid: u64) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// How the demo is set up: its state store component and extra flags for
/// each app (web-port, grayscale, classify).
#[derive(Default)]
pub struct DemoSpec {
    /// The `spec:` of the `statestore` component, or `None` for SQLite in
    /// the run file's folder.
    pub state_store_spec: Option<String>,
    /// Extra arguments per app.
    pub app_args: [Vec<String>; 3],
    /// The events app as a fourth app, with the `pubsub` component.
    pub events: Option<EventsApp>,
    /// An OTLP/HTTP collector every span goes to (a Dapr `Configuration`
    /// with `samplingRate: "1"`, as `configFilePath`).
    pub tracing_to: Option<std::net::SocketAddr>,
}

/// The events app in a demo run: its app, sidecar HTTP and gRPC ports, and
/// the `spec:` of the `pubsub` component web-port publishes to. Its
/// database URL comes from a local secret store, as in deploy/.
pub struct EventsApp {
    pub ports: [u16; 3],
    pub pubsub_spec: String,
}

/// Writes a run file like deploy/dapr.yaml, on `ports`: the app and its
/// sidecar's HTTP port for each app in turn (0-5), then the sidecars' gRPC
/// ports (6-8).
pub fn write_run_file(dir: &Path, ports: &[u16; 9], spec: &DemoSpec) -> PathBuf {
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap();
    let store = spec.state_store_spec.clone().unwrap_or_else(|| {
        format!(
            "  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n",
            dir.join("state.db").display()
        )
    });
    std::fs::write(
        components.join("statestore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n{store}"
        ),
    )
    .unwrap();
    if let Some(events) = &spec.events {
        std::fs::write(
            components.join("pubsub.yaml"),
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n{}scopes:\n- web-port\n- events\n",
                events.pubsub_spec
            ),
        )
        .unwrap();
        let secrets = dir.join("secrets.json");
        let database = format!("sqlite:{}", dir.join("events.db").display());
        std::fs::write(
            &secrets,
            serde_json::json!({ "events-db": database }).to_string(),
        )
        .unwrap();
        std::fs::write(
            components.join("secretstore.yaml"),
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: localsecrets\nspec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n  - name: secretsFile\n    value: \"{}\"\n",
                secrets.display()
            ),
        )
        .unwrap();
    }
    let root = repo_path("").canonicalize().unwrap();
    let commands = [
        vec!["dapr-wasm", "web-port"],
        vec![
            "dapr-wasm",
            "image-api",
            "--function",
            "grayscale=build/functions/grayscale.wasm",
        ],
        vec![
            "dapr-wasm",
            "image-api",
            "--function",
            "classify=build/functions/classify.wasm",
        ],
    ];
    let mut text = "version: 1\ncommon:\n  resourcesPath: ./components\n".to_string();
    if let Some(collector) = spec.tracing_to {
        std::fs::write(
            dir.join("config.yaml"),
            format!(
                "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"1\"\n    otel:\n      endpointAddress: \"{collector}\"\n      isSecure: false\n      protocol: http\n"
            ),
        )
        .unwrap();
        text += "  configFilePath: ./config.yaml\n";
    }
    text += "  env:\n    DAPR_WASM_LOG: warn\napps:\n";
    for (i, id) in APP_IDS.iter().enumerate() {
        let command: Vec<String> = commands[i]
            .iter()
            .map(|s| s.to_string())
            .chain(spec.app_args[i].iter().cloned())
            .collect();
        text += &format!(
            "- appID: {id}\n  appDirPath: {root}\n  appPort: {}\n  daprHTTPPort: {}\n  daprGRPCPort: {}\n  command: {}\n",
            ports[2 * i],
            ports[2 * i + 1],
            ports[6 + i],
            serde_json::to_string(&command).unwrap(),
            root = root.display()
        );
    }
    if let Some(events) = &spec.events {
        text += &format!(
            "- appID: events\n  appDirPath: {root}\n  appPort: {}\n  daprHTTPPort: {}\n  daprGRPCPort: {}\n  command: [\"dapr-wasm\", \"events\", \"--database-secret\", \"localsecrets/events-db\"]\n",
            events.ports[0],
            events.ports[1],
            events.ports[2],
            root = root.display()
        );
    }
    let run_file = dir.join("dapr.yaml");
    std::fs::write(&run_file, text).unwrap();
    run_file
}

/// `dapr-wasm up` running as a child.
pub struct Up {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub data: tempfile::TempDir,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    pub fn start(run_file: &Path, data: tempfile::TempDir) -> Up {
        Up::start_with(run_file, data, &[])
    }

    /// [`Up::start`] with more flags for `up`.
    pub fn start_with(run_file: &Path, data: tempfile::TempDir, flags: &[&str]) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dapr-wasm"))
            .args(["up", "-f"])
            .arg(run_file)
            .args(flags)
            .env("DAPR_WASM_DATA_DIR", data.path())
            // Spans leave each process within 50 ms, not OpenTelemetry's
            // 5 s, so a test waits for them less.
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            // The models `scripts/test.sh` fetched, not a fresh download.
            .env("DAPR_WASM_MODELS_DIR", local_dirs::models_dir().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up { child, lines, data }
    }

    /// The demo on free ports, with its run file in a temporary folder.
    pub fn start_demo() -> (Up, [u16; 9], tempfile::TempDir) {
        Up::start_demo_with(&DemoSpec::default())
    }

    /// The demo set up by `spec`, on free ports.
    pub fn start_demo_with(spec: &DemoSpec) -> (Up, [u16; 9], tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ports = [(); 9].map(|()| free_port());
        let run_file = write_run_file(dir.path(), &ports, spec);
        (
            Up::start(&run_file, tempfile::tempdir().unwrap()),
            ports,
            dir,
        )
    }

    /// Waits for a line of `up`'s output containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(180)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("`{needle}` never appeared: {e}"),
            }
        }
    }

    /// Waits until everything answers; returns web-port's URL.
    pub fn wait_ready(&self) -> String {
        let line = self.wait_for("up: open http://");
        line.trim_start_matches("up: open ")
            .trim_end_matches('/')
            .to_string()
    }

    /// The lines `up` printed, not yet read, that report an exit.
    pub fn exits(&self) -> Vec<String> {
        self.lines
            .try_iter()
            .filter(|line| line.contains("exited"))
            .collect()
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_dapr-wasm"))
            .args(args)
            .env("DAPR_WASM_DATA_DIR", self.data.path())
            .output()
            .unwrap()
    }

    pub fn records(&self) -> Vec<Value> {
        std::fs::read_dir(self.data.path().join("run"))
            .unwrap()
            .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
            .collect()
    }

    /// Every process of the demo as (name, pid): `up`, then each app and
    /// its sidecar.
    pub fn processes(&self) -> Vec<(String, u64)> {
        let mut processes = vec![("up".to_string(), u64::from(self.child.id()))];
        let mut records = self.records();
        records.sort_by_key(|r| r["app_id"].as_str().unwrap_or_default().to_string());
        for record in records {
            let id = record["app_id"].as_str().unwrap().to_string();
            processes.push((id.clone(), record["app_pid"].as_u64().unwrap()));
            processes.push((
                format!("{id} sidecar"),
                record["sidecar_pid"].as_u64().unwrap(),
            ));
        }
        processes
    }

    /// The pid of `app_id`'s app, or of its sidecar.
    pub fn pid_of(&self, app_id: &str, sidecar: bool) -> u64 {
        let record = self
            .records()
            .into_iter()
            .find(|r| r["app_id"] == app_id)
            .unwrap_or_else(|| panic!("no run record for {app_id}"));
        record[if sidecar { "sidecar_pid" } else { "app_pid" }]
            .as_u64()
            .unwrap()
    }
}

/// Waits until none of `pids` is alive; returns those still alive after
/// `within`.
pub fn wait_gone(pids: &[u64], within: Duration) -> Vec<u64> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline && pids.iter().any(|&p| pid_alive(p)) {
        // A poll with a deadline: the loop ends as soon as they are gone.
        std::thread::sleep(Duration::from_millis(100));
    }
    pids.iter().copied().filter(|&p| pid_alive(p)).collect()
}
