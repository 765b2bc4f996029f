#!/usr/bin/env bash
# The classify benchmark (not part of the tests): tract vs ONNX Runtime vs
# Python's onnxruntime per inference, one photo end to end by stage, and
# each model (Lite0, Lite1, Lite2) side by side: inference, end to end,
# throughput on 2 cores and memory at rest.
# Prints Markdown for docs/performance.md. Extra arguments go to `cargo bench`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
build_functions
fetch_models "$(build_cli)"

# The reference: the same ONNX Runtime release, from PyPI, in a venv.
venv="$(target_dir_of_workspace)/bench-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
    step "Python reference: onnxruntime==1.22.1 and numpy in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime==1.22.1 numpy==2.2.6
fi
export BENCH_PYTHON="$venv/bin/python"

step "cargo bench -p function-app --bench classify (release; the first build takes ~10 minutes on 2 cores)"
cargo bench --locked -p function-app --features tract --bench classify "$@"
