"""Process-per-request baseline of scripts/soak.sh: one `dapr-wasm run`
process per image, the way the seed's image-api-rs started a new VM for each
request. Runs CONCURRENCY at a time for SECONDS and prints one JSON line:
images, images per second, p50 and p99 latency, CPU seconds of the children.

    python3 process_per_request.py DAPR_WASM WASM PHOTO SECONDS CONCURRENCY
"""
import concurrent.futures
import json
import resource
import subprocess
import sys
import time

binary, wasm, photo, seconds, concurrency = sys.argv[1:6]
seconds, concurrency = float(seconds), int(concurrency)
data = open(photo, "rb").read()


def one():
    started = time.perf_counter()
    done = subprocess.run([binary, "run", wasm], input=data, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"dapr-wasm run failed ({done.returncode}): {done.stderr.decode()}")
    return (time.perf_counter() - started) * 1000


def worker(deadline):
    latencies = []
    while time.monotonic() < deadline:
        latencies.append(one())
    return latencies


one()  # warm the module cache and the page cache
cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_before = cpu.ru_utime + cpu.ru_stime
started = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    runs = [pool.submit(worker, started + seconds) for _ in range(concurrency)]
    latencies = sorted(l for run in runs for l in run.result())
elapsed = time.monotonic() - started
cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu_used = cpu.ru_utime + cpu.ru_stime - cpu_before


def quantile(q):
    return latencies[round((len(latencies) - 1) * q)]


print(json.dumps({
    "images": len(latencies),
    "seconds": round(elapsed, 2),
    "images_per_s": round(len(latencies) / elapsed, 2),
    "p50_ms": round(quantile(0.5), 2),
    "p99_ms": round(quantile(0.99), 2),
    "cpu_seconds": round(cpu_used, 2),
}))
