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
# On exit: stop the background build if the run ended before it did,
# then say how long each step took.
finish() {
    local status=$?
    if [[ -n ${workspace_build:-} ]]; then
        pkill -TERM -P "$workspace_build" 2>/dev/null || true
        kill "$workspace_build" 2>/dev/null || true
    fi
    print_step_timings "$status"
}
trap finish EXIT

ensure_toolchain
ensure_nextest
# Every build from here on lints the crates it builds (use_clippy_driver):
# the guests' release builds are their `cargo clippy --release -- -D
# warnings` too, and the workspace's test build is its clippy.
use_clippy_driver
# The workspace's build (the longest step: one build serves clippy, the
# tests and the CLI that fetches the models) needs nothing that the steps
# below install, so it starts now and runs while they download and
# install; its output is shown when it is waited for.
mkdir -p build
workspace_build_log="$REPO_ROOT/build/workspace-build.log"
step "Building the workspace's tests, benches and examples in the background, linted by clippy (-D warnings; log: build/workspace-build.log)"
(build_workspace_tests && cargo test --workspace --locked --no-run --benches) >"$workspace_build_log" 2>&1 &
workspace_build=$!
ensure_redis
ensure_postgres
ensure_brokers
ensure_mariadb
ensure_js_sdk
ensure_browser
ensure_test_venv
ensure_wasi_clang
build_functions
build_components
build_wstd_example

step "cargo fmt --check"
cargo fmt --all --check
(cd functions && cargo fmt --all --check)
(cd components && cargo fmt --all --check)
(cd fuzz && cargo fmt --check)
# The fuzz workspace builds last; a stale lock file should fail here, not
# after the long build.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

step "Guest function and component tests (on the host)"
(cd functions && cargo test --locked --target "$(rustc -vV | sed -n 's/^host: //p')")
(cd components && cargo test --locked --target "$(rustc -vV | sed -n 's/^host: //p')")

step "Waiting for the workspace's build (started above)"
if ! wait "$workspace_build"; then
    workspace_build=""
    grep -v '^ *Compiling ' "$workspace_build_log" >&2
    die "the workspace's build failed (above; the whole output is in build/workspace-build.log)"
fi
workspace_build=""
grep -E '^ *(Finished|warning)' "$workspace_build_log" >&2 || true
fetch_models "$(target_dir_of_workspace)/debug/dapr-wasm"

# Tests that need a service or tool from outside the repository (Redis,
# PostgreSQL, the SDKs, Chromium) are #[ignore = "needs ..."] for a plain
# `cargo test`; everything they need is set up above, so they run here too
# (--run-ignored all). (no_python_child is not a test of its own:
# a_missing_python_is_a_clear_error runs it in a child process.)
# cargo-nextest runs the test binaries side by side, not one after
# another: the long hostile-input suite no longer holds up the rest.
step "Workspace tests (cargo nextest)"
# (It runs no doc tests; the crates have none: their examples are tests.)
cargo nextest run --workspace --locked --no-fail-fast --run-ignored all \
    -E 'not test(no_python_child)'

# A short, bounded run of the guests' decode fuzz target (scripts/fuzz.sh;
# the longer runs of both targets and their results are in
# docs/performance.md). The sidecar_request target's instrumented build
# would rebuild the sidecar's whole dependency tree (about 8 minutes on 2
# cores), so here its seeds are replayed through the same harness by the
# sidecar's tests instead (crates/sidecar/tests/sidecar/fuzz_seeds.rs).
# (Its own workspace, built without the clippy wrapper.)
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS FUZZ_SECONDS=30 bash scripts/fuzz.sh guest_decode
