#!/usr/bin/env bash
# Builds what is needed and starts the services: today the grayscale image-api
# on 127.0.0.1:${APP_PORT:-9004}. Ctrl-C stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
build_functions
step "Building dapr-wasm"
cargo build --locked --bin dapr-wasm
target_dir="$(target_dir_of_workspace)"
step "Starting image-api (grayscale); try: curl --data-binary @photo.jpg localhost:${APP_PORT:-9004}/api/image > gray.png"
exec "$target_dir/debug/dapr-wasm" image-api --function "grayscale=$FUNCTIONS_OUT/grayscale.wasm" "$@"
