#!/usr/bin/env bash
# Benchmarks (not part of the tests): builds the functions, then runs the
# function-host benchmark in release mode and prints Markdown for
# docs/performance.md. Extra arguments go to `cargo bench`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
build_functions
step "Building a variant of grayscale without simd128 (for comparison)"
mkdir -p build/bench
(cd functions && CARGO_TARGET_DIR="$REPO_ROOT/build/bench/target" \
    RUSTFLAGS="-C target-feature=-simd128" cargo build --release --locked -p grayscale)
cp -f build/bench/target/wasm32-wasip1/release/grayscale.wasm build/bench/grayscale-nosimd.wasm
command -v wasm-opt >/dev/null || apt_install binaryen
step "Optimising a copy of grayscale with binaryen's wasm-opt -O3 (for comparison)"
wasm-opt -O3 build/functions/grayscale.wasm -o build/bench/grayscale-wasm-opt.wasm
step "cargo bench -p function-host (release; the first build takes ~10 minutes on 2 cores)"
cargo bench --locked -p function-host --bench function_host "$@"
