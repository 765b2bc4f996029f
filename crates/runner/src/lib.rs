//! Runs a Dapr multi-app run file (`dapr.yaml`, the format of
//! `dapr run -f`) on one machine, with a dapr-wasm sidecar beside each app.
//! `dapr-wasm up` is a thin command over this crate.
//!
//! # How a run goes
//!
//! 1. [`RunFile::load`] reads and checks the file (versions, duplicate ids,
//!    empty commands, ports).
//! 2. [`plan`] resolves it into one [`AppPlan`] per app: absolute
//!    directories, the ports (Dapr's defaults where the file says nothing),
//!    the env vars Dapr sets, the component folders.
//! 3. [`prepare()`] builds missing wasm functions (`scripts/build-functions.sh`,
//!    the one build of the functions) and fetches the model if it is missing.
//! 4. [`Supervisor::start`] starts each sidecar and app as child processes
//!    tied to this one, prefixes their output with the app id, and records
//!    them in the [`RunRecords`]; [`Supervisor::wait_ready`] waits until
//!    every app and sidecar answers; [`Supervisor::supervise`] reports exits
//!    until shutdown; [`Supervisor::stop`] stops them all.
//!
//! # Layout
//!
//! - [`run_file`]: the schema and its checks.
//! - [`plan`](mod@plan): from the file to [`AppPlan`]s.
//! - [`prepare`](mod@prepare): functions and model, before anything starts.
//! - [`supervisor`]: the child processes.
//! - [`records`]: the JSON records `dapr-wasm list` and `invoke` read.
//! - [`error`]: the one error type, [`RunnerError`].

pub mod error;
pub mod plan;
pub mod prepare;
pub mod records;
pub mod run_file;
pub mod supervisor;

pub use error::RunnerError;
pub use plan::{AppPlan, plan};
pub use prepare::prepare;
pub use records::{AppRecord, RunRecords};
pub use run_file::RunFile;
pub use supervisor::Supervisor;
