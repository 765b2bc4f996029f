#!/usr/bin/env bash
# Benchmark (not part of the tests): components/hello served two ways, side
# by side in one run, on the same core:
#
#   dapr-wasm   dapr-wasm serve build/components/hello.wasm (its limits on:
#               memory, deadline, body sizes, 64 request slots)
#   wasmtime    wasmtime serve build/components/hello.wasm (wasmtime-cli
#               =48.0.8, the same wasmtime, installed from crates.io into
#               build/tools/ by this script: about 15 minutes, once)
#
# Both servers are pinned to CPU 1 and the load generator
# (crates/component-host/examples/http_saturate.rs, one thread, closed loop,
# CONNECTIONS keep-alive connections, default 32) to CPU 0. The two take
# turns for ROUNDS rounds (default 3) of DURATION seconds (default 10);
# requests/s are averaged and latencies pooled. Then what memory costs:
# the resident memory of `dapr-wasm serve` idle with 1 and with 257
# request slots (per idle slot), and with 64 requests in flight at once
# (components/probes, /sleep) against idle (per in-flight request).
# PROFILE=dev uses the tests' build instead of a release build
# (build_for_bench in lib.sh: dependencies, wasmtime and hyper included,
# at -O3, our own crates at -O0 or -O1): quicker to build, and no help to dapr-wasm.
# Prints Markdown for docs/performance.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
export PROFILE="${PROFILE:-release}"
OURS=18090 THEIRS=18091 MEMORY=18092
WASMTIME_VERSION=48.0.8
WASMTIME_ROOT="$REPO_ROOT/build/tools/wasmtime-cli-$WASMTIME_VERSION"

ensure_toolchain
command -v python3 >/dev/null || apt_install python3
command -v taskset >/dev/null || apt_install util-linux
build_components
build_for_bench -p dapr-wasm --bin dapr-wasm -p component-host --example http_saturate
bin="$(profile_dir "$PROFILE")"
if [[ ! -x $WASMTIME_ROOT/bin/wasmtime ]]; then
    step "Installing wasmtime-cli $WASMTIME_VERSION from crates.io (cargo install; about 15 minutes, once)"
    cargo install --locked --root "$WASMTIME_ROOT" "wasmtime-cli@$WASMTIME_VERSION"
fi
wasmtime="$WASMTIME_ROOT/bin/wasmtime"

for port in "$OURS" "$THEIRS" "$MEMORY"; do
    port_open "$port" && die "port $port is in use; stop what holds it first"
done
work="$(mktemp -d)"
pids=()
server_pid=
cleanup() {
    kill "${pids[@]}" $server_pid 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

hello="$COMPONENTS_OUT/hello.wasm"
step "Starting both servers on CPU 1"
taskset -c 1 "$bin/dapr-wasm" --log-level warn serve "$hello" --app-port "$OURS" \
    --cache-dir "$work/cache" & pids+=($!)
taskset -c 1 "$wasmtime" serve --addr "127.0.0.1:$THEIRS" -Scli "$hello" \
    2>"$work/wasmtime.log" & pids+=($!)
wait_for_port "$OURS" "dapr-wasm serve"
wait_for_port "$THEIRS" "wasmtime serve"

run_round() { # NAME PORT
    LATENCIES="$work/$1.latencies" taskset -c 0 "$bin/examples/http_saturate" \
        "http://127.0.0.1:$2/" "$CONNECTIONS" "$DURATION" >>"$work/$1.jsonl"
}
for round in $(seq "$ROUNDS"); do
    step "Round $round of $ROUNDS: $CONNECTIONS connections, ${DURATION}s each"
    run_round dapr-wasm "$OURS"
    run_round wasmtime "$THEIRS"
    tail -n1 "$work/dapr-wasm.jsonl" "$work/wasmtime.jsonl" >&2
done
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()

# Resident memory (KiB) of PID.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Starts `dapr-wasm serve COMPONENT --max-concurrent-calls SLOTS [FLAGS]` on
# $MEMORY as $server_pid, and waits until it has answered one request.
start_serving() { # COMPONENT SLOTS [FLAGS...]
    local component=$1 slots=$2
    shift 2
    "$bin/dapr-wasm" --log-level warn serve "$component" --app-port "$MEMORY" \
        --max-concurrent-calls "$slots" --cache-dir "$work/cache" "$@" >/dev/null 2>&1 &
    server_pid=$!
    wait_for_port "$MEMORY" "dapr-wasm serve"
    curl -fsS "http://127.0.0.1:$MEMORY/echo" >/dev/null || true
}
stop_serving() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}
step "Memory: idle with 1 and 257 slots; 64 requests in flight"
start_serving "$hello" 1
idle_1=$(rss_kib "$server_pid")
stop_serving
start_serving "$hello" 257
idle_257=$(rss_kib "$server_pid")
stop_serving
start_serving "$COMPONENTS_OUT/probes.wasm" 64 --queue-timeout 0s
idle_probe=$(rss_kib "$server_pid")
sleepers=()
for _ in $(seq 64); do
    curl -fsS "http://127.0.0.1:$MEMORY/sleep?ms=4000" >/dev/null & sleepers+=($!)
done
# Every slot is taken once a 65th request is refused as busy.
tries=0
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MEMORY/echo") == 503 ]]; do
    (( ++tries < 1000 )) || die "the 64 sleeping requests never filled the slots"
done
busy=$(rss_kib "$server_pid")
wait "${sleepers[@]}" 2>/dev/null || true
stop_serving

python3 - "$work" "$idle_1" "$idle_257" "$idle_probe" "$busy" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'PY'
import json, os, statistics, sys
work, idle_1, idle_257, idle_probe, busy = sys.argv[1], *map(int, sys.argv[2:6])
connections, duration, rounds = sys.argv[6:9]
def summary(name):
    rounds_ = [json.loads(l) for l in open(os.path.join(work, name + ".jsonl"))]
    lat = sorted(float(l) for l in open(os.path.join(work, name + ".latencies")))
    pick = lambda p: lat[min(int(len(lat) * p), len(lat) - 1)]
    return (statistics.mean(r["rps"] for r in rounds_), pick(0.5), pick(0.99),
            sum(r["failures"] for r in rounds_))
ours, theirs = summary("dapr-wasm"), summary("wasmtime")
print(f"components/hello, {connections} connections, {rounds} rounds of {duration} s, servers on CPU 1, load on CPU 0, dapr-wasm built with the {os.environ.get('PROFILE', 'release')} profile\n")
print("| server | requests/s | p50 ms | p99 ms | failed |")
print("|---|---|---|---|---|")
for name, (rps, p50, p99, failed) in (("dapr-wasm serve", ours), ("wasmtime serve", theirs)):
    print(f"| {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {failed} |")
print(f"\nthroughput ratio dapr-wasm / wasmtime: **{ours[0] / theirs[0]:.2f}x**; "
      f"p50 {ours[1] / theirs[1]:.2f}x, p99 {ours[2] / theirs[2]:.2f}x\n")
print(f"- memory per idle request slot: {(idle_257 - idle_1) / 256:.1f} KiB "
      f"(RSS {idle_1 / 1024:.1f} MiB with 1 slot, {idle_257 / 1024:.1f} MiB with 257)")
print(f"- memory per in-flight request (components/probes, 64 at once): "
      f"{(busy - idle_probe) / 64:.0f} KiB (RSS {idle_probe / 1024:.1f} MiB idle, {busy / 1024:.1f} MiB busy)")
PY
