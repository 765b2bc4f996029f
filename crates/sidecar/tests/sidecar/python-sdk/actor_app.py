"""An actor app written with the official Dapr Python SDK's actor runtime
(`dapr.actor`): the `DemoActor` type, hosted over HTTP the way the SDK's
FastAPI and Flask extensions host it (`GET /dapr/config`, `PUT
/actors/{type}/{id}/method/{method}`, the `remind/` and `timer/` methods,
`DELETE /actors/{type}/{id}`), here on aiohttp, which the SDK already
depends on.

crates/sidecar/tests/sidecar/python_sdk.rs starts it with APP_PORT and
DAPR_HTTP_PORT (its sidecar); actor_client.py calls it through ActorProxy.
The actor keeps its data, the reminders and the timer ticks it got in
actor state, through the SDK's state manager.
"""

import asyncio
import datetime
import os

from aiohttp import web
from dapr.actor import Actor, ActorInterface, ActorRuntime, Remindable, actormethod
from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.serializers import DefaultJSONSerializer


class DemoActorInterface(ActorInterface):
    @actormethod(name="SetMyData")
    async def set_my_data(self, data: dict) -> None: ...

    @actormethod(name="GetMyData")
    async def get_my_data(self) -> object: ...

    @actormethod(name="SetReminder")
    async def set_reminder(self, enabled: bool) -> None: ...

    @actormethod(name="SetTimer")
    async def set_timer(self, enabled: bool) -> None: ...

    @actormethod(name="GetCounts")
    async def get_counts(self) -> object: ...

    @actormethod(name="Fail")
    async def fail(self) -> None: ...


class DemoActor(Actor, DemoActorInterface, Remindable):
    async def set_my_data(self, data: dict) -> None:
        await self._state_manager.set_state("mydata", data)
        await self._state_manager.save_state()

    async def get_my_data(self) -> object:
        found, value = await self._state_manager.try_get_state("mydata")
        return value if found else None

    async def set_reminder(self, enabled: bool) -> None:
        if enabled:
            await self.register_reminder(
                "demo_reminder",
                b"reminder-state",
                datetime.timedelta(seconds=0),
                datetime.timedelta(seconds=1),
            )
        else:
            await self.unregister_reminder("demo_reminder")

    async def set_timer(self, enabled: bool) -> None:
        if enabled:
            await self.register_timer(
                "demo_timer",
                self.timer_callback,
                "timer-state",
                datetime.timedelta(seconds=0),
                datetime.timedelta(seconds=1),
            )
        else:
            await self.unregister_timer("demo_timer")

    async def get_counts(self) -> object:
        counts = {}
        for name in ("reminded", "ticks", "last_reminder_state", "last_timer_state"):
            found, value = await self._state_manager.try_get_state(name)
            counts[name] = value if found else None
        return counts

    async def fail(self) -> None:
        raise RuntimeError("the actor failed on purpose")

    async def _bump(self, name, last_name, last):
        found, count = await self._state_manager.try_get_state(name)
        await self._state_manager.set_state(name, (count if found else 0) + 1)
        await self._state_manager.set_state(last_name, last)
        await self._state_manager.save_state()

    async def receive_reminder(self, name, state, due_time, period, ttl=None):
        await self._bump("reminded", "last_reminder_state", state.decode())

    async def timer_callback(self, state) -> None:
        await self._bump("ticks", "last_timer_state", state)


SERIALIZER = DefaultJSONSerializer()


def answer(status, body):
    if isinstance(body, bytes):
        return web.Response(status=status, body=body, content_type="application/json")
    return web.json_response({"message": str(body), "errorCode": "UNKNOWN"}, status=status)


async def dapr_config(_request):
    return web.Response(
        body=SERIALIZER.serialize(ActorRuntime.get_actor_config()),
        content_type="application/json",
    )


async def method(request):
    actor_type, actor_id, name = (request.match_info[k] for k in ("type", "id", "method"))
    body = await request.read()
    try:
        if name.startswith("remind/"):
            await ActorRuntime.fire_reminder(actor_type, actor_id, name[len("remind/"):], body)
            return web.Response(status=200)
        if name.startswith("timer/"):
            await ActorRuntime.fire_timer(actor_type, actor_id, name[len("timer/"):], body)
            return web.Response(status=200)
        result = await ActorRuntime.dispatch(actor_type, actor_id, name, body)
        return answer(200, result)
    except Exception as err:  # noqa: BLE001 - the SDK's extensions answer 500 too
        return answer(500, repr(err))


async def deactivate(request):
    await ActorRuntime.deactivate(request.match_info["type"], request.match_info["id"])
    return web.Response(status=200)


async def main():
    ActorRuntime.set_actor_config(
        ActorRuntimeConfig(actor_idle_timeout=datetime.timedelta(minutes=5))
    )
    await ActorRuntime.register_actor(DemoActor)
    app = web.Application()
    app.router.add_get("/dapr/config", dapr_config)
    app.router.add_put("/actors/{type}/{id}/method/{method:.+}", method)
    app.router.add_delete("/actors/{type}/{id}", deactivate)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(os.environ["APP_PORT"])).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
