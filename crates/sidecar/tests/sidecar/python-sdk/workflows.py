"""Workflows written with the official Dapr Python workflow SDK
(`dapr-ext-workflow`), run by its `WorkflowRuntime` worker and managed with
its `DaprWorkflowClient`, both through the sidecar on DAPR_GRPC_PORT; and
Dapr's workflow HTTP API on DAPR_HTTP_PORT.

PHASE picks what runs:
- `main` (the default): the checks below;
- `before-restart`: starts `durable` (an activity, then an external event,
  then another activity) and leaves it waiting for the event, and
  `sleeper` waiting for its 3 s timer;
- `after-restart`: against a restarted sidecar, raises the event and
  checks that `durable` ends with both activities' results, and that
  `sleeper`'s timer fires.

Every check prints `ok NAME` or `FAIL NAME: reason`; the last line is
`N passed, M failed`.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import dapr.ext.workflow as wf

import checks  # the harness beside this script

HTTP = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}"
WAIT = 60
# Which activities ran, and how often (checked by `durable`).
ran = []

runtime = wf.WorkflowRuntime()


@runtime.activity(name="hello")
def hello(ctx, name):
    ran.append(("hello", name))
    return f"Hello {name}!"


@runtime.activity(name="fail")
def fail(ctx, _):
    raise ValueError("the activity failed on purpose")


@runtime.workflow(name="sequence")
def sequence(ctx: wf.DaprWorkflowContext, names):
    greetings = []
    for name in names:
        greetings.append((yield ctx.call_activity(hello, input=name)))
    return greetings


@runtime.workflow(name="approval")
def approval(ctx: wf.DaprWorkflowContext, order):
    ctx.set_custom_status("waiting for approval")
    approved = ctx.wait_for_external_event("approve")
    timeout = ctx.create_timer(timedelta(seconds=WAIT))
    winner = yield wf.when_any([approved, timeout])
    if winner == timeout:
        return {"order": order, "approved": False}
    ctx.set_custom_status("approved")
    return {"order": order, "approved": True, "by": approved.get_result()}


@runtime.workflow(name="nap")
def nap(ctx: wf.DaprWorkflowContext, _):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=1))
    return (ctx.current_utc_datetime - start).total_seconds()


@runtime.workflow(name="child")
def child(ctx: wf.DaprWorkflowContext, n):
    doubled = yield ctx.call_activity(hello, input=str(n * 2))
    return doubled


@runtime.workflow(name="parent")
def parent(ctx: wf.DaprWorkflowContext, n):
    first = yield ctx.call_child_workflow(child, input=n, instance_id=f"{ctx.instance_id}-child")
    return ["parent", first]


@runtime.workflow(name="failing")
def failing(ctx: wf.DaprWorkflowContext, _):
    yield ctx.call_activity(fail, input=None)
    return "unreachable"


@runtime.workflow(name="counter")
def counter(ctx: wf.DaprWorkflowContext, n):
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return n


@runtime.workflow(name="forever")
def forever(ctx: wf.DaprWorkflowContext, _):
    yield ctx.wait_for_external_event("never")
    return "woken"


@runtime.workflow(name="durable")
def durable(ctx: wf.DaprWorkflowContext, _):
    before = yield ctx.call_activity(hello, input="before")
    ctx.set_custom_status("waiting for go")
    go = yield ctx.wait_for_external_event("go")
    after = yield ctx.call_activity(hello, input="after")
    return [before, go, after]


@runtime.workflow(name="sleeper")
def sleeper(ctx: wf.DaprWorkflowContext, _):
    yield ctx.create_timer(timedelta(seconds=3))
    return "slept"


client = wf.DaprWorkflowClient()


def until(what, condition, within=WAIT):
    return checks.until(what, condition, within)


def finished(instance_id):
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT)
    assert state is not None, f"{instance_id} is gone"
    return state


def status_is(instance_id, status):
    def reached():
        state = client.get_workflow_state(instance_id)
        return state if state and state.runtime_status == status else None

    return until(f"{instance_id} is {status.name}", reached)


def http(method, path, body=None):
    request = urllib.request.Request(HTTP + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def chained_activities():
    instance_id = client.schedule_new_workflow(sequence, input=["Tokyo", "Seattle", "London"])
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == [
        "Hello Tokyo!",
        "Hello Seattle!",
        "Hello London!",
    ], state.serialized_output
    assert json.loads(state.serialized_input) == ["Tokyo", "Seattle", "London"]


def external_event_and_custom_status():
    # A str custom status is kept as the workflow set it (the SDK encodes
    # any other value as JSON).
    instance_id = client.schedule_new_workflow(approval, input="order-7", instance_id="approval-1")
    assert instance_id == "approval-1"
    until(
        "the custom status",
        lambda: (client.get_workflow_state(instance_id).serialized_custom_status or "")
        == "waiting for approval",
    )
    client.raise_workflow_event(instance_id, "approve", data={"who": "alice"})
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == {
        "order": "order-7",
        "approved": True,
        "by": {"who": "alice"},
    }, state.serialized_output
    assert state.serialized_custom_status == "approved"


def durable_timer():
    instance_id = client.schedule_new_workflow(nap)
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    # The workflow's clock moved by the timer's second (replay-safe time).
    assert json.loads(state.serialized_output) >= 1.0, state.serialized_output


def child_workflow():
    instance_id = client.schedule_new_workflow(parent, input=21, instance_id="parent-1")
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == ["parent", "Hello 42!"], state.serialized_output
    child_state = client.get_workflow_state("parent-1-child")
    assert child_state.runtime_status == wf.WorkflowStatus.COMPLETED


def failed_activity_fails_the_workflow():
    instance_id = client.schedule_new_workflow(failing)
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.FAILED, state.runtime_status
    assert "the activity failed on purpose" in state.failure_details.message, state.failure_details


def continue_as_new():
    instance_id = client.schedule_new_workflow(counter, input=0)
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == 3, state.serialized_output


def terminate():
    instance_id = client.schedule_new_workflow(forever)
    status_is(instance_id, wf.WorkflowStatus.RUNNING)
    client.terminate_workflow(instance_id, output="stopped")
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.TERMINATED, state.runtime_status
    assert json.loads(state.serialized_output) == "stopped", state.serialized_output


def pause_and_resume():
    instance_id = client.schedule_new_workflow(forever)
    status_is(instance_id, wf.WorkflowStatus.RUNNING)
    client.pause_workflow(instance_id)
    status_is(instance_id, wf.WorkflowStatus.SUSPENDED)
    # Raised while suspended: it waits for the resume.
    client.raise_workflow_event(instance_id, "never", data="late")
    time.sleep(0.5)
    state = client.get_workflow_state(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.SUSPENDED, state.runtime_status
    client.resume_workflow(instance_id)
    state = finished(instance_id)
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == "woken"


def purge():
    instance_id = client.schedule_new_workflow(sequence, input=["x"])
    finished(instance_id)
    client.purge_workflow(instance_id)
    assert client.get_workflow_state(instance_id) is None


def http_api():
    status, body = http("POST", "/v1.0/workflows/dapr/sequence/start?instanceID=http-1", b'["HTTP"]')
    assert status == 202, (status, body)
    assert body == {"instanceID": "http-1"}, body

    def completed():
        status, body = http("GET", "/v1.0/workflows/dapr/http-1")
        assert status == 200, (status, body)
        return body if body["runtimeStatus"] == "COMPLETED" else None

    body = until("http-1 completes", completed)
    assert body["workflowName"] == "sequence", body
    assert json.loads(body["properties"]["dapr.workflow.output"]) == ["Hello HTTP!"], body
    assert json.loads(body["properties"]["dapr.workflow.input"]) == ["HTTP"], body
    assert body["createdAt"].endswith("Z"), body

    # Events, pause and terminate over HTTP too (the beta1 path).
    status, body = http("POST", "/v1.0-beta1/workflows/dapr/forever/start?instanceID=http-2")
    assert status == 202, (status, body)
    status_is("http-2", wf.WorkflowStatus.RUNNING)
    assert http("POST", "/v1.0-beta1/workflows/dapr/http-2/pause")[0] == 202
    status_is("http-2", wf.WorkflowStatus.SUSPENDED)
    assert http("POST", "/v1.0-beta1/workflows/dapr/http-2/resume")[0] == 202
    status_is("http-2", wf.WorkflowStatus.RUNNING)
    assert http("POST", "/v1.0/workflows/dapr/http-2/raiseEvent/never", b'"hi"')[0] == 202
    assert finished("http-2").runtime_status == wf.WorkflowStatus.COMPLETED
    assert http("POST", "/v1.0/workflows/dapr/http-2/purge")[0] == 202
    status, body = http("GET", "/v1.0/workflows/dapr/http-2")
    assert (status, body["errorCode"]) == (404, "ERR_INSTANCE_ID_NOT_FOUND"), (status, body)


def http_errors():
    status, body = http("POST", "/v1.0/workflows/dapr/sequence/start?instanceID=no%20spaces")
    assert (status, body["errorCode"]) == (400, "ERR_INSTANCE_ID_INVALID"), (status, body)
    status, body = http("POST", f"/v1.0/workflows/dapr/sequence/start?instanceID={'x' * 65}")
    assert (status, body["errorCode"]) == (400, "ERR_INSTANCE_ID_TOO_LONG"), (status, body)
    status, body = http("POST", "/v1.0/workflows/dapr/nobody/terminate")
    assert (status, body["errorCode"]) == (404, "ERR_INSTANCE_ID_NOT_FOUND"), (status, body)
    # A running instance is not purged.
    client.schedule_new_workflow(forever, instance_id="running-1")
    status_is("running-1", wf.WorkflowStatus.RUNNING)
    status, body = http("POST", "/v1.0/workflows/dapr/running-1/purge")
    assert (status, body["errorCode"]) == (500, "ERR_PURGE_WORKFLOW"), (status, body)
    client.terminate_workflow("running-1")
    finished("running-1")


def before_restart():
    client.schedule_new_workflow(durable, instance_id="durable-1")
    until(
        "durable-1 waits for its event",
        lambda: (client.get_workflow_state("durable-1").serialized_custom_status or "")
        == "waiting for go",
    )
    assert ran == [("hello", "before")], ran


def after_restart():
    state = client.get_workflow_state("durable-1")
    assert state is not None, "the instance did not outlive the restart"
    assert state.runtime_status == wf.WorkflowStatus.RUNNING, state.runtime_status
    client.raise_workflow_event("durable-1", "go", data="went")
    state = finished("durable-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == ["Hello before!", "went", "Hello after!"]
    # The first activity's result came from the stored history: it did not run again.
    assert ran == [("hello", "after")], ran


def timer_before_restart():
    client.schedule_new_workflow(sleeper, instance_id="sleeper-1")
    # Running means its first step is recorded, with its timer.
    status_is("sleeper-1", wf.WorkflowStatus.RUNNING)


def timer_after_restart():
    state = finished("sleeper-1")
    assert state.runtime_status == wf.WorkflowStatus.COMPLETED, state.runtime_status
    assert json.loads(state.serialized_output) == "slept", state.serialized_output


PHASES = {
    "main": [
        ("chained activities", chained_activities),
        ("an external event and the custom status", external_event_and_custom_status),
        ("a durable timer", durable_timer),
        ("a child workflow", child_workflow),
        ("a failed activity fails the workflow", failed_activity_fails_the_workflow),
        ("continue as new", continue_as_new),
        ("terminate", terminate),
        ("pause and resume", pause_and_resume),
        ("purge", purge),
        ("the HTTP workflow API", http_api),
        ("the HTTP workflow API's errors", http_errors),
    ],
    "before-restart": [
        ("a workflow waits for its event", before_restart),
        ("a workflow waits for its timer", timer_before_restart),
    ],
    "after-restart": [
        ("the workflow goes on after a restart", after_restart),
        ("the timer fires after a restart", timer_after_restart),
    ],
}

runtime.start()
try:
    for name, test in PHASES[os.environ.get("PHASE", "main")]:
        checks.run(name, test)
finally:
    runtime.shutdown()
checks.finish()
