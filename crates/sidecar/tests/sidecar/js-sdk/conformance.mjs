// Drives a dapr-wasm sidecar with the official Dapr JavaScript SDK, over
// HTTP or, with DAPR_PROTOCOL=grpc, over gRPC: a client we did not write.
// Any difference from real Dapr's documented behaviour is a bug in the
// sidecar, not in this script.
//
// Run by crates/sidecar/tests/js_sdk.rs, which starts an echo app
// (TARGET_APP_ID) and its sidecar (DAPR_HTTP_PORT, DAPR_GRPC_PORT) with a
// SQLite state store named `statestore`, a local-file secret store named
// `localsecrets`, a Redis lock store named `lockstore`, a Redis configuration store named
// `configstore`, a `bindings.postgresql` output binding named `sqldb` and a
// `bindings.http` one named `web` that calls the echo app. Prints one line per check and a closing "N passed, N failed".

import assert from "node:assert/strict";
import { finish, runChecks } from "./checks.mjs";
import net from "node:net";
import { CommunicationProtocolEnum, DaprClient, HttpMethod } from "@dapr/dapr";

const appId = process.env.TARGET_APP_ID;
const grpc = process.env.DAPR_PROTOCOL === "grpc";
const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: grpc ? process.env.DAPR_GRPC_PORT : process.env.DAPR_HTTP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
});
const store = "statestore";
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check("health", async () => {
  assert.equal(await client.health.isHealthy(), true);
});

check("metadata get and set", async () => {
  const metadata = await client.metadata.get();
  assert.equal(metadata.id, appId);
  const names = metadata.components.map((c) => `${c.name}:${c.type}`).sort();
  assert.deepEqual(names, [
    "configstore:configuration.redis",
    "localsecrets:secretstores.local.file",
    "lockstore:lock.redis",
    "sqldb:bindings.postgresql",
    "statestore:state.sqlite",
    "web:bindings.http",
  ]);
  await client.metadata.set("team", "wasm");
  assert.equal((await client.metadata.get()).extended.team, "wasm");
});

check("invoke POST with a JSON body", async () => {
  const echo = await client.invoker.invoke(appId, "orders/new", HttpMethod.POST, { item: "tea" });
  assert.equal(echo.method, "POST");
  assert.equal(echo.path, "/orders/new");
  assert.deepEqual(JSON.parse(echo.body), { item: "tea" });
  assert.equal(echo.headers["dapr-callee-app-id"], appId);
});

check("invoke GET", async () => {
  const echo = await client.invoker.invoke(appId, "orders", HttpMethod.GET);
  assert.equal(echo.method, "GET");
  assert.equal(echo.path, "/orders");
});

check("state save and get", async () => {
  await client.state.save(store, [
    { key: "js-object", value: { n: 1, tags: ["a"] } },
    { key: "js-string", value: "two" },
  ]);
  assert.deepEqual(await client.state.get(store, "js-object"), { n: 1, tags: ["a"] });
  assert.equal(await client.state.get(store, "js-string"), "two");
});

check("state get of a missing key", async () => {
  const value = await client.state.get(store, "js-never-saved");
  assert.ok(value === "" || value === undefined || value === null, `got ${JSON.stringify(value)}`);
});

check("state bulk get", async () => {
  const items = await client.state.getBulk(store, ["js-object", "js-string"]);
  const byKey = Object.fromEntries(items.map((i) => [i.key, i.data]));
  assert.deepEqual(byKey["js-object"], { n: 1, tags: ["a"] });
  assert.equal(byKey["js-string"], "two");
  assert.ok(items.every((i) => typeof i.etag === "string" && i.etag.length > 0));
});

check("state delete", async () => {
  await client.state.delete(store, "js-string");
  const value = await client.state.get(store, "js-string");
  assert.ok(value === "" || value === undefined || value === null, `got ${JSON.stringify(value)}`);
});

check("state transaction", async () => {
  await client.state.transaction(store, [
    { operation: "upsert", request: { key: "js-tx-1", value: "one" } },
    // The SDK's gRPC client sends a transaction's values as given, so they
    // must be text there; its HTTP client serialises objects itself.
    { operation: "upsert", request: { key: "js-tx-2", value: grpc ? JSON.stringify({ two: 2 }) : { two: 2 } } },
    { operation: "delete", request: { key: "js-object" } },
  ]);
  assert.equal(await client.state.get(store, "js-tx-1"), "one");
  assert.deepEqual(await client.state.get(store, "js-tx-2"), { two: 2 });
  const gone = await client.state.get(store, "js-object");
  assert.ok(gone === "" || gone === undefined || gone === null);
});

