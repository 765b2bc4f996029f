#!/usr/bin/env bash
# The README's first command: builds the wasm functions and dapr-wasm,
# fetches the model when it is missing, then runs the whole image demo with
# `dapr-wasm up -f deploy/dapr.yaml` (web-port on :8080, grayscale on :9004,
# classify on :9003, events on :9005, each with its own sidecar; Redis for
# pub/sub, started when none runs). Ctrl-C stops everything.
# Extra arguments go to `dapr-wasm up`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_toolchain
# The demo's pub/sub (deploy/components/pubsub.yaml) is Redis Streams.
ensure_redis
build_functions
cli="$(build_cli)"
fetch_models "$cli"
step "Starting the image demo (dapr-wasm up -f deploy/dapr.yaml)"
# The run file's commands say `dapr-wasm`; `up` runs itself for those.
exec "$cli" up -f deploy/dapr.yaml "$@"
