// Workflows with the official Dapr JavaScript SDK: its WorkflowRuntime
// (the worker, on @dapr/durabletask-js) runs them and its
// DaprWorkflowClient manages them, both over the sidecar's gRPC port
// (DAPR_GRPC_PORT). Run by crates/sidecar/tests/sidecar/js_sdk.rs. Prints
// one line per check and a closing "N passed, N failed".

import assert from "node:assert/strict";
import { finish, runChecks, until } from "./checks.mjs";
import { DaprWorkflowClient, WorkflowRuntime, WorkflowRuntimeStatus } from "@dapr/dapr";

const options = { daprHost: "127.0.0.1", daprPort: process.env.DAPR_GRPC_PORT };
const WAIT = Number(process.env.WAIT ?? 60);

const hello = async (_ctx, name) => `Hello ${name}!`;

const sequence = async function* (ctx, names) {
  const greetings = [];
  for (const name of names) {
    greetings.push(yield ctx.callActivity(hello, name));
  }
  return greetings;
};

const approval = async function* (ctx, order) {
  ctx.setCustomStatus("waiting");
  const approved = ctx.waitForExternalEvent("approve");
  const timeout = ctx.createTimer(WAIT);
  const winner = yield ctx.whenAny([approved, timeout]);
  return { order, approved: winner === approved, by: winner === approved ? approved.getResult() : null };
};

const nap = async function* (ctx) {
  const start = ctx.getCurrentUtcDateTime().getTime();
  yield ctx.createTimer(1);
  return (ctx.getCurrentUtcDateTime().getTime() - start) / 1000;
};

const forever = async function* (ctx) {
  return yield ctx.waitForExternalEvent("never");
};

const runtime = new WorkflowRuntime(options)
  .registerWorkflow(sequence)
  .registerWorkflow(approval)
  .registerWorkflow(nap)
  .registerWorkflow(forever)
  .registerActivity(hello);
const client = new DaprWorkflowClient(options);

async function finished(id) {
  const state = await client.waitForWorkflowCompletion(id, true, WAIT);
  assert.ok(state, `${id} is gone`);
  return state;
}


const checks = [
  ["chained activities", async () => {
    const id = await client.scheduleNewWorkflow(sequence, ["Tokyo", "Seattle"]);
    const state = await finished(id);
    assert.equal(state.runtimeStatus, WorkflowRuntimeStatus.COMPLETED);
    assert.deepEqual(JSON.parse(state.serializedOutput), ["Hello Tokyo!", "Hello Seattle!"]);
  }],
  ["an external event and the custom status", async () => {
    const id = await client.scheduleNewWorkflow(approval, "order-9", "js-approval-1");
    assert.equal(id, "js-approval-1");
    await until("the custom status", async () => {
      const state = await client.getWorkflowState(id, true);
      return state?.customStatus?.includes("waiting");
    }, WAIT, 100);
    await client.raiseEvent(id, "approve", { who: "bob" });
    const state = await finished(id);
    assert.equal(state.runtimeStatus, WorkflowRuntimeStatus.COMPLETED);
    assert.deepEqual(JSON.parse(state.serializedOutput), { order: "order-9", approved: true, by: { who: "bob" } });
  }],
  ["a durable timer", async () => {
    const id = await client.scheduleNewWorkflow(nap);
    const state = await finished(id);
    assert.equal(state.runtimeStatus, WorkflowRuntimeStatus.COMPLETED);
    assert.ok(JSON.parse(state.serializedOutput) >= 1, state.serializedOutput);
  }],
  ["suspend, resume, terminate and purge", async () => {
    const id = await client.scheduleNewWorkflow(forever);
    await client.waitForWorkflowStart(id, false, WAIT);
    await client.suspendWorkflow(id);
    await until("suspended", async () => (await client.getWorkflowState(id, false))?.runtimeStatus === WorkflowRuntimeStatus.SUSPENDED, WAIT, 100);
    await client.resumeWorkflow(id);
    await until("running", async () => (await client.getWorkflowState(id, false))?.runtimeStatus === WorkflowRuntimeStatus.RUNNING, WAIT, 100);
    await client.terminateWorkflow(id, "stopped");
    const state = await finished(id);
    assert.equal(state.runtimeStatus, WorkflowRuntimeStatus.TERMINATED);
    assert.equal(await client.purgeWorkflow(id), true);
    assert.equal(await client.getWorkflowState(id, false), undefined);
  }],
];

await runtime.start();
const failed = await runChecks(checks);
await runtime.stop();
await client.stop();
finish(checks.length, failed);
