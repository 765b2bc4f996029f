//! Paths shared by the function host's integration tests.

use std::path::PathBuf;

/// A file of the repository, by its path from the root.
#[allow(dead_code)]
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// A built guest from `build/functions/` (or `$DAPR_WASM_FUNCTIONS_DIR`).
pub fn wasm_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("DAPR_WASM_FUNCTIONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("build/functions"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the functions with `bash scripts/test.sh` (or scripts/lib.sh's build_functions)",
        path.display()
    );
    path
}
