#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer) on the project's own code:
#   guest_decode     the guests' image decoding (grayscale and classify)
#   sidecar_request  the sidecar's HTTP API through its real router
#
#   bash scripts/fuzz.sh                   each target for FUZZ_SECONDS (60)
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh  the longer run (docs/performance.md)
#   bash scripts/fuzz.sh guest_decode      one target
#
# Starts from the committed seeds in fuzz/seeds/<target>; the corpus grows
# in $FUZZ_WORK (default target/fuzz-corpus), outside the repository.
# cargo fuzz needs nightly-only flags only for sanitizers, so the pinned
# stable toolchain runs it with no sanitizer (-s none) and RUSTC_BOOTSTRAP
# for the coverage flags; a crash still stops the run with the input.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(guest_decode sidecar_request)

ensure_toolchain
if ! command -v cargo-fuzz >/dev/null; then
    step "Installing cargo-fuzz (cargo install, a few minutes)"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1
work="${FUZZ_WORK:-$(target_dir_of_workspace)/fuzz-corpus}"
for target in "${targets[@]}"; do
    step "Building fuzz target $target"
    cargo fuzz build -s none --release "$target"
    mkdir -p "$work/$target" "$work/$target-artifacts"
    step "Fuzzing $target for ${FUZZ_SECONDS}s"
    cargo fuzz run -s none --release "$target" "$work/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="$work/$target-artifacts/" -print_final_stats=1 2>&1 \
        | grep -vE '^(#[0-9]+|".*# Uses|###### |INFO: )' || die "fuzz target $target failed (see above; the input is in $work/$target-artifacts)"
done
