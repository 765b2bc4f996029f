"""Calls actor_app.py's `DemoActor` with the official Dapr Python SDK's
`ActorProxy`, through the sidecar on DAPR_HTTP_PORT (one that does not host
the type: the call goes on to the hosting sidecar). Every check prints `ok
NAME` or `FAIL NAME: reason`; the last line is `N passed, M failed`.
"""

import asyncio
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import checks  # noqa: E402
from actor_app import DemoActorInterface  # noqa: E402

from dapr.actor import ActorId, ActorProxy  # noqa: E402
from dapr.clients.exceptions import DaprInternalError  # noqa: E402


def proxy(actor_id):
    return ActorProxy.create("DemoActor", ActorId(actor_id), DemoActorInterface)


async def until(what, condition, within=15):
    return await checks.until_async(what, condition, within)


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
    await checks.run_async("actor state, one per actor id", state_per_actor)
    await checks.run_async("reminders reach receive_reminder with their state", reminders)
    await checks.run_async("timers call their callback with their state", timers)
    await checks.run_async("an actor's exception is ERR_ACTOR_INVOKE_METHOD", errors)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
