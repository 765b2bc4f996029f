"""The official Dapr Python SDK (PyPI `dapr`, pinned in
scripts/test-requirements.txt) against a real dapr-wasm sidecar, with the
SDK's default transport: gRPC on DAPR_GRPC_PORT.

crates/sidecar/tests/python_sdk.rs starts the sidecars and runs this with
DAPR_HTTP_PORT and DAPR_GRPC_PORT of the caller's sidecar, TARGET_APP_ID
(an HTTP echo app behind another sidecar) and
DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc. Every check prints `ok NAME` or
`FAIL NAME: reason`; the last line is `N passed, M failed`.
"""

import json
import os
import queue
import socket
import sys
import threading
import time

import grpc
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._response import UnlockResponseStatus
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

import checks  # the harness beside this script

STORE = "statestore"
SECRETS = "localsecrets"
TARGET = os.environ["TARGET_APP_ID"]


def check(name):
    def register(test):
        checks.run(name, test)
        return test

    return register


def dapr_error(err):
    """The SDK wraps some calls' errors in DaprGrpcError, others not."""
    return err if isinstance(err, DaprGrpcError) else DaprGrpcError(err)


def expect_grpc_error(call, code, reason):
    try:
        call()
    except grpc.RpcError as raw:
        err = dapr_error(raw)
        assert err.code() == code, f"code {err.code()}, wanted {code}: {err.details()}"
        assert err.error_code() == reason, f"reason {err.error_code()}, wanted {reason}"
        return err
    raise AssertionError(f"no error, wanted {code}")


client = DaprClient()

# A stream read that never returns fails the run instead of hanging it.
watchdog = threading.Timer(120, lambda: (print("FAIL: stuck for 120 s", flush=True), os._exit(3)))
watchdog.daemon = True
watchdog.start()


@check("save and get with an etag")
def _():
    client.save_state(STORE, "py-order", "first")
    got = client.get_state(STORE, "py-order")
    assert got.data == b"first", got.data
    assert got.etag, "an etag"
    client.save_state(STORE, "py-order", "second", etag=got.etag)
    assert client.get_state(STORE, "py-order").data == b"second"


@check("an etag conflict is ABORTED")
def _():
    client.save_state(STORE, "py-conflict", "v1")
    stale = client.get_state(STORE, "py-conflict").etag
    client.save_state(STORE, "py-conflict", "v2", etag=stale)
    expect_grpc_error(
        lambda: client.save_state(STORE, "py-conflict", "v3", etag=stale),
        grpc.StatusCode.ABORTED, "DAPR_STATE_ETAG_MISMATCH")
    expect_grpc_error(
        lambda: client.delete_state(STORE, "py-conflict", etag=stale),
        grpc.StatusCode.ABORTED, "DAPR_STATE_ETAG_MISMATCH")
    assert client.get_state(STORE, "py-conflict").data == b"v2"


@check("first-write refuses an existing key without an etag")
def _():
    client.save_state(STORE, "py-first", "taken")
    options = StateOptions(concurrency=Concurrency.first_write)
    expect_grpc_error(
        lambda: client.save_state(STORE, "py-first", "again", options=options),
        grpc.StatusCode.ABORTED, "DAPR_STATE_ETAG_MISMATCH")


@check("bulk save and bulk get")
def _():
    client.save_bulk_state(STORE, [StateItem("py-b1", "one"), StateItem("py-b2", "two")])
    items = client.get_bulk_state(STORE, ["py-b1", "py-b2", "py-absent"]).items
    by_key = {item.key: item for item in items}
    assert by_key["py-b1"].data == b"one" and by_key["py-b1"].etag
    assert by_key["py-b2"].data == b"two"
    assert by_key["py-absent"].data == b"" and not by_key["py-absent"].etag


@check("a transaction applies upserts and deletes together")
def _():
    client.save_state(STORE, "py-gone", "soon")
    client.execute_state_transaction(STORE, [
        TransactionalStateOperation(key="py-t1", data="t1"),
        TransactionalStateOperation(key="py-gone", data="", operation_type=TransactionOperationType.delete),
    ])
    assert client.get_state(STORE, "py-t1").data == b"t1"
    assert client.get_state(STORE, "py-gone").data == b""


@check("ttlInSeconds expires a key")
def _():
    client.save_state(STORE, "py-brief", "here", state_metadata={"ttlInSeconds": "1"})
    assert client.get_state(STORE, "py-brief").data == b"here"
    deadline = time.monotonic() + 10
    while client.get_state(STORE, "py-brief").data:
        assert time.monotonic() < deadline, "still there after 10 s"
        time.sleep(0.1)  # a poll with a deadline


@check("delete")
def _():
    client.save_state(STORE, "py-del", "x")
    client.delete_state(STORE, "py-del")
    assert client.get_state(STORE, "py-del").data == b""
    client.delete_state(STORE, "py-never-there")


