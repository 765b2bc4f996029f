#!/usr/bin/env bash
# Benchmark (not part of the tests): the latency a sidecar pair adds, and
# the CPU the two sidecars use, for the same call several ways in one run:
#
#   direct   app -> app                            POST http://127.0.0.1:$APP/echo
#   direct-h2  as direct, over HTTP/2 on the gRPC path's own client (hyper,
#              prior knowledge, one connection), the answer read to its end:
#              the baseline gRPC's added latency is also given against, as
#              Dapr's perf tests subtract a direct call on the same protocol
#   haproxy  app -> HAProxy -> HAProxy -> app      POST http://127.0.0.1:$PROXY_IN/echo
#   http     app -> sidecar -> sidecar -> app      POST .../v1.0/invoke/bench-target/method/echo
#   grpc     app -> sidecar -> sidecar -> app      gRPC InvokeService on the caller's gRPC port
#   nometrics  as http, through a second sidecar pair run with
#              --enable-metrics=false (what recording the metrics costs)
#   traced   as nometrics (--enable-metrics=false), through a third sidecar
#              pair that records every call (a Dapr Configuration with
#              samplingRate "1") and exports the spans over OTLP/HTTP to a
#              sink on $SINK: against nometrics, what tracing alone costs
#
# The HAProxy pair (Debian's haproxy, one thread each, keep-alive both
# ways) is the baseline: a plain, well-tuned proxy doing the same two hops.
#
# Each path runs at a fixed RATE (default 1000 req/s) for DURATION seconds
# (default 20), after a 3 s warm-up, with 1 KiB bodies, driven open-loop by
# crates/sidecar/examples/invoke_load.rs on THREADS worker threads (default
# 2). The paths take turns for ROUNDS rounds (default 3), so that a
# slow spell of a shared VM hits them alike; each path's percentiles pool
# all its calls, and gRPC / HTTP is also given for each round alone.
# PROFILE=dev uses the tests' build instead of a release build
# (build_for_bench in lib.sh), for a quick A/B of a change; recorded
# figures come from release. Prints Markdown for docs/performance.md.
# PERF=1 also profiles the last round of haproxy, http and grpc with
# `perf record` (installed from Debian if missing) and prints where each
# call's CPU goes, process by process (scripts/perf_breakdown.py); perf
# costs a little CPU, so record the figures from a run without it.
# PIN=1 gives the load generator CPU 0 to itself (taskset) and every
# process under test the other CPUs, as Dapr's perf tests run their load
# tester on a node of its own: the generator's own work (an HTTP/2 client
# costs more than an HTTP/1.1 one) then does not compete with the sidecars'.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

DURATION="${DURATION:-20}"
export PROFILE="${PROFILE:-release}"
RATE="${RATE:-1000}"
ROUNDS="${ROUNDS:-3}"
APP=18080 CALLER=13500 TARGET=13501 CALLER_GRPC=15001 TARGET_GRPC=15002 PROXY_IN=18081 PROXY_OUT=18082
BARE_CALLER=13502 BARE_TARGET=13503 BARE_CALLER_GRPC=15003 BARE_TARGET_GRPC=15004
TRACED_CALLER=13504 TRACED_TARGET=13505 TRACED_CALLER_GRPC=15005 TRACED_TARGET_GRPC=15006 SINK=14318

ensure_toolchain
command -v python3 >/dev/null || apt_install python3
command -v haproxy >/dev/null || apt_install haproxy
PERF="${PERF:-}" PERF_HZ=999
export PIN="${PIN:-}"
if [[ -n $PIN ]]; then
    (($(nproc) >= 2)) || die "PIN=1 needs 2 or more CPUs (the load generator gets one)"
    command -v taskset >/dev/null || apt_install util-linux
fi
build_for_bench -p dapr-wasm --bin dapr-wasm -p sidecar --example echo_app --example invoke_load
bin="$(profile_dir "$PROFILE")"

for port in "$APP" "$TARGET" "$CALLER" "$CALLER_GRPC" "$TARGET_GRPC" "$PROXY_IN" "$PROXY_OUT" \
    "$BARE_CALLER" "$BARE_TARGET" "$BARE_CALLER_GRPC" "$BARE_TARGET_GRPC" \
    "$TRACED_CALLER" "$TRACED_TARGET" "$TRACED_CALLER_GRPC" "$TRACED_TARGET_GRPC" "$SINK"; do
    port_open "$port" && die "port $port is in use; stop what holds it first"
