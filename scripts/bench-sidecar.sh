#!/usr/bin/env bash
# Benchmark (not part of the tests): the latency a sidecar pair adds, and
# the CPU the two sidecars use, for the same call three ways in one run:
#
#   direct   app -> app                            POST http://127.0.0.1:$APP/echo
#   http     app -> sidecar -> sidecar -> app      POST .../v1.0/invoke/bench-target/method/echo
#   grpc     app -> sidecar -> sidecar -> app      gRPC InvokeService on the caller's gRPC port
#
# Each runs at a fixed RATE (default 1000 req/s) for DURATION seconds
# (default 30) after a 5 s warm-up, with 1 KiB bodies, driven open-loop by
# crates/sidecar/examples/invoke_load.rs, on THREADS worker threads
# (default 2). Prints Markdown for docs/performance.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-30}"
RATE="${RATE:-1000}"
APP=18080 CALLER=13500 TARGET=13501 CALLER_GRPC=15001 TARGET_GRPC=15002

ensure_toolchain
command -v python3 >/dev/null || apt_install python3
step "Building dapr-wasm, the echo app and the load generator (release)"
cargo build --release --locked -p dapr-wasm --bin dapr-wasm
cargo build --release --locked -p sidecar --example echo_app --example invoke_load
bin="$(target_dir_of_workspace)/release"

work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

"$bin/examples/echo_app" "$APP" & pids+=($!)
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-target \
    --app-port "$APP" --dapr-http-port "$TARGET" --dapr-grpc-port "$TARGET_GRPC" & pids+=($!); target_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-caller \
    --dapr-http-port "$CALLER" --dapr-grpc-port "$CALLER_GRPC" & pids+=($!); caller_pid=$!
for port in "$APP" "$TARGET" "$CALLER" "$CALLER_GRPC"; do wait_for_port "$port" "port $port"; done

declare -A targets=(
    [direct]="http://127.0.0.1:$APP/echo"
    [http]="http://127.0.0.1:$CALLER/v1.0/invoke/bench-target/method/echo"
    [grpc]="127.0.0.1:$CALLER_GRPC/bench-target"
)
load() { # MODE SECONDS
    "$bin/examples/invoke_load" "$1" "${targets[$1]}" "$RATE" "$2" 1024
}
# CPU seconds (user + system) used so far by the two sidecars.
sidecar_cpu() {
    awk -v t="$(getconf CLK_TCK)" '{ s += $14 + $15 } END { printf "%.3f", s / t }' \
        "/proc/$caller_pid/stat" "/proc/$target_pid/stat"
}

for mode in direct http grpc; do
    step "$mode: warm-up 5 s, then $RATE req/s for $DURATION s"
    load "$mode" 5 > /dev/null
    before=$(sidecar_cpu)
    load "$mode" "$DURATION" > "$work/$mode.json"
    echo "{\"cpu\": $(awk -v a="$before" -v b="$(sidecar_cpu)" 'BEGIN { print b - a }')}" > "$work/$mode.cpu"
done

python3 - "$work" "$RATE" "$DURATION" "${THREADS:-2}" <<'PY'
import json, os, sys, datetime
work, rate, duration, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
runs = {m: json.load(open(f"{work}/{m}.json")) for m in ("direct", "http", "grpc")}
cpu = {m: json.load(open(f"{work}/{m}.cpu"))["cpu"] for m in runs}
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"### Sidecar benchmark, {datetime.date.today()}\n")
print(f"- command: `bash scripts/bench-sidecar.sh` ({rate} req/s for {duration} s per path, 1 KiB bodies, loopback, open loop; load generator on {threads} thread(s))")
print(f"- machine: {model}, {os.cpu_count()} cores\n")
print("| path | requests | ok | p50 | p90 | p99 | added p50 | added p90 | added p99 | sidecar CPU per 1000 calls | max send lag |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
names = {"direct": "app -> app (direct)", "http": "HTTP through two sidecars", "grpc": "gRPC InvokeService through two sidecars"}
base = runs["direct"]
for mode, run in runs.items():
    added = ["" if mode == "direct" else f"{run[p] - base[p]:+.3f} ms" for p in ("p50_ms", "p90_ms", "p99_ms")]
    per_1000 = "" if mode == "direct" else f"{cpu[mode] / run['requests'] * 1000:.3f} CPU-s"
    print(f"| {names[mode]} | {run['requests']} | {run['ok']} | {run['p50_ms']:.3f} ms | {run['p90_ms']:.3f} ms | "
          f"{run['p99_ms']:.3f} ms | {' | '.join(added)} | {per_1000} | {run['max_send_lag_ms']:.1f} ms |")
g, h = runs["grpc"], runs["http"]
print(f"\ngRPC / HTTP added latency (p90): {(g['p90_ms'] - base['p90_ms']) / (h['p90_ms'] - base['p90_ms']):.2f}x; "
      f"CPU: {cpu['grpc'] / g['requests'] / (cpu['http'] / h['requests']):.2f}x.")
print("Dapr's published figures for comparison: +1.40 ms p90, 0.48 vCPU per 1000 req/s.")
PY
