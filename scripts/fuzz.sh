#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer) on the project's own code:
#   guest_decode     the guests' image decoding (grayscale and classify)
#   sidecar_request  the sidecar's HTTP API through its real router
#
#   bash scripts/fuzz.sh                   each target for FUZZ_SECONDS (60)
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh  the longer run (docs/performance.md)
#   bash scripts/fuzz.sh guest_decode      one target (what scripts/test.sh
#                                          runs; the sidecar's tests replay
#                                          sidecar_request's seeds)
#
# Starts from the committed seeds in fuzz/seeds/<target>; the corpus grows
# in $FUZZ_WORK (default target/fuzz-corpus), outside the repository.
#
# It builds the targets the way `cargo fuzz build -s none` does, with plain
# cargo (so nothing has to be installed first): libFuzzer's SanitizerCoverage
# instrumentation through stable rustc flags, for the host triple only (so
# build scripts and proc macros stay uninstrumented), and no sanitizer. A
# crash still stops the run and leaves the input in the artifacts folder.
# `cargo fuzz run -s none --release TARGET` runs the same targets by hand.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(guest_decode sidecar_request)

ensure_toolchain
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing"
work="${FUZZ_WORK:-$(target_dir_of_workspace)/fuzz-corpus}"
fuzz_target_dir="$(cd fuzz && target_dir_of_workspace)"
step "Building the fuzz targets (${targets[*]}; instrumented, release)"
bins=()
for target in "${targets[@]}"; do
    bins+=(--bin "$target")
    # sidecar_request needs the sidecar (behind the fuzz crate's feature).
    [[ $target != sidecar_request ]] || bins+=(--features sidecar)
done
cargo build --manifest-path fuzz/Cargo.toml --locked --release --target "$host" "${bins[@]}"
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "$work/$target-artifacts"
    step "Fuzzing $target for ${FUZZ_SECONDS}s"
    "$fuzz_target_dir/$host/release/$target" "$work/$target" "fuzz/seeds/$target" \
        -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="$work/$target-artifacts/" -print_final_stats=1 2>&1 \
        | grep -vE '^(#[0-9]+|".*# Uses|###### |INFO: |\s+NEW_FUNC)' || die "fuzz target $target failed (see above; the input is in $work/$target-artifacts)"
done
