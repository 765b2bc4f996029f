#!/usr/bin/env bash
# Builds every guest function for wasm32-wasip1 into build/functions/ (the
# one build of the functions: the other scripts and `dapr-wasm up` run this).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
ensure_toolchain
build_functions
