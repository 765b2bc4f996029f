//! Files of the repository, wherever the test runs from.

use std::path::PathBuf;

/// A file of the repository, by its path from the root.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// A built guest from `build/functions/` (or `$DAPR_WASM_FUNCTIONS_DIR`).
/// Panics with the fix when it is missing.
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

/// A built wasi:http component from `build/components/` (or
/// `$DAPR_WASM_COMPONENTS_DIR`). Panics with the fix when it is missing.
pub fn component_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("DAPR_WASM_COMPONENTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("build/components"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the components with `bash scripts/test.sh` (or scripts/lib.sh's build_components)",
        path.display()
    );
    path
}

/// A photo from `testdata/`.
pub fn photo(name: &str) -> Vec<u8> {
    let path = repo_path("testdata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
