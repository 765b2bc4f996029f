"""Reads what scripts/soak.sh measured and prints the Markdown for
docs/performance.md. Exits non-zero if the soak's requirements failed:
an error other than 503 busy, a stats counter that differs from the
successful uploads, a process that exited, or RSS that grew.

    python3 soak_report.py OUT SOAK_DURATION PHASE CONCURRENCY
"""
import collections
import datetime
import json
import os
import subprocess
import sys

out, soak_duration, phase, concurrency = sys.argv[1:5]
failures = []


def load(name):
    return json.load(open(os.path.join(out, name)))


def oha_summary(run):
    codes = {int(k): v for k, v in run["statusCodeDistribution"].items()}
    errors = run.get("errorDistribution") or {}
    seconds = run["summary"]["total"]
    ok = codes.get(200, 0)
    return {
        "ok": ok,
        "codes": codes,
        "errors": errors,
        "images_per_s": ok / seconds,
        "p50_ms": run["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": run["latencyPercentiles"]["p99"] * 1000,
        "seconds": seconds,
    }


def cpu_of(name):
    before, after = open(os.path.join(out, name)).read().split()
    return float(after) - float(before)


model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
today = datetime.date.today().isoformat()
print(f"### Load, soak and the three-way comparison ({today})\n")
print(f"- command: `bash scripts/soak.sh` (oha, {concurrency} connections per API, "
      f"{phase} per comparison phase, soak {soak_duration}; photo testdata/cat.jpg, 451x300 JPEG)")
print(f"- machine: {model}, {os.cpu_count()} cores; release build; the load tool runs on the same 2 cores\n")

print("#### Three ways to serve the same function, same photo, same run\n")
print("| API | way | images/s | p50 | p99 | CPU (vCPU) | CPU ms per image | images/s vs native |")
print("|---|---|---|---|---|---|---|---|")
for api in ("grayscale", "classify"):
    a = oha_summary(load(f"a-{api}.json"))
    a_cpu = cpu_of(f"a-{api}.cpu")
    b, c = load(f"b-{api}.json"), load(f"c-{api}.json")
    rows = [
        ("(a) dapr-wasm system: web-port, 2 sidecars, image app", a["images_per_s"], a["p50_ms"], a["p99_ms"],
         a_cpu / a["seconds"], a_cpu / max(a["ok"], 1) * 1000),
        ("(b) process per request (`dapr-wasm run`, 2 at a time)", b["images_per_s"], b["p50_ms"], b["p99_ms"],
         b["cpu_seconds"] / b["seconds"], b["cpu_seconds"] / b["images"] * 1000),
        ("(c) native Rust, no wasm, no HTTP (2 threads)", c["images_per_s"], c["p50_ms"], c["p99_ms"],
         c["cpu_seconds"] / c["seconds"], c["cpu_seconds"] / c["images"] * 1000),
    ]
    for way, ips, p50, p99, vcpu, per_image in rows:
        print(f"| {api} | {way} | {ips:.1f} | {p50:.1f} ms | {p99:.1f} ms | {vcpu:.2f} | {per_image:.1f} | "
              f"{ips / c['images_per_s']:.2f}x |")
    bad = {k: v for k, v in a["codes"].items() if k != 200}
    if bad or a["errors"]:
        failures.append(f"(a) {api}: statuses {bad}, errors {a['errors']}")



def ticks(name):
    return {n: int(t) for n, t in (line.split() for line in open(os.path.join(out, name)))}


hz = os.sysconf("SC_CLK_TCK")
names = [line.split()[0] for line in open(os.path.join(out, "processes"))]
print("\n#### (a)'s CPU per image, by process\n")
print("| API | " + " | ".join(names) + " | all | native (c) |")
print("|---|" + "---|" * (len(names) + 2))
for api in ("grayscale", "classify"):
    before, after = ticks(f"a-{api}.ticks-before"), ticks(f"a-{api}.ticks-after")
    ok = max(oha_summary(load(f"a-{api}.json"))["ok"], 1)
    cells = [(after.get(n, 0) - before.get(n, 0)) / hz / ok * 1000 for n in names]
    c = load(f"c-{api}.json")
    print(f"| {api} | " + " | ".join(f"{v:.2f}" for v in cells) +
          f" | {sum(cells):.2f} | {c['cpu_seconds'] / c['images'] * 1000:.2f} |")
print("\nCPU ms per image, from each process's /proc/PID/stat before and after the phase.")

if os.path.exists(os.path.join(out, "perf.hz")):
    frequency = open(os.path.join(out, "perf.hz")).read().strip()
    for api in ("grayscale", "classify"):
        for phase, what, images in (
            ("a", "(a) through the system", oha_summary(load(f"a-{api}.json"))["ok"]),
            ("c", "(c) native", load(f"c-{api}.json")["images"]),
        ):
            print(f"\n#### Profile: {api}, {what} (`perf record -a -F {frequency}`)\n")
            sys.stdout.flush()
            subprocess.run(
                [sys.executable, os.path.join(os.path.dirname(__file__), "perf_breakdown.py"),
                 os.path.join(out, f"{phase}-{api}.perf"), os.path.join(out, "processes"),
                 frequency, str(images), "image"],
                check=True,
            )

print(f"\n#### Soak: both APIs at once for {soak_duration}\n")
count_before, count_after, cpu_before, cpu_after = open(os.path.join(out, "soak.counts")).read().split()
soak = {api: oha_summary(load(f"soak-{api}.json")) for api in ("grayscale", "classify")}
print("| API | requests | 200 | 503 busy | other | images/s | p50 | p99 |")
print("|---|---|---|---|---|---|---|---|")
for api, s in soak.items():
    busy = s["codes"].get(503, 0)
    other = sum(v for k, v in s["codes"].items() if k not in (200, 503)) + sum(s["errors"].values())
    total = sum(s["codes"].values()) + sum(s["errors"].values())
    print(f"| {api} | {total} | {s['ok']} | {busy} | {other} | {s['images_per_s']:.1f} | "
          f"{s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms |")
    if other:
        failures.append(f"soak {api}: unexpected answers {s['codes']} {s['errors']}")
successes = sum(s["ok"] for s in soak.values())
counted = int(count_after) - int(count_before)
soak_seconds = max(s["seconds"] for s in soak.values())
print(f"\n- CPU of all seven processes: {(float(cpu_after) - float(cpu_before)) / soak_seconds:.2f} vCPU "
      f"of 2 (oha used the rest).")
print(f"- Stats counter: {counted} added during the soak; successful uploads: {successes} "
      f"({'equal' if counted == successes else 'DIFFERENT'}).")
if counted != successes:
    failures.append(f"the stats counter added {counted}, but {successes} uploads succeeded")

samples = collections.defaultdict(list)
for line in open(os.path.join(out, "samples")):
    t, name, rss, _ticks = line.split()
    if int(rss) > 0:
        samples[name].append((int(t), int(rss) / 1024))
print("\n| process | RSS first minute | RSS last minute | peak | trend |")
print("|---|---|---|---|---|")
for name, points in sorted(samples.items()):
    start = points[0][0]
    first = [r for t, r in points if t - start < 60]
    last = [r for t, r in points if t - points[-1][0] > -60]
    first_mean, last_mean = sum(first) / len(first), sum(last) / len(last)
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points) or 1
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / var * 60
    print(f"| {name} | {first_mean:.1f} MiB | {last_mean:.1f} MiB | {max(r for _, r in points):.1f} MiB | "
          f"{slope:+.2f} MiB/min |")
    if last_mean > first_mean * 1.10 + 4:
        failures.append(f"{name}: RSS grew from {first_mean:.1f} to {last_mean:.1f} MiB")

exits = open(os.path.join(out, "exits")).read().strip()
if exits:
    failures.append(f"processes exited: {exits}")
print()
if failures:
    print("**FAILED:** " + "; ".join(failures))
    sys.exit(1)
print("All soak requirements held: no unexpected errors, counter equal to successes, RSS flat, no exits.")