done
work="$(mktemp -d)"
pids=()
sink_pid=
# (The span sink stops last, after the sidecars sent it their last spans.)
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    [[ -z $sink_pid ]] || kill "$sink_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# One HAProxy: LISTEN forwards every request to NEXT, keeping connections
# alive on both sides.
haproxy_hop() { # LISTEN NEXT NAME
    cat > "$work/$3.cfg" <<CFG
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend in
    bind 127.0.0.1:$1
    default_backend next
backend next
    server next 127.0.0.1:$2
CFG
    haproxy -db -f "$work/$3.cfg" &
}

"$bin/examples/echo_app" "$APP" & pids+=($!); echo_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-target \
    --app-port "$APP" --dapr-http-port "$TARGET" --metrics-port 0 --dapr-grpc-port "$TARGET_GRPC" & pids+=($!); target_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-caller \
    --dapr-http-port "$CALLER" --metrics-port 0 --dapr-grpc-port "$CALLER_GRPC" & pids+=($!); caller_pid=$!
# The same pair with nothing recorded.
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-bare-target \
    --app-port "$APP" --dapr-http-port "$BARE_TARGET" --enable-metrics=false --dapr-grpc-port "$BARE_TARGET_GRPC" & pids+=($!); bare_target_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-bare-caller \
    --dapr-http-port "$BARE_CALLER" --enable-metrics=false --dapr-grpc-port "$BARE_CALLER_GRPC" & pids+=($!); bare_caller_pid=$!
# The same pair recording every call. The sink takes OTLP/HTTP exports
# (answering as a collector does) and counts what it got.
python3 - "$SINK" "$work/sink.count" <<'PY' &
import http.server, sys
port, count_file = int(sys.argv[1]), sys.argv[2]
exports = received = 0
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global exports, received
        length = int(self.headers.get("content-length", 0))
        received += len(self.rfile.read(length))
        exports += 1
        with open(count_file, "w") as f:
            f.write(f"{exports} {received}\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
sink_pid=$!
cat > "$work/traced.yaml" <<CFG
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: traced
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: "127.0.0.1:$SINK"
      isSecure: false
      protocol: http
CFG
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-traced-target --config "$work/traced.yaml" \
    --app-port "$APP" --dapr-http-port "$TRACED_TARGET" --enable-metrics=false --dapr-grpc-port "$TRACED_TARGET_GRPC" & pids+=($!); traced_target_pid=$!
DAPR_WASM_DATA_DIR="$work" "$bin/dapr-wasm" --log-level warn sidecar --app-id bench-traced-caller --config "$work/traced.yaml" \
    --dapr-http-port "$TRACED_CALLER" --enable-metrics=false --dapr-grpc-port "$TRACED_CALLER_GRPC" & pids+=($!); traced_caller_pid=$!
haproxy_hop "$PROXY_OUT" "$APP" proxy-out; pids+=($!); proxy_out_pid=$!
haproxy_hop "$PROXY_IN" "$PROXY_OUT" proxy-in; pids+=($!); proxy_in_pid=$!
for port in "$APP" "$TARGET" "$CALLER" "$CALLER_GRPC" "$PROXY_IN" "$PROXY_OUT" "$BARE_CALLER" "$BARE_TARGET" \
    "$TRACED_CALLER" "$TRACED_TARGET" "$SINK"; do
    wait_for_port "$port" "port $port"
done
if [[ -n $PIN ]]; then
    for pid in "${pids[@]}" "$sink_pid"; do
        taskset -a -p -c "1-$(($(nproc) - 1))" "$pid" >/dev/null
    done
fi

declare -A targets=(
    [direct]="http://127.0.0.1:$APP/echo"
    [direct-h2]="http://127.0.0.1:$APP/echo"
    [haproxy]="http://127.0.0.1:$PROXY_IN/echo"
    [http]="http://127.0.0.1:$CALLER/v1.0/invoke/bench-target/method/echo"
    [grpc]="127.0.0.1:$CALLER_GRPC/bench-target"
    [nometrics]="http://127.0.0.1:$BARE_CALLER/v1.0/invoke/bench-bare-target/method/echo"
    [traced]="http://127.0.0.1:$TRACED_CALLER/v1.0/invoke/bench-traced-target/method/echo"
)
load() { # MODE SECONDS
    local client="$1"
    [[ $client == nometrics || $client == traced ]] && client=http # an HTTP client, to other sidecars
    ${PIN:+taskset -c 0} "$bin/examples/invoke_load" "$client" "${targets[$1]}" "$RATE" "$2" 1024
}
# CPU seconds (user + system) used so far by the pair of proxies of MODE.
pair_cpu() { # MODE
    local pair
    case "$1" in
        haproxy) pair=("$proxy_in_pid" "$proxy_out_pid") ;;
        nometrics) pair=("$bare_caller_pid" "$bare_target_pid") ;;
        traced) pair=("$traced_caller_pid" "$traced_target_pid") ;;
        *) pair=("$caller_pid" "$target_pid") ;;
    esac
    awk -v t="$(getconf CLK_TCK)" '{ s += $14 + $15 } END { printf "%.3f", s / t }' \
        "/proc/${pair[0]}/stat" "/proc/${pair[1]}/stat"
}