check("state save with a stale etag is rejected", async () => {
  await client.state.save(store, [{ key: "js-etag", value: 1 }]);
  await client.state.save(store, [{ key: "js-etag", value: 2 }]);
  const stale = [{ key: "js-etag", value: 3, etag: "123456789" }];
  if (grpc) {
    // Over gRPC the SDK throws the sidecar's status: ABORTED, as daprd.
    await assert.rejects(client.state.save(store, stale), (err) => {
      assert.ok(String(err).includes("[aborted] possible etag mismatch"), String(err));
      return true;
    });
  } else {
    // Over HTTP save() does not throw: it returns { error } (state.js).
    const error = String((await client.state.save(store, stale)).error);
    assert.ok(error.includes('"status":409'), error);
    assert.ok(error.includes("ERR_STATE_SAVE"), error);
  }
  assert.equal(await client.state.get(store, "js-etag"), 2);
});

check("lock and unlock", async () => {
  const resource = `js-lock-${grpc ? "grpc" : "http"}-${process.pid}-${Date.now()}`;
  // (The SDK's LockStatus, not exported: 0 released, 1 no such lock,
  // 2 another owner's.)
  assert.equal((await client.lock.lock("lockstore", resource, "owner-a", 60)).success, true);
  assert.equal((await client.lock.lock("lockstore", resource, "owner-b", 60)).success, false);
  assert.equal((await client.lock.unlock("lockstore", resource, "owner-b")).status, 2);
  assert.equal((await client.lock.unlock("lockstore", resource, "owner-a")).status, 0);
  assert.equal((await client.lock.unlock("lockstore", resource, "owner-a")).status, 1);
});

// SET on the machine's Redis, in RESP (nothing here has a Redis client).
const redisSet = (key, value) =>
  new Promise((resolve, reject) => {
    const parts = ["SET", key, value];
    const command =
      `*${parts.length}\r\n` + parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("");
    const socket = net.connect(6379, "127.0.0.1", () => socket.write(command));
    socket.once("data", (answer) => {
      socket.end();
      answer.toString().startsWith("+OK") ? resolve() : reject(new Error(`Redis answered ${answer}`));
    });
    socket.once("error", reject);
  });

// The SDK reads and watches configuration over gRPC only (over HTTP it throws).
if (grpc) {
  check("configuration get and subscribe", async () => {
    const key = `js-config-${process.pid}-${Date.now()}`;
    await redisSet(key, "10||v1");
    const got = await client.configuration.get("configstore", [key, `${key}-missing`]);
    assert.deepEqual(Object.keys(got.items), [key]);
    assert.equal(got.items[key].value, "10");
    assert.equal(got.items[key].version, "v1");
    const updates = [];
    const subscription = await client.configuration.subscribeWithKeys("configstore", [key], (update) => {
      updates.push(update);
    });
    // subscribeWithKeys returns before its stream is open, so the key is
    // changed until a change arrives (at most 10 s).
    for (let round = 0; updates.length === 0 && round < 50; round++) {
      await redisSet(key, `11||v${round}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await subscription.stop();
    assert.ok(updates.length > 0, "no change arrived within 10 s");
    assert.equal(updates[0].items[key].value, "11");
    assert.match(updates[0].items[key].version, /^v\d+$/);
  });
}

check("output binding: SQL through bindings.postgresql", async () => {
  const table = `js_orders_${grpc ? "grpc" : "http"}_${process.pid}_${Date.now()}`;
  const sql = (operation, statement, params) =>
    client.binding.send("sqldb", operation, undefined, {
      sql: statement,
      ...(params ? { params: JSON.stringify(params) } : {}),
    });
  await sql("exec", `CREATE TABLE ${table} (id int, item text)`);
  try {
    const inserted = await sql("exec", `INSERT INTO ${table} VALUES ($1, $2)`, [7, "espresso"]);
    const rows = await sql("query", `SELECT id, item FROM ${table}`);
    if (grpc) {
      // Over gRPC the SDK hands back the answer's data and metadata.
      assert.equal(inserted.metadata["rows-affected"], "1");
      assert.deepEqual(JSON.parse(Buffer.from(rows.data).toString()), [[7, "espresso"]]);
    } else {
      // Over HTTP it hands back the body, read as JSON.
      assert.deepEqual(rows, [[7, "espresso"]]);
    }
  } finally {
    await sql("exec", `DROP TABLE ${table}`);
  }
});

check("output binding: an HTTP endpoint through bindings.http", async () => {
  const answer = await client.binding.send("web", "post", { item: "tea" }, { path: "/orders", "X-Order": "7" });
  // Over gRPC the SDK hands back the answer's data and metadata; over
  // HTTP, the body read as JSON.
  const echo = grpc ? JSON.parse(Buffer.from(answer.data).toString()) : answer;
  if (grpc) {
    assert.equal(answer.metadata.statusCode, "200");
  }
  assert.equal(echo.method, "POST");
  assert.equal(echo.path, "/orders");
  assert.deepEqual(JSON.parse(echo.body), { item: "tea" });
  assert.equal(echo.headers["x-order"], "7");
});

check("secrets get and bulk", async () => {
  assert.deepEqual(await client.secret.get("localsecrets", "db:password"), { "db:password": "p4ss" });
  const bulk = await client.secret.getBulk("localsecrets");
  assert.deepEqual(bulk.token, { token: "t0k" });
  assert.deepEqual(bulk["db:password"], { "db:password": "p4ss" });
});

finish(checks.length, await runChecks(checks));
