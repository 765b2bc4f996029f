//! The host's errors: [`LoadError`] when a module cannot be made ready, and
//! [`CallError`] for a call that did not succeed.
//!
//! [`CallError`] keeps "the guest said no" ([`CallError::BadInput`], a
//! non-zero exit) apart from the ways the host had to stop a guest
//! (timeout, memory limit, trap, output too large), so that services can map
//! each to its own HTTP status.

use std::path::PathBuf;
use std::time::Duration;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The wasm file could not be read.
    #[error("cannot read function `{name}` from {path}: {source}")]
    Read {
        /// The function's name.
        name: String,
        /// The file that was read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid module, or it imports something the host
    /// does not provide.
    #[error("cannot prepare function `{name}`: {reason}")]
    Invalid {
        /// The function's name.
        name: String,
        /// What wasmtime said, with its causes.
        reason: String,
    },
    /// The engine could not be created (bad configuration).
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}

/// How a service should read a function's non-zero exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 2: the input's format is not supported.
    Unsupported,
    /// Exit code 3: the input is over one of the function's own limits.
    TooLarge,
    /// Exit code 4: a host service the function relies on failed (for
    /// `classify`, the WASI-NN inference): not the caller's fault.
    HostService,
    /// Exit code 5: the call named something the function does not have,
    /// such as a model (`classify --model NAME`).
    UnknownName,
    /// Any other non-zero code: the input is invalid.
    Invalid,
}

impl ExitKind {
    /// Reads an exit code according to dapr-wasm's convention.
    pub fn from_code(code: i32) -> Self {
        match code {
            2 => ExitKind::Unsupported,
            3 => ExitKind::TooLarge,
            4 => ExitKind::HostService,
            5 => ExitKind::UnknownName,
            _ => ExitKind::Invalid,
        }
    }
}

/// Why a call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The input is over [`CallLimits::max_input_bytes`](crate::CallLimits).
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge {
        /// The input's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The function exited non-zero: it rejected its input.
    #[error("{}", bad_input_message(*.exit_code, stderr))]
    BadInput {
        /// The exit code.
        exit_code: i32,
        /// What the function wrote to stderr (lossy UTF-8, trimmed).
        stderr: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("the function did not finish within {deadline:?}")]
    Timeout {
        /// The deadline that was exceeded.
        deadline: Duration,
    },
    /// The function tried to grow its memory past the limit.
    #[error("the function exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The function trapped (crashed).
    #[error("the function crashed: {message}")]
    Trap {
        /// The trap, with its wasm backtrace when there is one.
        message: String,
        /// What the function wrote to stderr before it trapped.
        stderr: String,
    },
    /// The function wrote more than
    /// [`CallLimits::max_output_bytes`](crate::CallLimits) to stdout.
    #[error("the function's output exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No call slot became free within the queue timeout.
    #[error("all {slots} call slots are busy; waited {waited:?}")]
    Busy {
        /// The number of concurrent calls allowed.
        slots: usize,
        /// How long the call waited.
        waited: Duration,
    },
    /// The host failed in a way that is not the guest's fault.
    #[error("internal function host error: {0}")]
    Internal(String),
}

fn bad_input_message(exit_code: i32, stderr: &str) -> String {
    if stderr.is_empty() {
        format!("the function rejected its input (exit code {exit_code})")
    } else {
        stderr.to_string()
    }
}
