#!/usr/bin/env bash
# Builds every guest function for wasm32-wasip1 into build/functions/, and
# every wasi:http component for wasm32-wasip2 into build/components/ (the
# one build of the guests: the other scripts and `dapr-wasm up` run this).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_toolchain
build_functions
build_components