# The processes perf_breakdown.py names, with PERF.
cat > "$work/processes" <<PROCS
echo-app $echo_pid
caller-sidecar $caller_pid
target-sidecar $target_pid
haproxy-in $proxy_in_pid
haproxy-out $proxy_out_pid
PROCS
profiled_modes=" haproxy http grpc "

modes=(direct direct-h2 haproxy http grpc nometrics traced)
for round in $(seq 1 "$ROUNDS"); do
    for mode in "${modes[@]}"; do
        step "round $round/$ROUNDS, $mode: warm-up 3 s, then $RATE req/s for $DURATION s"
        load "$mode" 3 > /dev/null
        before=$(pair_cpu "$mode")
        if [[ -n $PERF && $round == "$ROUNDS" && $profiled_modes == *" $mode "* ]]; then
            LATENCIES="$work/$mode.latencies" perf_record_during "$work/$mode.perf" "$PERF_HZ" \
                "$work/perf.log" load "$mode" "$DURATION" >> "$work/$mode.runs"
        else
            LATENCIES="$work/$mode.latencies" load "$mode" "$DURATION" >> "$work/$mode.runs"
        fi
        awk -v a="$before" -v b="$(pair_cpu "$mode")" 'BEGIN { print b - a }' >> "$work/$mode.cpu"
    done
done

python3 - "$work" "$RATE" "$DURATION" "${THREADS:-2}" "$ROUNDS" <<'PY'
import json, os, sys, datetime, math
work, rate, duration, threads, rounds = sys.argv[1:6]
modes = ("direct", "direct-h2", "haproxy", "http", "grpc", "nometrics", "traced")
def pct(xs, p):
    return xs[max(1, math.ceil(p / 100 * len(xs))) - 1]
runs, per_round = {}, {}
for m in modes:
    lat = sorted(float(l) for l in open(f"{work}/{m}.latencies"))
    parts = per_round[m] = [json.loads(l) for l in open(f"{work}/{m}.runs")]
    cpu = sum(float(l) for l in open(f"{work}/{m}.cpu"))
    runs[m] = {"requests": len(lat), "ok": sum(r["ok"] for r in parts),
               "lag": max(r["max_send_lag_ms"] for r in parts),
               "cpu_per_1000": cpu / len(lat) * 1000,
               **{p: pct(lat, p) for p in (50, 90, 99)}}
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"### Sidecar benchmark, {datetime.date.today()}\n")
pinned = os.environ.get("PIN")
settings = ("PIN=1 " if pinned else "") + (f"THREADS={threads} " if threads != "2" else "")
print(f"- command: `{settings}bash scripts/bench-sidecar.sh` ({rate} req/s, {rounds} rounds of {duration} s per path taking turns, "
      f"1 KiB bodies, loopback, open loop; load generator on {threads} thread(s)"
      f"{', pinned to CPU 0, everything it calls to the other CPUs' if pinned else ''}; {os.environ['PROFILE']} profile)")
