// Actors with the official Dapr JavaScript SDK: `DemoActor` is hosted by
// the SDK's own actor runtime (DaprServer over HTTP, behind the sidecar on
// HOST_DAPR_HTTP_PORT) and called with its ActorProxyBuilder through
// another sidecar (CALLER_DAPR_HTTP_PORT), so each call crosses from one
// sidecar to the other. Run by crates/sidecar/tests/sidecar/js_sdk.rs, with
// APP_PORT for the server. Prints one line per check and a closing
// "N passed, N failed".

import assert from "node:assert/strict";
import { finish, runChecks, until } from "./checks.mjs";
import { AbstractActor, ActorId, ActorProxyBuilder, DaprClient, DaprServer, Temporal } from "@dapr/dapr";

class DemoActor extends AbstractActor {
  async setData(data) {
    await this.getStateManager().setState("data", data);
    await this.getStateManager().saveState();
  }

  async getData() {
    const [found, value] = await this.getStateManager().tryGetState("data");
    return found ? value : null;
  }

  async startReminder() {
    await this.registerActorReminder("ping", Temporal.Duration.from({ seconds: 0 }), Temporal.Duration.from({ seconds: 1 }), undefined, "reminder-data");
  }

  async stopReminder() {
    await this.unregisterActorReminder("ping");
  }

  async startTimer() {
    await this.registerActorTimer("tick", "onTick", Temporal.Duration.from({ seconds: 0 }), Temporal.Duration.from({ seconds: 1 }), undefined, "timer-data");
  }

  async stopTimer() {
    await this.unregisterActorTimer("tick");
  }

  async bump(name, last) {
    const manager = this.getStateManager();
    const [found, count] = await manager.tryGetState(name);
    await manager.setState(name, (found ? count : 0) + 1);
    await manager.setState(`last_${name}`, last);
    await manager.saveState();
  }

  async receiveReminder(data) {
    await this.bump("reminded", data);
  }

  async onTick(data) {
    await this.bump("ticks", data);
  }

  async getCounts() {
    const counts = {};
    for (const name of ["reminded", "ticks", "last_reminded", "last_ticks"]) {
      const [found, value] = await this.getStateManager().tryGetState(name);
      counts[name] = found ? value : null;
    }
    return counts;
  }
}

const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: process.env.APP_PORT,
  clientOptions: { daprHost: "127.0.0.1", daprPort: process.env.HOST_DAPR_HTTP_PORT },
});
await server.actor.init();
server.actor.registerActor(DemoActor);
await server.start();

// The host's sidecar asks the server for its actor types once it answers.
const hostMetadata = `http://127.0.0.1:${process.env.HOST_DAPR_HTTP_PORT}/v1.0/metadata`;
for (let tries = 0; ; tries++) {
  const metadata = await (await fetch(hostMetadata)).json();
  if (metadata.actorRuntime?.hostReady) break;
  if (tries > 100) throw new Error("the sidecar did not take the actor types");
  await new Promise((resolve) => setTimeout(resolve, 100));
}

const caller = new DaprClient({ daprHost: "127.0.0.1", daprPort: process.env.CALLER_DAPR_HTTP_PORT });
const builder = new ActorProxyBuilder(DemoActor, caller);
const actor = (id) => builder.build(new ActorId(id));


const checks = [
  ["actor state, one per actor id", async () => {
    await actor("1").setData({ n: 1 });
    await actor("2").setData({ n: 2 });
    assert.deepEqual(await actor("1").getData(), { n: 1 });
    assert.deepEqual(await actor("2").getData(), { n: 2 });
    assert.equal(await actor("3").getData(), null);
  }],
  ["reminders reach receiveReminder with their data", async () => {
    await actor("r").startReminder();
    const counts = await until("two reminders", async () => {
      const counts = await actor("r").getCounts();
      return counts.reminded >= 2 ? counts : null;
    });
    assert.equal(counts.last_reminded, "reminder-data");
    await actor("r").stopReminder();
  }],
  ["timers call their callback with their data", async () => {
    await actor("t").startTimer();
    const counts = await until("two ticks", async () => {
      const counts = await actor("t").getCounts();
      return counts.ticks >= 2 ? counts : null;
    });
    assert.equal(counts.last_ticks, "timer-data");
    await actor("t").stopTimer();
  }],
];

finish(checks.length, await runChecks(checks));
