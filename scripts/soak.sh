#!/usr/bin/env bash
# Load, soak and the three-way comparison (a benchmark, not part of the
# tests). On the whole demo under `dapr-wasm up` (release build):
#
#  1. (a) each API alone through web-port at saturation (oha, CONCURRENCY
#     connections, PHASE long): images/s, p50/p99, CPU of all processes;
#  2. the soak: both APIs at once, CONCURRENCY connections each, for
#     SOAK_DURATION (>= 5 min), with every process's RSS and CPU sampled
#     every 5 s;
#  3. (b) the same functions process-per-request (`dapr-wasm run` per
#     image, 2 at a time, as the seed spawned a VM per request);
#  4. (c) the same work native, no wasm (2 threads).
#
# It fails if any request failed other than 503 busy, if the stats counter
# differs from the number of successful uploads, or if RSS grew over the
# soak. Prints Markdown for docs/performance.md; samples and raw results
# stay in $SOAK_OUT (default target/soak). For (a) it also splits the CPU
# per image by process.
#
#   bash scripts/soak.sh                       the recorded run
#   SOAK_DURATION=30s PHASE=10s bash scripts/soak.sh   a quick look
#   PERF=1 bash scripts/soak.sh                also profile (a) and (c) with
#       `perf record` (installed from Debian if missing; wasm functions are
#       named through DAPR_WASM_PERF_MAP) and print where each one's CPU goes
#       (perf costs a little CPU: record the figures from a run without it)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

SOAK_DURATION="${SOAK_DURATION:-5m}"
PHASE="${PHASE:-60s}"
CONCURRENCY="${CONCURRENCY:-8}"
PHOTO="$REPO_ROOT/testdata/cat.jpg"

ensure_toolchain
PERF="${PERF:-}"
PERF_HZ=499
if ! command -v oha >/dev/null; then
    step "Installing the load tool oha (cargo install, a few minutes)"
    cargo install oha --locked
fi
build_functions
build_for_bench -p dapr-wasm --bin dapr-wasm -p function-app --example native_throughput
bin="$(profile_dir "$PROFILE")"
fetch_models "$bin/dapr-wasm"

out="${SOAK_OUT:-$(target_dir_of_workspace)/soak}"
rm -rf "$out"
mkdir -p "$out/components" "$out/data"
ports=(18180 18181 18182 18183 18184 18185)
for port in "${ports[@]}"; do
    port_open "$port" && die "port $port is in use; stop what holds it first"
done
cat > "$out/components/statestore.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "$out/state.db"
YAML
cat > "$out/dapr.yaml" <<YAML
version: 1
common:
  resourcesPath: ./components
  env:
    DAPR_WASM_LOG: warn
apps:
- appID: web-port
  appDirPath: $REPO_ROOT
  appPort: ${ports[0]}
  daprHTTPPort: ${ports[1]}
  command: ["$bin/dapr-wasm", "web-port"]
- appID: image-api-grayscale
  appDirPath: $REPO_ROOT
  appPort: ${ports[2]}
  daprHTTPPort: ${ports[3]}
  command: ["$bin/dapr-wasm", "image-api", "--function", "grayscale=build/functions/grayscale.wasm"]
- appID: image-api-classify
  appDirPath: $REPO_ROOT
  appPort: ${ports[4]}
  daprHTTPPort: ${ports[5]}
  command: ["$bin/dapr-wasm", "image-api", "--function", "classify=build/functions/classify.wasm"]
YAML

step "Starting the demo"
# With PERF, every wasm engine writes /tmp/perf-PID.map for perf to read.
DAPR_WASM_PERF_MAP="${PERF:+1}" DAPR_WASM_DATA_DIR="$out/data" "$bin/dapr-wasm" up -f "$out/dapr.yaml" > "$out/up.log" 2>&1 &
up_pid=$!
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
    kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
    true
}
trap cleanup EXIT
for _ in $(seq 1 240); do
    grep -q "up: open" "$out/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$out/up.log"; die "dapr-wasm up exited"; }
    sleep 0.5
done
grep -q "up: open" "$out/up.log" || die "the demo did not start; see $out/up.log"
web="http://127.0.0.1:${ports[0]}"

