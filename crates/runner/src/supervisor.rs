//! The child processes of a run: each app and its sidecar.
//!
//! Every child is tied to this process with `PR_SET_PDEATHSIG`, so even a
//! killed `up` leaves none behind, and its output is printed line by line
//! behind its label (`[web-port] ...`). The supervisor keeps each child's
//! handle until it has reaped it, so a signal always reaches the process it
//! started, never another that reused its pid.
//!
//! A run is four calls: [`Supervisor::start`], [`Supervisor::wait_ready`],
//! [`Supervisor::supervise`] and [`Supervisor::stop`].

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::select_all;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::{AppPlan, AppRecord, RunRecords, RunnerError};

/// How long [`Supervisor::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often readiness is checked.
const READY_POLL: Duration = Duration::from_millis(200);

/// One started process.
struct Managed {
    label: String,
    child: Child,
    /// Its exit, once reaped.
    exited: Option<ExitStatus>,
}

/// The processes of a run, and the run records that name them.
pub struct Supervisor {
    plans: Vec<AppPlan>,
    processes: Vec<Managed>,
    records: RunRecords,
}

impl Supervisor {
    /// Starts each app's sidecar (this binary, `own_binary sidecar ...`) and
    /// the app, and records them. On a failure the processes already
    /// started are stopped before the error returns.
    pub async fn start(plans: Vec<AppPlan>, own_binary: &Path) -> Result<Supervisor, RunnerError> {
        let mut supervisor = Supervisor {
            plans: Vec::new(),
            processes: Vec::new(),
            records: RunRecords::open()?,
        };
        for plan in &plans {
            if let Err(err) = supervisor.start_app(plan, own_binary) {
                supervisor.stop().await;
                return Err(err);
            }
            supervisor.plans.push(plan.clone());
        }
        Ok(supervisor)
    }

    fn start_app(&mut self, plan: &AppPlan, own_binary: &Path) -> Result<(), RunnerError> {
        let sidecar = spawn(
            format!("{} sidecar", plan.app_id),
            own_binary,
            &plan.sidecar_args(),
            plan,
        )?;
        let sidecar_pid = sidecar.child.id().unwrap_or(0);
        self.processes.push(sidecar);
        let app = spawn(plan.app_id.clone(), &plan.program, &plan.args, plan)?;
        let app_pid = app.child.id().unwrap_or(0);
        self.processes.push(app);
        self.records.record(&AppRecord {
            app_id: plan.app_id.clone(),
            app_port: plan.app_port,
            dapr_http_port: plan.dapr_http_port,
            dapr_grpc_port: plan.dapr_grpc_port,
            metrics_port: plan.metrics_port,
            app_metrics_port: plan.app_metrics_port,
            app_pid,
            sidecar_pid,
            up_pid: std::process::id(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            command: std::iter::once(plan.program.display().to_string())
                .chain(plan.args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Waits until every app's port accepts connections and every sidecar
    /// answers its health check. Fails if `timeout` passes, a process
    /// exits, or `shutdown` fires first.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<(), RunnerError> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if self.all_answer(&client).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RunnerError::NotReady(format!(
                    "not every app answered within {timeout:?}"
                )));
            }
            tokio::select! {
                () = &mut *shutdown => {
                    return Err(RunnerError::NotReady("stopped during start-up".into()));
                }
                (label, status) = self.next_exit() => {
                    return Err(RunnerError::NotReady(format!(
                        "{label} exited during start-up ({status})"
                    )));
                }
                () = tokio::time::sleep(READY_POLL) => {}
            }
        }
    }

    async fn all_answer(&self, client: &reqwest::Client) -> bool {
        for plan in &self.plans {
            let app_ok = match plan.app_port {
                Some(port) => tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok(),
                None => true,
            };
            if !app_ok || !sidecar_healthy(client, plan.dapr_http_port).await {
                return false;
            }
        }
        true
    }

    /// The URL of the UI: web-port's, else the first app's.
    pub fn ui_url(&self) -> Option<String> {
        self.plans
            .iter()
            .find(|p| p.app_id == "web-port")
            .or_else(|| self.plans.first())
            .and_then(|p| p.app_port)
            .map(|port| format!("http://127.0.0.1:{port}/"))
    }

    /// Reports each process that exits (through `report`) until
    /// `shutdown`; the others keep running.
    pub async fn supervise(
        &mut self,
        shutdown: impl Future<Output = ()>,
        mut report: impl FnMut(&str, &str),
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                (label, how) = self.next_exit() => report(&label, &how),
            }
        }
    }

    /// The next process to exit (reaped, so it is never signalled again),
    /// as its label and how it ended. Pends forever when none is left
    /// running.
    async fn next_exit(&mut self) -> (String, String) {
        let running: Vec<_> = self
            .processes
            .iter_mut()
            .filter(|p| p.exited.is_none())
            .map(|p| {
                Box::pin(async move {
                    let status = p.child.wait().await;
                    (p, status)
                })
            })
            .collect();
        if running.is_empty() {
            return std::future::pending().await;
        }
        let ((process, status), _, _) = select_all(running).await;
        let how = match status {
            Ok(status) => {
                process.exited = Some(status);
                status.to_string()
            }
            Err(err) => {
                // Waiting itself failed: count it as gone, and say why.
                process.exited = Some(ExitStatus::from_raw(0));
                format!("cannot wait for it: {err}")
            }
        };
        (process.label.clone(), how)
    }

    /// Stops every process: SIGTERM, up to [`STOP_GRACE`] to exit, then
    /// SIGKILL. Removes the run records. Returns the labels of those that
    /// had to be killed.
    pub async fn stop(&mut self) -> Vec<String> {
        for process in self.processes.iter_mut().filter(|p| p.exited.is_none()) {
            if let Some(pid) = process.child.id() {
                // SAFETY: kill(2) on our own child, not yet reaped, so the
                // pid is still its own; no memory is involved.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut killed = Vec::new();
        for process in self.processes.iter_mut().filter(|p| p.exited.is_none()) {
            match tokio::time::timeout_at(deadline, process.child.wait()).await {
                Ok(status) => process.exited = status.ok(),
                Err(_) => {
                    killed.push(process.label.clone());
                    let _ = process.child.kill().await;
                    process.exited = process.child.try_wait().ok().flatten();
                }
            }
        }
        for plan in &self.plans {
            self.records.remove(&plan.app_id);
        }
        killed
    }
}

/// Starts one process for `plan`, its output behind `label`.
fn spawn(
    label: String,
    program: &Path,
    args: &[String],
    plan: &AppPlan,
) -> Result<Managed, RunnerError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&plan.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Tie the child to us: if we die, even by SIGKILL, so does it.
    // SAFETY: prctl is async-signal-safe; the closure only calls it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| RunnerError::Spawn {
        label: label.clone(),
        program: program.to_path_buf(),
        source,
    })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(print_lines(label.clone(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(print_lines(label.clone(), err));
    }
    Ok(Managed {
        label,
        child,
        exited: None,
    })
}

async fn print_lines(label: String, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[{label}] {line}");
    }
}

async fn sidecar_healthy(client: &reqwest::Client, port: u16) -> bool {
    client
        .get(format!("http://127.0.0.1:{port}/v1.0/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
