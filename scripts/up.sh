#!/usr/bin/env bash
# Builds what is needed, fetches the model when it is missing, and starts the
# image services on 127.0.0.1: grayscale on :9004 and classify on :9003 (the
# seed's ports). Ctrl-C stops both.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
build_functions
cli="$(build_cli)"
fetch_models "$cli"

pids=()
stop() {
    trap - INT TERM EXIT
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

step "Starting image-api grayscale on :9004 and classify on :9003"
"$cli" image-api --function "grayscale=$FUNCTIONS_OUT/grayscale.wasm" --app-port 9004 "$@" &
pids+=($!)
"$cli" image-api --function "classify=$FUNCTIONS_OUT/classify.wasm" --app-port 9003 "$@" &
pids+=($!)
wait_for_port 9004 "image-api (grayscale)"
wait_for_port 9003 "image-api (classify)"
cat >&2 <<'USAGE'

Ready. Try:
  curl --data-binary @testdata/cat.jpg localhost:9004/api/image > gray.png
  curl --data-binary @testdata/cat.jpg localhost:9003/api/image
Ctrl-C stops both.
USAGE
# Stop everything as soon as either service exits.
wait -n "${pids[@]}"