# name pid lines for every process of the demo.
python3 - "$out/data/run" "$up_pid" > "$out/processes" <<'PY'
import json, os, sys
print("up", sys.argv[2])
for name in sorted(os.listdir(sys.argv[1])):
    r = json.load(open(os.path.join(sys.argv[1], name)))
    print(r["app_id"], r["app_pid"])
    print(r["app_id"] + "-sidecar", r["sidecar_pid"])
PY
pids=$(awk '{print $2}' "$out/processes" | tr '\n' ' ')
# CPU seconds used so far by every process of the demo.
demo_cpu() {
    # shellcheck disable=SC2086
    (cd /proc && awk -v t="$(getconf CLK_TCK)" '{ s += $14 + $15 } END { printf "%.2f", s / t }' \
        $(for p in $pids; do echo "$p/stat"; done))
}
# name ticks lines: each process's CPU so far, in clock ticks.
process_ticks() {
    while read -r name pid; do
        echo "$name $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    done < "$out/processes"
}
# Runs COMMAND, profiled into PERF_DATA when PERF is set.
profiled() { # PERF_DATA COMMAND...
    local data="$1"; shift
    if [ -z "$PERF" ]; then "$@"; return; fi
    perf_record_during "$data" "$PERF_HZ" "$out/perf.log" "$@"
}
stats_count() { curl -sf "$web/api/invokecount" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }
command -v curl >/dev/null || apt_install curl

load() { # API DURATION OUTPUT
    oha --no-tui -w -z "$2" -c "$CONCURRENCY" -m POST -H "api: $1" -H "content-type: image/jpeg" \
        -D "$PHOTO" --output-format json "$web/api/hello" > "$3"
}

step "Warm-up (5 s per API)"
load grayscale 5s "$out/warm-grayscale.json"
load classify 5s "$out/warm-classify.json"

for api in grayscale classify; do
    step "(a) $api through web-port, $CONCURRENCY connections, $PHASE"
    before=$(demo_cpu)
    process_ticks > "$out/a-$api.ticks-before"
    profiled "$out/a-$api.perf" load "$api" "$PHASE" "$out/a-$api.json"
    process_ticks > "$out/a-$api.ticks-after"
    echo "$before $(demo_cpu)" > "$out/a-$api.cpu"
done

step "Soak: both APIs at once, $CONCURRENCY connections each, $SOAK_DURATION"
count_before=$(stats_count)
(
    while true; do
        now=$(date +%s)
        while read -r name pid; do
            read -r rss < <(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
            echo "$now $name ${rss:-0} $ticks"
        done < "$out/processes"
        sleep 5
    done
) > "$out/samples" &
sampler_pid=$!
soak_cpu_before=$(demo_cpu)
load grayscale "$SOAK_DURATION" "$out/soak-grayscale.json" &
gray_load=$!
load classify "$SOAK_DURATION" "$out/soak-classify.json"
wait "$gray_load"
soak_cpu_after=$(demo_cpu)
kill "$sampler_pid"; sampler_pid=""
sleep 1
count_after=$(stats_count)
echo "$count_before $count_after $soak_cpu_before $soak_cpu_after" > "$out/soak.counts"
grep -E "exited|panicked" "$out/up.log" > "$out/exits" || true

for api in grayscale classify; do
    step "(b) $api process-per-request (dapr-wasm run), 2 at a time, $PHASE"
    python3 scripts/process_per_request.py "$bin/dapr-wasm" "build/functions/$api.wasm" "$PHOTO" \
        "${PHASE%s}" 2 > "$out/b-$api.json"
    step "(c) $api native, 2 threads, $PHASE"
    profiled "$out/c-$api.perf" \
        "$bin/examples/native_throughput" "$api" "$PHOTO" "${PHASE%s}" 2 > "$out/c-$api.json"
done

if [ -n "$PERF" ]; then
    echo "$PERF_HZ" > "$out/perf.hz"
    step "Reading the profiles (perf script, a minute or two)"
fi
python3 scripts/soak_report.py "$out" "$SOAK_DURATION" "$PHASE" "$CONCURRENCY"
