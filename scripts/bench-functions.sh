#!/usr/bin/env bash
# Benchmark (not part of the tests): what a call of a function costs as a
# Dapr output binding (`bindings.wasm` in our sidecar) against the same
# function called directly on the function app, and how long a live reload
# takes. In one run, on the same cores:
#
#   direct   POST http://127.0.0.1:$APP/fn/FUNCTION          (dapr-wasm functions)
#   binding  POST http://127.0.0.1:$SIDECAR/v1.0/bindings/FUNCTION
#            {"operation":"execute","data":"xx..."}             (dapr-wasm sidecar)
#
# FUNCTION is functions/test-guests' `noop` (default) or `echo`: the host's
# per-call work is what is measured. Each path runs at RATE req/s (default
# 500) for DURATION s (default 10), after a 2 s warm-up, open loop, with
# BODY_BYTES (default 64) of data, for ROUNDS rounds (default 3) taking
# turns; CPU is the serving process's (the function app, or the sidecar).
# Then the wasm file is replaced RELOADS times (default 10), alternating two
# versions, and the time until `GET /fn` shows the new version is taken.
# Prints Markdown for docs/performance.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

FUNCTION="${FUNCTION:-noop}"
DURATION="${DURATION:-10}"
RATE="${RATE:-500}"
ROUNDS="${ROUNDS:-3}"
BODY_BYTES="${BODY_BYTES:-64}"
RELOADS="${RELOADS:-10}"
APP=19010 SIDECAR=13510 SIDECAR_GRPC=15010

ensure_toolchain
build_functions
command -v python3 >/dev/null || apt_install python3
build_for_bench -p dapr-wasm --bin dapr-wasm -p sidecar --example invoke_load
bin="$(profile_dir "$PROFILE")"

for port in "$APP" "$SIDECAR" "$SIDECAR_GRPC"; do
    port_open "$port" && die "port $port is in use; stop what holds it first"
done
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cp "$FUNCTIONS_OUT/$FUNCTION.wasm" "$work/f.wasm"
cat > "$work/functions.yaml" <<YAML
functions:
  - name: $FUNCTION
    wasm: f.wasm
YAML
mkdir "$work/resources"
cat > "$work/resources/binding.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: $FUNCTION
spec:
  type: bindings.wasm
  version: v1
  metadata:
  - name: url
    value: "file://$work/f.wasm"
YAML
export DAPR_WASM_CACHE_DIR="$work/cache" DAPR_WASM_DATA_DIR="$work"
"$bin/dapr-wasm" --log-level warn functions --config "$work/functions.yaml" --app-port "$APP" \
    --reload-interval 100ms & pids+=($!); app_pid=$!
"$bin/dapr-wasm" --log-level warn sidecar --app-id bench-binder --resources-path "$work/resources" \
    --dapr-http-port "$SIDECAR" --metrics-port 0 --dapr-grpc-port "$SIDECAR_GRPC" & pids+=($!); sidecar_pid=$!
for port in "$APP" "$SIDECAR"; do wait_for_port "$port" "port $port"; done

declare -A targets=(
    [direct]="http://127.0.0.1:$APP/fn/$FUNCTION"
    [binding]="http://127.0.0.1:$SIDECAR/v1.0/bindings/$FUNCTION"
)
declare -A pid_of=([direct]="$app_pid" [binding]="$sidecar_pid")
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
    for mode in direct binding; do
        step "round $round/$ROUNDS, $mode: warm-up 2 s, then $RATE req/s for $DURATION s"
        "$bin/examples/invoke_load" "$mode" "${targets[$mode]}" "$RATE" 2 "$BODY_BYTES" > /dev/null
        before=$(cpu_of "${pid_of[$mode]}")
        LATENCIES="$work/$mode.latencies" "$bin/examples/invoke_load" "$mode" "${targets[$mode]}" \
            "$RATE" "$DURATION" "$BODY_BYTES" >> "$work/$mode.runs"
        awk -v a="$before" -v b="$(cpu_of "${pid_of[$mode]}")" 'BEGIN { print b - a }' >> "$work/$mode.cpu"
    done
done

step "Live reload: $RELOADS replacements of the wasm file"
python3 - "$work" "$APP" "$RELOADS" "$FUNCTIONS_OUT" > "$work/reload.json" <<'PY'
import json, os, shutil, sys, time, urllib.request
work, port, reloads, functions = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
versions = [f"{functions}/echo.wasm", f"{functions}/noop.wasm"]
def version():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fn") as r:
        return json.load(r)["functions"][0]["version"]
times = []
for i in range(reloads):
    old = version()
    shutil.copy(versions[i % 2], f"{work}/f.new")
    started = time.monotonic()
    os.replace(f"{work}/f.new", f"{work}/f.wasm")
    while version() == old:
        time.sleep(0.002)
    times.append((time.monotonic() - started) * 1000)
print(json.dumps(sorted(times)))
PY

python3 - "$work" "$RATE" "$DURATION" "$ROUNDS" "$BODY_BYTES" "$FUNCTION" <<'PY'
import json, math, os, sys, datetime
work, rate, duration, rounds, body, function = sys.argv[1:7]
def pct(xs, p):
    return xs[max(1, math.ceil(p / 100 * len(xs))) - 1]
runs = {}
for m in ("direct", "binding"):
    lat = sorted(float(l) for l in open(f"{work}/{m}.latencies"))
    parts = [json.loads(l) for l in open(f"{work}/{m}.runs")]
    cpu = sum(float(l) for l in open(f"{work}/{m}.cpu"))
    runs[m] = {"requests": len(lat), "ok": sum(r["ok"] for r in parts),
               "cpu_us": cpu / len(lat) * 1e6, **{p: pct(lat, p) for p in (50, 90, 99)}}
failed = [f"{m}: {r['requests'] - r['ok']} of {r['requests']} calls failed" for m, r in runs.items() if r["ok"] != r["requests"]]
if failed:
    sys.exit("no figures, calls failed: " + "; ".join(failed))
reloads = json.load(open(f"{work}/reload.json"))
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"### Functions benchmark, {datetime.date.today()}\n")
print(f"- command: `bash scripts/bench-functions.sh` (function `{function}`, {rate} req/s, {rounds} rounds of "
      f"{duration} s per path taking turns, {body}-byte data, loopback, open loop)")
print(f"- machine: {model}, {os.cpu_count()} cores\n")
print("| path | requests | ok | p50 | p90 | p99 | CPU per call (serving process) |")
print("|---|---|---|---|---|---|---|")
names = {"direct": f"`POST /fn/{function}` on the function app (baseline)",
         "binding": f"`POST /v1.0/bindings/{function}` on the sidecar (`bindings.wasm`)"}
for m, r in runs.items():
    print(f"| {names[m]} | {r['requests']} | {r['ok']} | {r[50]:.3f} ms | {r[90]:.3f} ms | {r[99]:.3f} ms | {r['cpu_us']:.0f} µs |")
d, b = runs["direct"], runs["binding"]
print(f"\n- binding / direct: p50 {b[50] / d[50]:.2f}x, p99 {b[99] / d[99]:.2f}x, CPU per call {b['cpu_us'] / d['cpu_us']:.2f}x")
print(f"- live reload, file replaced to new version served (`GET /fn`), {len(reloads)} times: "
      f"median {pct(reloads, 50):.0f} ms, max {reloads[-1]:.0f} ms (polling every 100 ms)")
print("- anchor: Dapr's wazero-based `bindings.wasm`, about 38 µs and 146 KB per call (components-contrib#4530)")
PY
