//! Where dapr-wasm keeps its files on this machine: the one place that
//! works the directories out, for every crate, command and service.
//!
//! | what | first of |
//! |---|---|
//! | [`data_dir`]: state stores, name registry, run records | `$DAPR_WASM_DATA_DIR`, `$XDG_DATA_HOME/dapr-wasm`, `~/.local/share/dapr-wasm` |
//! | [`models_dir`]: the fetched models | `$DAPR_WASM_MODELS_DIR`, [`data_dir`]`/models` |
//! | [`module_cache_dir`]: compiled wasm | `$DAPR_WASM_CACHE_DIR`, `$XDG_CACHE_HOME/dapr-wasm/modules`, `~/.cache/dapr-wasm/modules` |
//!
//! Each is `None` only when none of its variables, nor `HOME`, is set.

use std::path::PathBuf;

/// A non-empty environment variable, as a path.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$XDG_…_HOME`, else `$HOME/<fallback>`.
fn xdg_base(variable: &str, fallback: &str) -> Option<PathBuf> {
    env_path(variable).or_else(|| env_path("HOME").map(|home| home.join(fallback)))
}

/// The data directory: the SQLite state store, the name registry, the run
/// records of `dapr-wasm up`.
pub fn data_dir() -> Option<PathBuf> {
    env_path("DAPR_WASM_DATA_DIR")
        .or_else(|| xdg_base("XDG_DATA_HOME", ".local/share").map(|base| base.join("dapr-wasm")))
}

/// Where `dapr-wasm models fetch` puts the models and the services read
/// them.
pub fn models_dir() -> Option<PathBuf> {
    env_path("DAPR_WASM_MODELS_DIR").or_else(|| data_dir().map(|data| data.join("models")))
}

/// The on-disk cache of compiled wasm modules.
pub fn module_cache_dir() -> Option<PathBuf> {
    env_path("DAPR_WASM_CACHE_DIR").or_else(|| {
        xdg_base("XDG_CACHE_HOME", ".cache").map(|base| base.join("dapr-wasm").join("modules"))
    })
}
