//! Why a run could not start or went wrong.

use std::path::PathBuf;

/// Every way the runner fails.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is ("cannot read the run file", ...).
        what: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The run file is not YAML of the expected shape.
    #[error("{} is not a valid Dapr run file: {source}", path.display())]
    Parse {
        /// The run file.
        path: PathBuf,
        /// What the parser said.
        source: serde_yaml::Error,
    },
    /// The run file parses but says something impossible.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The run file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A component folder holds a component the sidecar cannot load.
    #[error("app `{app_id}`: {reason}")]
    Components {
        /// The app whose sidecar would load it.
        app_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A port the run file names is taken.
    #[error("app `{app_id}`: port {port} ({field}) cannot be used: {reason}")]
    PortTaken {
        /// The app.
        app_id: String,
        /// Which of its ports (`appPort`, `daprHTTPPort`).
        field: &'static str,
        /// The port.
        port: u16,
        /// What binding it said.
        reason: String,
    },
    /// Building the functions or fetching the model failed.
    #[error("{0}")]
    Prepare(String),
    /// A process could not be started.
    #[error("{label}: cannot start {}: {source}", program.display())]
    Spawn {
        /// Which process ("web-port sidecar", ...).
        label: String,
        /// Its program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not every app and sidecar answered in time, or one exited first.
    #[error("the apps did not all start: {0}")]
    NotReady(String),
    /// No data directory could be worked out.
    #[error("no data directory: set DAPR_WASM_DATA_DIR or HOME")]
    NoDataDir,
}
