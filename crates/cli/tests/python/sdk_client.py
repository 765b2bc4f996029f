"""A Dapr app's client code, unchanged from what runs under daprd: the
official Python SDK's DaprClient() with nothing but DAPR_HTTP_PORT and
DAPR_GRPC_PORT set, against a sidecar of `dapr-wasm up`. It saves and reads
state and invokes image-api-classify over gRPC (argv[1] is the photo).
Run by crates/cli/tests/up.rs; prints the classification's label."""

import json
import os
import sys

os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = "grpc"
from dapr.clients import DaprClient  # noqa: E402 - reads the env at import

with DaprClient() as client:
    client.save_state("statestore", "python-sdk", "saved over gRPC")
    got = client.get_state("statestore", "python-sdk")
    assert got.data == b"saved over gRPC", got.data
    with open(sys.argv[1], "rb") as photo:
        answer = client.invoke_method(
            "image-api-classify", "api/image", data=photo.read(),
            content_type="image/jpeg", http_verb="POST")
    print(json.loads(answer.data)["label"])
