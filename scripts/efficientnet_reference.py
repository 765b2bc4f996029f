#!/usr/bin/env python3
"""An independent EfficientNet-Lite forward pass, to check our converter.

    python efficientnet_reference.py WEIGHTS.pth MODEL INPUT.f32 OUTPUT.f32

Reads the legacy PyTorch pickle with Python's own pickle module (not our
Rust reader), builds the network from TensorFlow's published EfficientNet-Lite
definition (the block table, each variant's width and depth coefficients, and
the Lite rule that the stem and head are not scaled), checks every tensor's
shape against it, and runs the input (float32 NCHW, little-endian) through
it in float64 with unfolded batch norm and TensorFlow "same" padding. Writes
the 1000 logits as float32.

crates/models/tests/convert.rs runs it (with numpy from build/test-venv) and
compares its logits with the converted ONNX model's.
"""

import collections
import math
import pickle
import struct
import sys

import numpy as np

# TensorFlow's efficientnet_lite_builder: (width, depth, resolution).
VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}
# TensorFlow's block strings: repeats, kernel, stride, expansion, in, out.
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPSILON = 1e-3
DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "DoubleStorage": np.float64}


def round_filters(filters, width):
    new = max(8, int(filters * width + 4) // 8 * 8)
    if new < 0.9 * filters * width:
        new += 8
    return int(new)


def read_state_dict(path):
    """The legacy (non-zip) torch.save format: three pickles (magic,
    protocol, system info), the state dict pickle whose tensors point at
    storages by key, the list of keys, then each storage's raw data."""

    storages = {}

    class Storage:
        def __init__(self, dtype, key):
            self.dtype, self.key = dtype, key

    def rebuild(storage, offset, size, stride, *rest):
        return ("tensor", storage, offset, tuple(size), tuple(stride))

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return rebuild
            if module == "torch" and name in DTYPES:
                return name
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

        def persistent_load(self, pid):
            kind, storage_type, key, _location, _size = pid[:5]
            assert kind == "storage"
            storages.setdefault(key, Storage(DTYPES[storage_type], key))
            return storages[key]

    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)
        state = Unpickler(f).load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype = storages[key].dtype
            data[key] = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
    tensors = {}
    for name, (_, storage, offset, size, stride) in state.items():
        flat = data[storage.key]
        itemsize = flat.itemsize
        tensors[name] = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * itemsize for s in stride]
        ).astype(np.float64)
    return tensors


def same_pad(x, kernel, stride):
    size = x.shape[1]
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return np.pad(x, ((0, 0), (before, total - before), (before, total - before))), out


def conv(x, w, stride, depthwise):
    kernel = w.shape[2]
    xp, out = same_pad(x, kernel, stride)
    span = stride * (out - 1) + 1
    y = np.zeros((w.shape[0], out, out))
    for ky in range(kernel):
        for kx in range(kernel):
            window = xp[:, ky:ky + span:stride, kx:kx + span:stride]
            if depthwise:
                y += w[:, 0, ky, kx][:, None, None] * window
            else:
                y += np.einsum("oc,chw->ohw", w[:, :, ky, kx], window)
    return y


def batch_norm(x, t, prefix):
    g, b = t[prefix + ".weight"], t[prefix + ".bias"]
    m, v = t[prefix + ".running_mean"], t[prefix + ".running_var"]
    return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + BN_EPSILON)) * g[:, None, None] + b[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def expect_shape(t, name, shape):
    if tuple(t[name].shape) != tuple(shape):
        sys.exit(f"{name}: shape {tuple(t[name].shape)}, the published definition says {tuple(shape)}")


def forward(t, model, x):
    width, depth, _ = VARIANTS[model]
    expect_shape(t, "_conv_stem.weight", (32, 3, 3, 3))
    x = relu6(batch_norm(conv(x, t["_conv_stem.weight"], 2, False), t, "_bn0"))
    index = 0
    for stage, (repeats, kernel, stride, expand, cin, cout) in enumerate(BLOCKS):
        cin = 32 if stage == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        if stage not in (0, len(BLOCKS) - 1):
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            p = f"_blocks.{index}."
            block_in, channels = x, (cin if r == 0 else cout)
            hidden = channels * expand
            if expand != 1:
                expect_shape(t, p + "_expand_conv.weight", (hidden, channels, 1, 1))
                x = relu6(batch_norm(conv(x, t[p + "_expand_conv.weight"], 1, False), t, p + "_bn0"))
            expect_shape(t, p + "_depthwise_conv.weight", (hidden, 1, kernel, kernel))
            x = relu6(batch_norm(conv(x, t[p + "_depthwise_conv.weight"], stride if r == 0 else 1, True), t, p + "_bn1"))
            expect_shape(t, p + "_project_conv.weight", (cout, hidden, 1, 1))
            x = batch_norm(conv(x, t[p + "_project_conv.weight"], 1, False), t, p + "_bn2")
            if (r > 0 or stride == 1) and channels == cout:
                x = x + block_in
            index += 1
    if f"_blocks.{index}._depthwise_conv.weight" in t:
        sys.exit(f"the weights have more than the {index} blocks of {model}")
    x = relu6(batch_norm(conv(x, t["_conv_head.weight"], 1, False), t, "_bn1"))
    pooled = x.mean(axis=(1, 2))
    return t["_fc.weight"] @ pooled + t["_fc.bias"]


def main():
    weights, model, input_path, output_path = sys.argv[1:5]
    side = VARIANTS[model][2]
    x = np.fromfile(input_path, dtype="<f4").astype(np.float64)
    if x.size != 3 * side * side:
        sys.exit(f"{input_path}: {x.size} floats, {model} takes 3x{side}x{side}")
    logits = forward(read_state_dict(weights), model, x.reshape(3, side, side))
    logits.astype("<f4").tofile(output_path)


if __name__ == "__main__":
    main()
