#!/usr/bin/env bash
# Runs every test: formatting, lints, the guest functions' own tests, and the
# workspace's unit and integration tests (which start the real services and
# use a real Redis and PostgreSQL, started here when they are not running).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
ensure_redis
ensure_postgres
ensure_js_sdk
ensure_browser
build_functions

step "cargo fmt --check"
cargo fmt --all --check
(cd functions && cargo fmt --all --check)
(cd fuzz && cargo fmt --check)

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd functions && cargo clippy --release --locked -- -D warnings)

step "Guest function tests (on the host)"
(cd functions && cargo test --locked --target "$(rustc -vV | sed -n 's/^host: //p')")

# One build serves the tests and the CLI that fetches the models (building
# the binary on its own would resolve other features and build twice).
step "Building the workspace's tests"
cargo test --workspace --locked --no-run
fetch_models "$(target_dir_of_workspace)/debug/dapr-wasm"

step "Workspace tests"
cargo test --workspace --locked

# A short, bounded run of each fuzz target (scripts/fuzz.sh; the longer
# run and its results are in docs/performance.md).
FUZZ_SECONDS=30 bash scripts/fuzz.sh
