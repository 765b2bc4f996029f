# Shared by the scripts in this folder: repo paths, progress output and the
# one-time set-up of the Rust toolchain. Source it; do not run it.

set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUNCTIONS_OUT="$REPO_ROOT/build/functions"

step() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# rustup reads rust-toolchain.toml and installs the pinned toolchain and the
# wasm32-wasip1 target on first use; this just makes that step visible.
ensure_toolchain() {
    command -v cargo >/dev/null || die "cargo not found: install rustup from your package manager, then re-run"
    if command -v rustup >/dev/null; then
        step "Rust toolchain (pinned in rust-toolchain.toml)"
        (cd "$REPO_ROOT" && rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install)
        (cd "$REPO_ROOT" && rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1)
    fi
}

# Prints the target directory of the workspace in the current directory
# (honours CARGO_TARGET_DIR and .cargo/config.toml).
target_dir_of_workspace() {
    cargo metadata --format-version 1 --no-deps \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# Builds every guest function for wasm32-wasip1 and copies the .wasm files to
# build/functions/, where the services and tests look for them.
build_functions() {
    step "Building wasm functions (functions/ -> build/functions/)"
    (cd "$REPO_ROOT/functions" && cargo build --release --locked)
    local target_dir
    target_dir="$(cd "$REPO_ROOT/functions" && target_dir_of_workspace)"
    mkdir -p "$FUNCTIONS_OUT"
    local wasm
    for wasm in "$target_dir"/wasm32-wasip1/release/*.wasm; do
        cp -f "$wasm" "$FUNCTIONS_OUT/"
    done
    ls -1 "$FUNCTIONS_OUT" | sed 's/^/    /' >&2
}