@check("an unknown store is INVALID_ARGUMENT")
def _():
    expect_grpc_error(lambda: client.get_state("no-such-store", "k"),
                      grpc.StatusCode.INVALID_ARGUMENT, "DAPR_STATE_NOT_FOUND")


@check("secrets")
def _():
    assert client.get_secret(SECRETS, "token").secret == {"token": "t0k"}
    assert client.get_secret(SECRETS, "db:password").secret == {"db:password": "p4ss"}
    bulk = client.get_bulk_secret(SECRETS).secrets
    assert bulk["token"] == {"token": "t0k"}, bulk
    assert bulk["db:ports:1"] == {"db:ports:1": "5433"}, bulk
    expect_grpc_error(lambda: client.get_secret(SECRETS, "missing"),
                      grpc.StatusCode.INTERNAL, "DAPR_SECRET_GET")


@check("metadata")
def _():
    client.set_metadata("owner", "py-sdk")
    metadata = client.get_metadata()
    assert metadata.application_id == os.environ["CALLER_APP_ID"], metadata.application_id
    names = {c.name for c in metadata.registered_components}
    assert {STORE, SECRETS} <= names, names
    assert metadata.extended_metadata["owner"] == "py-sdk"


@check("invoke an HTTP app over gRPC, through two sidecars")
def _():
    response = client.invoke_method(
        TARGET, "echo/nested", data=b'{"n": 1}', content_type="application/json",
        metadata=(("x-tenant", "acme"),),
        http_verb="PUT", http_querystring=(("x", "1"), ("y", "two")))
    echo = json.loads(response.data)
    assert echo["method"] == "PUT", echo
    assert echo["path"] == "/echo/nested", echo
    assert echo["query"] == "x=1&y=two", echo
    assert echo["body"] == '{"n": 1}', echo
    assert echo["headers"]["dapr-callee-app-id"] == TARGET, echo
    assert echo["headers"]["dapr-caller-app-id"] == os.environ["CALLER_APP_ID"], echo
    # The call's metadata reaches the app as headers; the app's headers come
    # back as response metadata, permanent HTTP ones prefixed, as daprd does.
    assert echo["headers"]["x-tenant"] == "acme", echo
    assert response.headers["dapr-content-type"] == ["application/json"], response.headers


@check("an app's 404 comes back as NOT_FOUND with dapr-http-status")
def _():
    try:
        client.invoke_method(TARGET, "status/404", data=b"", http_verb="GET")
    except grpc.RpcError as raw:
        err = dapr_error(raw)
        assert dict(raw.trailing_metadata()).get("dapr-http-status") == "404", raw.trailing_metadata()
        assert dict(raw.trailing_metadata()).get("x-from-app") == "yes", raw.trailing_metadata()
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.code()
        assert err.error_code() == "Not Found", err.error_code()
        info = err.status_details().error_info
        assert info["metadata"]["http.code"] == "404", info
    else:
        raise AssertionError("no error for a 404")


@check("publish an event, and an unknown pub/sub is INVALID_ARGUMENT")
def _():
    client.publish_event("pubsub", "orders", data=json.dumps({"n": 1}),
                         data_content_type="application/json")
    expect_grpc_error(
        lambda: client.publish_event("no-such-pubsub", "orders", data="{}"),
        grpc.StatusCode.INVALID_ARGUMENT, "DAPR_PUBSUB_NOT_FOUND")


@check("a streaming subscription gets events; a RETRY comes again")
def _():
    subscription = client.subscribe(pubsub_name="pubsub", topic="streamed")
    try:
        client.publish_event("pubsub", "streamed", data=json.dumps({"n": 7}),
                             data_content_type="application/json")
        message = subscription.next_message()
        assert message.topic() == "streamed", message.topic()
        assert message.pubsub_name() == "pubsub", message.pubsub_name()
        assert json.loads(message.raw_data()) == {"n": 7}, message.raw_data()
        subscription.respond_retry(message)
        again = subscription.next_message()
        assert again.id() == message.id(), (again.id(), message.id())
        subscription.respond_success(again)
    finally:
        subscription.close()


@check("distributed lock: try_lock, its with-block, unlock")
def _():
    resource = f"sdk-lock-{os.getpid()}-{time.time_ns()}"
    with client.try_lock("lockstore", resource, "owner-a", 60) as lock:
        assert lock.success, "the first owner gets it"
        assert not client.try_lock("lockstore", resource, "owner-b", 60), "held"
        other = client.unlock("lockstore", resource, "owner-b")
        assert other.status == UnlockResponseStatus.lock_belongs_to_others, other.status
    # The with-block released it.
    again = client.unlock("lockstore", resource, "owner-a")
    assert again.status == UnlockResponseStatus.lock_does_not_exist, again.status
    assert client.try_lock("lockstore", resource, "owner-b", 60), "free again"
    done = client.unlock("lockstore", resource, "owner-b")
    assert done.status == UnlockResponseStatus.success, done.status
    expect_grpc_error(
        lambda: client.try_lock("no-such-lockstore", resource, "owner-a", 60),
        grpc.StatusCode.INVALID_ARGUMENT, "ERR_LOCK_STORE_NOT_FOUND")


