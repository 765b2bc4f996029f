#!/usr/bin/env bash
# Benchmark (not part of the tests): the latency one sidecar pair adds, and
# the CPU the two sidecars use.
#
#   app -> app directly                      http://127.0.0.1:$APP/echo
#   app -> sidecar -> sidecar -> app         http://127.0.0.1:$CALLER/v1.0/invoke/bench-target/method/echo
#
# Each is driven by `oha` at a fixed 1000 requests/s for 30 s (after a 5 s
# warm-up) with 1 KiB bodies, in the same run. Prints Markdown for
# docs/performance.md. DURATION and RATE override 30s and 1000.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-30s}"
RATE="${RATE:-1000}"
APP=18080 CALLER=13500 TARGET=13501

ensure_toolchain
if ! command -v oha >/dev/null; then
    step "Installing the load tool oha (cargo install, a few minutes)"
    cargo install oha --locked
fi
command -v python3 >/dev/null || apt_install python3
step "Building dapr-wasm and the echo app (release)"
cargo build --release --locked -p dapr-wasm --bin dapr-wasm
cargo build --release --locked -p sidecar --example echo_app
bin="$(target_dir_of_workspace)/release"

work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
head -c 1024 /dev/urandom > "$work/payload"

"$bin/examples/echo_app" "$APP" & pids+=($!)
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar \
    --app-id bench-target --app-port "$APP" --dapr-http-port "$TARGET" & pids+=($!); target_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar \
    --app-id bench-caller --dapr-http-port "$CALLER" & pids+=($!); caller_pid=$!
for port in "$APP" "$TARGET" "$CALLER"; do wait_for_port "$port" "port $port"; done

direct="http://127.0.0.1:$APP/echo"
via="http://127.0.0.1:$CALLER/v1.0/invoke/bench-target/method/echo"
load() { # URL DURATION OUTPUT
    oha --no-tui --latency-correction -q "$RATE" -z "$2" -m POST -D "$work/payload" \
        --output-format json "$1" > "$3"
}
# CPU seconds (user + system) used so far by the two sidecars.
sidecar_cpu() {
    local ticks
    ticks=$(getconf CLK_TCK)
    awk -v t="$ticks" '{ s += $14 + $15 } END { printf "%.3f", s / t }' \
        "/proc/$caller_pid/stat" "/proc/$target_pid/stat"
}

step "Warm-up (5 s each)"
load "$direct" 5s "$work/warm1.json"
load "$via" 5s "$work/warm2.json"
step "Direct, $RATE req/s for $DURATION"
load "$direct" "$DURATION" "$work/direct.json"
step "Through two sidecars, $RATE req/s for $DURATION"
cpu_before=$(sidecar_cpu)
load "$via" "$DURATION" "$work/via.json"
cpu_after=$(sidecar_cpu)

python3 - "$work/direct.json" "$work/via.json" "$cpu_before" "$cpu_after" "$RATE" "$DURATION" <<'PY'
import json, sys, platform, os
direct, via = (json.load(open(p)) for p in sys.argv[1:3])
cpu = float(sys.argv[4]) - float(sys.argv[3])
rate, duration = sys.argv[5], sys.argv[6]
def ms(run, p): return run["latencyPercentiles"][p] * 1000
def total(run): return sum(int(v) for v in run["statusCodeDistribution"].values())
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("### Sidecar benchmark\n")
print(f"- command: `bash scripts/bench-sidecar.sh` (oha, {rate} req/s for {duration}, 1 KiB POST bodies, loopback)")
print(f"- machine: {model}, {os.cpu_count()} cores\n")
print("| path | requests | success | p50 | p90 | p99 |")
print("|---|---|---|---|---|---|")
for name, run in (("app -> app (direct)", direct), ("app -> sidecar -> sidecar -> app", via)):
    print(f"| {name} | {total(run)} | {run['summary']['successRate']*100:.2f}% | "
          f"{ms(run,'p50'):.3f} ms | {ms(run,'p90'):.3f} ms | {ms(run,'p99'):.3f} ms |")
print(f"| **added by the sidecar pair** | | | **+{ms(via,'p50')-ms(direct,'p50'):.3f} ms** | "
      f"**+{ms(via,'p90')-ms(direct,'p90'):.3f} ms** | **+{ms(via,'p99')-ms(direct,'p99'):.3f} ms** |")
requests = total(via)
print(f"\nCPU of both sidecars: {cpu:.2f} s for {requests} requests = "
      f"**{cpu / requests * 1000:.3f} CPU-seconds per 1000 requests** "
      f"(at {rate} req/s: {cpu / requests * float(rate):.3f} vCPU).")
print("Dapr's published figures for comparison: +1.40 ms p90, +2.10 ms p99, 0.48 vCPU per 1000 req/s.")
PY
