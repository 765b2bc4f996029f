"""A gRPC app written with the official Dapr Python SDK's app extension
(`dapr.ext.grpc`, PyPI `dapr[grpc]`, pinned in
scripts/test-requirements.txt), as its docs write one: an `App` with a
method, two topic subscriptions, an input binding (`tick`) and a job
handler (`brew`), served on
APP_PORT for a sidecar
started with `--app-protocol grpc`.

crates/sidecar/tests/sidecar/python_sdk.rs starts it and its sidecar. Each
event (and binding event) the app gets is appended to EVENTS_FILE as one
JSON line; its data's
`answer` decides the reply (`retry-once`: RETRY the first time, `drop`:
`retry`: always RETRY; `drop`: DROP; SUCCESS otherwise).
"""

import base64
import json
import os

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import (
    App,
    BindingRequest,
    InvokeMethodRequest,
    InvokeMethodResponse,
    JobEvent,
    SubscriptionMessage,
)

app = App()
events_file = os.environ["EVENTS_FILE"]
retried = set()


@app.method(name="echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    return InvokeMethodResponse(b"echo: " + request.data, "text/plain")


def record(event: SubscriptionMessage) -> dict:
    line = {
        "id": event.id(),
        "type": event.type(),
        "source": event.source(),
        "content_type": event.data_content_type(),
        "topic": event.topic(),
        "pubsub": event.pubsub_name(),
        "data": event.data(),
        "topic_extension": event.extensions().get("topic"),
        "token": event.metadata().get("dapr-api-token"),
    }
    with open(events_file, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return line


@app.subscribe(pubsub_name="pubsub", topic="orders", dead_letter_topic="orders-dead")
def orders(event: SubscriptionMessage) -> TopicEventResponse:
    line = record(event)
    answer = line["data"].get("answer")
    if answer == "retry-once" and line["id"] not in retried:
        retried.add(line["id"])
        return TopicEventResponse("retry")
    if answer == "retry":
        return TopicEventResponse("retry")
    if answer == "drop":
        return TopicEventResponse("drop")
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="orders-dead")
def dead_letters(event: SubscriptionMessage) -> None:
    record(event)


@app.binding("tick")
def tick(request: BindingRequest) -> None:
    line = {"binding": "tick", "data": request.text(), "metadata": request.binding_metadata}
    with open(events_file, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


@app.job_event("brew")
def brew(event: JobEvent) -> None:
    line = {"job": event.name, "data": base64.b64encode(event.data).decode()}
    with open(events_file, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


app.run(int(os.environ["APP_PORT"]))