def redis_set(key, value):
    """SET on the machine's Redis, in RESP over a socket (the venv has no
    Redis client)."""
    parts = [b"SET", key.encode(), value.encode()]
    command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as redis:
        redis.sendall(command)
        answer = redis.recv(64)
        assert answer.startswith(b"+OK"), f"Redis answered {answer!r}"


@check("configuration: get, subscribe (a change arrives), unsubscribe")
def _():
    key = f"sdk-config-{os.getpid()}-{time.time_ns()}"
    redis_set(key, "10||v1")
    got = client.get_configuration("configstore", [key, f"{key}-missing"])
    assert set(got.items) == {key}, got.items
    assert (got.items[key].value, got.items[key].version) == ("10", "v1"), got.items[key]
    changes = queue.Queue()
    sub_id = client.subscribe_configuration(
        "configstore", [key], lambda sub, response: changes.put((sub, response)))
    assert sub_id, "a subscription id"
    redis_set(key, "11||v2")
    sub, response = changes.get(timeout=10)
    assert sub == sub_id, (sub, sub_id)
    item = response.items[key]
    assert (item.value, item.version) == ("11", "v2"), response.items
    assert client.unsubscribe_configuration("configstore", sub_id), "unsubscribed"
    assert not client.unsubscribe_configuration("configstore", sub_id), "no longer there"
    expect_grpc_error(
        lambda: client.get_configuration("no-such-configstore", [key]),
        grpc.StatusCode.INVALID_ARGUMENT, "ERR_CONFIGURATION_STORE_NOT_FOUND")


@check("output binding: SQL through bindings.postgresql (exec, query, metadata)")
def _():
    table = f"sdk_orders_{os.getpid()}_{time.time_ns()}"
    created = client.invoke_binding(
        "sqldb", "exec", binding_metadata={"sql": f"CREATE TABLE {table} (id int, item text)"})
    assert created.binding_metadata["operation"] == "exec", created.binding_metadata
    try:
        inserted = client.invoke_binding(
            "sqldb", "exec",
            binding_metadata={"sql": f"INSERT INTO {table} VALUES ($1, $2)",
                              "params": json.dumps([7, "espresso"])})
        assert inserted.binding_metadata["rows-affected"] == "1", inserted.binding_metadata
        rows = client.invoke_binding(
            "sqldb", "query", binding_metadata={"sql": f"SELECT id, item FROM {table}"})
        assert rows.json() == [[7, "espresso"]], rows.text()
    finally:
        client.invoke_binding("sqldb", "exec", binding_metadata={"sql": f"DROP TABLE {table}"})
    expect_grpc_error(
        lambda: client.invoke_binding("sqldb", "query", binding_metadata={}),
        grpc.StatusCode.INTERNAL, "ERR_INVOKE_OUTPUT_BINDING")


@check("output binding: an HTTP endpoint through bindings.http (method, path, headers, status)")
def _():
    answer = client.invoke_binding(
        "web", "post", data=b"hello",
        binding_metadata={"path": "/orders", "Content-Type": "text/plain"})
    assert answer.binding_metadata["statusCode"] == "200", answer.binding_metadata
    echo = answer.json()
    assert (echo["method"], echo["path"], echo["body"]) == ("POST", "/orders", "hello"), echo
    assert echo["headers"]["content-type"] == "text/plain", echo
    err = expect_grpc_error(
        lambda: client.invoke_binding("web", "get", binding_metadata={"path": "/status/404"}),
        grpc.StatusCode.INTERNAL, "ERR_INVOKE_OUTPUT_BINDING")
    assert "received status code 404" in err.details(), err.details()


@check("jobs: schedule, get, overwrite and delete (ScheduleJob, GetJob, DeleteJob)")
def _():
    from dapr.clients.grpc._jobs import Job
    from google.protobuf.any_pb2 import Any as GrpcAny
    from google.protobuf.wrappers_pb2 import StringValue
    data = GrpcAny()
    data.Pack(StringValue(value="brew"))
    name = f"py-job-{os.getpid()}"
    client.schedule_job(Job(name=name, schedule="@every 1h", repeats=3, ttl="2h", data=data))
    job = client.get_job(name)
    assert (job.name, job.schedule, job.repeats, job.ttl) == (name, "@every 1h", 3, "2h"), job
    got = StringValue()
    assert job.data.Unpack(got) and got.value == "brew", job.data
    expect_grpc_error(
        lambda: client.schedule_job(Job(name=name, due_time="1h")),
        grpc.StatusCode.ALREADY_EXISTS, "DAPR_SCHEDULER_SCHEDULE_JOB")
    client.schedule_job(Job(name=name, due_time="1h"), overwrite=True)
    assert client.get_job(name).due_time == "1h"
    client.delete_job(name)
    expect_grpc_error(lambda: client.get_job(name), grpc.StatusCode.INTERNAL, "DAPR_SCHEDULER_GET_JOB")


checks.finish()
