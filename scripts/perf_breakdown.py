"""Where the CPU of a benchmark's phase went, from its `perf record`
(scripts/soak.sh and scripts/bench-sidecar.sh, with PERF=1).

    python3 perf_breakdown.py PERF_DATA PROCESSES FREQUENCY COUNT UNIT [TOP]

PERF_DATA is a whole-machine profile (`perf record -a -F FREQUENCY`),
PROCESSES "name pid" lines naming the processes measured (any other
process goes by its threads' names, "other: COMM/..."), COUNT how many
UNITs (images, calls) were served while it ran. Prints Markdown: CPU ms per UNIT by process and
by what ran (the kernel, libc, ONNX Runtime, wasm, or the crate of a Rust
symbol), then the hottest symbols. Wasm functions have names only when the
engine wrote a perf map (DAPR_WASM_PERF_MAP, which soak.sh sets).
"""
import collections
import re
import subprocess
import sys

data, processes, frequency, count, unit = sys.argv[1:6]
frequency, count = float(frequency), max(int(count), 1)
top = int(sys.argv[6]) if len(sys.argv) > 6 else 12
names = {}
for line in open(processes):
    name, pid = line.split()
    names[pid] = name

script = subprocess.run(
    ["perf", "script", "-i", data, "-F", "comm,pid,ip,sym,dso"],
    capture_output=True, text=True, check=True,
).stdout

# "comm  1234  7f00aa0011 symbol (dso)"; comm may hold spaces.
line_re = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)\s+(?P<ip>[0-9a-f]+)\s+(?P<sym>.*?)\s*\((?P<dso>[^()]*)\)\s*$"
)


def kind_of(dso, sym):
    """What ran: a library, the kernel, wasm, or the crate of a Rust symbol."""
    if dso.startswith("[kernel") or dso == "[unknown]" and sym.startswith("0xffff"):
        return "kernel"
    if "onnxruntime" in dso:
        return "ONNX Runtime"
    if "libc" in dso or "ld-linux" in dso:
        return "libc"
    if "perf-" in dso or dso.startswith("[JIT]") or sym.startswith("wasm["):
        return "wasm (guest)"
    if dso.endswith(".so") or ".so." in dso:
        return dso.rsplit("/", 1)[-1]
    # A Rust path: its first segment names the crate; anything else, its file.
    crate = re.match(r"[<&*\s]*(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)::", sym)
    return crate.group(1) if crate else dso.rsplit("/", 1)[-1]


rows = [m for m in map(line_re.match, script.splitlines()) if m and m["pid"] != "0"]  # 0: idle
# A process not named in PROCESSES goes by its threads' names.
comms = collections.defaultdict(set)
for m in rows:
    if m["pid"] not in names:
        comms[m["pid"]].add(m["comm"].strip())
for pid, threads in comms.items():
    names[pid] = "other: " + "/".join(sorted(threads))[:48]
samples = collections.Counter()
symbols = collections.Counter()
total = len(rows)
for m in rows:
    process = names[m["pid"]]
    sym = re.sub(r"\+0x[0-9a-f]+$", "", m["sym"]) or "?"
    dso = m["dso"]
    samples[(process, kind_of(dso, sym))] += 1
    symbols[(process, sym, dso.rsplit("/", 1)[-1])] += 1

ms_per_sample = 1000.0 / frequency


def per_unit(n):
    return n * ms_per_sample / count


shown = lambda n: n >= total / 100  # at least 1% of all samples
by_process = collections.Counter()
for (process, _), n in samples.items():
    by_process[process] += n

print(f"{total} samples at {frequency:.0f} Hz on every CPU (idle left out); {count} {unit}s; "
      f"{per_unit(total):.3f} CPU ms per {unit} in all.\n")
print(f"| process | CPU ms per {unit} | what ran (ms per {unit}; each at least 1% of the samples) |")
print("|---|---|---|")
for process, n in by_process.most_common():
    if not shown(n):
        continue
    kinds = sorted(((k, c) for (p, k), c in samples.items() if p == process), key=lambda kc: -kc[1])
    parts = ", ".join(f"{k} {per_unit(c):.3f}" for k, c in kinds if shown(c))
    print(f"| {process} | {per_unit(n):.3f} | {parts} |")
print(f"\nThe {top} hottest symbols:\n")
print(f"| process | symbol | where | ms per {unit} | share |")
print("|---|---|---|---|---|")
for (process, sym, dso), n in symbols.most_common(top):
    sym = sym.replace("|", "\\|")
    if len(sym) > 90:
        sym = sym[:87] + "..."
    print(f"| {process} | `{sym}` | {dso} | {per_unit(n):.3f} | {100.0 * n / max(total, 1):.1f}% |")
