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
    built(
        "DAPR_WASM_FUNCTIONS_DIR",
        "build/functions",
        "build_functions",
        name,
    )
}

/// A built wasi:http component from `build/components/` (or
/// `$DAPR_WASM_COMPONENTS_DIR`). Panics with the fix when it is missing.
pub fn component_path(name: &str) -> PathBuf {
    built(
        "DAPR_WASM_COMPONENTS_DIR",
        "build/components",
        "build_components",
        name,
    )
}

/// `NAME.wasm` in the folder `$dir_var` names, else in `default_dir`;
/// panics naming scripts/lib.sh's `builder` when it is missing.
fn built(dir_var: &str, default_dir: &str, builder: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os(dir_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path(default_dir));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build it with `bash scripts/test.sh` (or scripts/lib.sh's {builder})",
        path.display()
    );
    path
}

/// A photo from `testdata/`.
pub fn photo(name: &str) -> Vec<u8> {
    let path = repo_path("testdata").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
