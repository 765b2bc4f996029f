#!/usr/bin/env bash
# Runs every test: formatting, lints, the guest functions' own tests, and the
# workspace's unit and integration tests (which start the real services and
# use a real Redis, PostgreSQL, MariaDB, RabbitMQ, NATS and Mosquitto, started or
# installed here when they are missing).
#
# It needs root: it installs what is missing with apt-get and starts
# PostgreSQL as the postgres user.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ $EUID -eq 0 ]] || die "scripts/test.sh needs root (it runs apt-get, and starts PostgreSQL with su postgres): run it as root, e.g. sudo bash scripts/test.sh"
trap print_step_timings EXIT

ensure_toolchain
ensure_redis
ensure_postgres
ensure_brokers
ensure_mariadb
ensure_js_sdk
ensure_browser
ensure_test_venv
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

# Tests that need a service or tool from outside the repository (Redis,
# PostgreSQL, the SDKs, Chromium) are #[ignore = "needs ..."] for a plain
# `cargo test`; everything they need is set up above, so they run here too.
# (no_python_child is not a test of its own: a_missing_python_is_a_clear_error
# runs it in a child process.)
step "Workspace tests"
cargo test --workspace --locked -- --include-ignored --skip no_python_child

# A short, bounded run of each fuzz target (scripts/fuzz.sh; the longer
# run and its results are in docs/performance.md).
FUZZ_SECONDS=30 bash scripts/fuzz.sh
