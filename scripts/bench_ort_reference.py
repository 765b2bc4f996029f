"""The reference for the classify benchmark: Python's onnxruntime, one thread,
on the same ONNX file and the same input the Rust benchmark uses.

Usage: python bench_ort_reference.py MODEL.onnx INPUT.f32 ITERATIONS
Prints one line: `median_ms=<float> p10_ms=<float> p90_ms=<float> top1=<int>`.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

model, input_path, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
x = np.fromfile(input_path, dtype="<f4").reshape(1, 3, 224, 224)
name = session.get_inputs()[0].name
for _ in range(3):
    logits = session.run(None, {name: x})[0]
times = []
for _ in range(iterations):
    start = time.perf_counter()
    logits = session.run(None, {name: x})[0]
    times.append(time.perf_counter() - start)
times.sort()
q = lambda p: times[round((len(times) - 1) * p)] * 1e3
print(f"median_ms={q(0.5):.4f} p10_ms={q(0.1):.4f} p90_ms={q(0.9):.4f} top1={int(logits.argmax())}")
