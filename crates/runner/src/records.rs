//! The run records: one JSON file per app in `<data dir>/run/`, written by
//! `dapr-wasm up` and read by `dapr-wasm list` and `dapr-wasm invoke`.
//! A record whose `up` is gone is stale and removed when read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::RunnerError;

/// One running app, as `up` recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app id.
    pub app_id: String,
    /// Its port.
    pub app_port: Option<u16>,
    /// Its sidecar's HTTP port.
    pub dapr_http_port: u16,
    /// Its sidecar's gRPC port (0 in records from before it had one).
    #[serde(default)]
    pub dapr_grpc_port: u16,
    /// Its sidecar's metrics port (0 in records from before it had one).
    #[serde(default)]
    pub metrics_port: u16,
    /// The app's own metrics port (0 in records from before it had one).
    #[serde(default)]
    pub app_metrics_port: u16,
    /// The app's pid.
    pub app_pid: u32,
    /// The sidecar's pid.
    pub sidecar_pid: u32,
    /// The pid of `up`.
    pub up_pid: u32,
    /// When it started (Unix seconds).
    pub started_unix: u64,
    /// Its command line.
    pub command: String,
}

/// Whether a process exists (for a record's `up`, which is not our child).
fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// The folder of run records.
pub struct RunRecords {
    dir: PathBuf,
}

impl RunRecords {
    /// `<data dir>/run` (see [`local_dirs::data_dir`]).
    pub fn open() -> Result<RunRecords, RunnerError> {
        let dir = local_dirs::data_dir()
            .ok_or(RunnerError::NoDataDir)?
            .join("run");
        std::fs::create_dir_all(&dir).map_err(|source| RunnerError::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        Ok(RunRecords { dir })
    }

    fn path(&self, app_id: &str) -> PathBuf {
        self.dir.join(format!("{app_id}.json"))
    }

    /// Records an app (replacing an older record of the same id).
    pub fn record(&self, record: &AppRecord) -> Result<(), RunnerError> {
        let path = self.path(&record.app_id);
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other);
        json.and_then(|json| std::fs::write(&path, json))
            .map_err(|source| RunnerError::Io {
                what: "cannot write the run record",
                path,
                source,
            })
    }

    /// Forgets an app.
    pub fn remove(&self, app_id: &str) {
        let _ = std::fs::remove_file(self.path(app_id));
    }

    /// The recorded apps whose `up` still runs; stale records are removed.
    pub fn running(&self) -> Vec<AppRecord> {
        let mut apps = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return apps;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let record = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<AppRecord>(&bytes).ok());
            match record {
                Some(record) if pid_alive(record.up_pid) => apps.push(record),
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        apps
    }
}