print(f"- machine: {model}, {os.cpu_count()} cores\n")
print("| path | requests | ok | p50 | p90 | p99 | added p50 | added p90 | added p99 | proxy pair CPU per 1000 calls | max send lag |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
names = {"direct": "app -> app (direct)", "direct-h2": "app -> app (direct, HTTP/2 on the gRPC client's stack)", "haproxy": "HTTP through two HAProxy (baseline)",
         "http": "HTTP through two sidecars", "grpc": "gRPC InvokeService through two sidecars",
         "nometrics": "HTTP through two sidecars, --enable-metrics=false",
         "traced": "HTTP through two sidecars, --enable-metrics=false, every call traced (OTLP/HTTP)"}
base = runs["direct"]
added = {m: {p: runs[m][p] - base[p] for p in (50, 90, 99)} for m in modes}
for m, r in runs.items():
    direct = m.startswith("direct")
    cells = ["" if direct else f"{added[m][p]:+.3f} ms" for p in (50, 90, 99)]
    cpu = "" if direct else f"{r['cpu_per_1000']:.3f} CPU-s"
    print(f"| {names[m]} | {r['requests']} | {r['ok']} | {r[50]:.3f} ms | {r[90]:.3f} ms | {r[99]:.3f} ms | "
          f"{' | '.join(cells)} | {cpu} | {r['lag']:.1f} ms |")
def ratio(a, b):
    return f"{a / b:.2f}x" if b > 0 else "n/a (baseline added nothing)"
print()
print(f"- gRPC / HTTP, added p90: {ratio(added['grpc'][90], added['http'][90])}; "
      f"CPU: {ratio(runs['grpc']['cpu_per_1000'], runs['http']['cpu_per_1000'])}")
# What the sidecars add to a gRPC call, against a direct call made with the
# same HTTP/2 client (Dapr's perf tests subtract a direct gRPC run).
grpc_h2 = {p: runs["grpc"][p] - runs["direct-h2"][p] for p in (50, 90, 99)}
print(f"- the same, gRPC's added latency against the direct HTTP/2 call (each path against a direct call on its own "
      f"client protocol): gRPC {grpc_h2[50]:+.3f} / {grpc_h2[90]:+.3f} / {grpc_h2[99]:+.3f} ms (p50 / p90 / p99), "
      f"HTTP {added['http'][50]:+.3f} / {added['http'][90]:+.3f} / {added['http'][99]:+.3f} ms; "
      f"gRPC / HTTP, added p90: {ratio(grpc_h2[90], added['http'][90])}")
# Each round alone: a slow spell of the VM shows as one round's ratio.
round_ratios = [ratio(g["p90_ms"] - d2["p90_ms"], h["p90_ms"] - d["p90_ms"])
                for g, d2, h, d in zip(*(per_round[m] for m in ("grpc", "direct-h2", "http", "direct")))]
print(f"- the same, round by round: {', '.join(round_ratios)}")
print(f"- direct calls, HTTP/2 against HTTP/1.1 (no sidecar; what the gRPC client's protocol costs by itself): "
      f"{runs['direct-h2'][50] - base[50]:+.3f} / {runs['direct-h2'][90] - base[90]:+.3f} / "
      f"{runs['direct-h2'][99] - base[99]:+.3f} ms (p50 / p90 / p99)")
print(f"- sidecars / HAProxy, added p90: {ratio(added['http'][90], added['haproxy'][90])} (HTTP), "
      f"{ratio(added['grpc'][90], added['haproxy'][90])} (gRPC); added p99: {ratio(added['http'][99], added['haproxy'][99])} (HTTP)")
print(f"- sidecars / HAProxy, CPU per call: {ratio(runs['http']['cpu_per_1000'], runs['haproxy']['cpu_per_1000'])} (HTTP), "
      f"{ratio(runs['grpc']['cpu_per_1000'], runs['haproxy']['cpu_per_1000'])} (gRPC)")
print(f"- metrics on / off (HTTP through two sidecars, tracing off in both): CPU per call {ratio(runs['http']['cpu_per_1000'], runs['nometrics']['cpu_per_1000'])}, "
      f"added p90 {ratio(added['http'][90], added['nometrics'][90])}")
exports, received = open(f"{work}/sink.count").read().split()
print(f"- tracing on / off (HTTP through two sidecars, metrics off in both; every call recorded and exported, the sink got "
      f"{exports} exports, {int(received) / 1e6:.1f} MB): CPU per call {ratio(runs['traced']['cpu_per_1000'], runs['nometrics']['cpu_per_1000'])}, "
      f"added p90 {ratio(added['traced'][90], added['nometrics'][90])}, added p99 {ratio(added['traced'][99], added['nometrics'][99])}")
print("- Dapr's published figures for comparison: +1.40 ms p90, +2.10 ms p99, 0.48 vCPU per 1000 req/s.")
PY

if [[ -n $PERF ]]; then
    for mode in $profiled_modes; do
        echo
        echo "#### Profile: $mode, round $ROUNDS (\`perf record -a -F $PERF_HZ\`)"
        echo
        calls=$(tail -1 "$work/$mode.runs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
        python3 scripts/perf_breakdown.py "$work/$mode.perf" "$work/processes" "$PERF_HZ" "$calls" call
    done
fi
