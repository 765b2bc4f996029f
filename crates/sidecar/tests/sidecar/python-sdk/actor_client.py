"""Calls actor_app.py's `DemoActor` with the official Dapr Python SDK's
`ActorProxy`, through the sidecar on DAPR_HTTP_PORT (one that does not host
the type: the call goes on to the hosting sidecar). Every check prints `ok
NAME` or `FAIL NAME: reason`; the last line is `N passed, M failed`.
"""

import asyncio
import sys
import time
import traceback

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from actor_app import DemoActorInterface  # noqa: E402

from dapr.actor import ActorId, ActorProxy  # noqa: E402
from dapr.clients.exceptions import DaprInternalError  # noqa: E402

results = []


async def check(name, test):
    try:
        await test()
        results.append((name, None))
        print(f"ok {name}", flush=True)
    except Exception as err:  # noqa: BLE001 - any failure is reported
        results.append((name, err))
        print(f"FAIL {name}: {err!r}", flush=True)
        traceback.print_exc()


def proxy(actor_id):
    return ActorProxy.create("DemoActor", ActorId(actor_id), DemoActorInterface)


async def until(what, condition, within=15):
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.2)


async def state_per_actor():
    await proxy("1").SetMyData({"n": 1})
    await proxy("2").SetMyData({"n": 2})
    assert await proxy("1").GetMyData() == {"n": 1}
    assert await proxy("2").GetMyData() == {"n": 2}
    assert await proxy("3").GetMyData() is None


async def reminders():
    await proxy("r").SetReminder(True)

    async def reminded_twice():
        counts = await proxy("r").GetCounts()
        return counts if (counts["reminded"] or 0) >= 2 else None

    counts = await until("two reminders", reminded_twice)
    assert counts["last_reminder_state"] == "reminder-state", counts
    await proxy("r").SetReminder(False)


async def timers():
    await proxy("t").SetTimer(True)

    async def ticked():
        counts = await proxy("t").GetCounts()
        return counts if (counts["ticks"] or 0) >= 2 else None

    counts = await until("two timer ticks", ticked)
    assert counts["last_timer_state"] == "timer-state", counts
    await proxy("t").SetTimer(False)


async def errors():
    try:
        await proxy("1").Fail()
    except DaprInternalError as err:
        assert err._error_code == "ERR_ACTOR_INVOKE_METHOD", err.as_dict()
        assert "the actor failed on purpose" in err._message, err.as_dict()
    else:
        raise AssertionError("Fail did not fail")


async def main():
    await check("actor state, one per actor id", state_per_actor)
    await check("reminders reach receive_reminder with their state", reminders)
    await check("timers call their callback with their state", timers)
    await check("an actor's exception is ERR_ACTOR_INVOKE_METHOD", errors)
    failed = sum(1 for _, err in results if err is not None)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
