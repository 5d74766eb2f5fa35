import { test } from "node:test";
import * as assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

import { ControlApiError, JWT, SlipSocketPublisher } from "../src/index.js";

const SECRET = "test-secret-of-thirty-two-bytes!";
const ID = "edge-1.0123456789abcdef0123";

async function callback(token: string | null, body: string): Promise<Request> {
  const headers: Record<string, string> = { "content-type": "application/websocket-events" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return new Request("http://backend.test/api/slip", { method: "POST", headers, body });
}

const opening = JSON.stringify({ connectionId: ID, metadata: null, events: [{ type: "OPEN", connectionId: ID }] });

test("parseRequest: a signed callback gives its connection; a bad token or body gives null", async () => {
  const refusals: string[] = [];
  const publisher = new SlipSocketPublisher({ controlApi: "http://127.0.0.1:1/", jwtSecret: SECRET, onInvalidRequest: (r) => refusals.push(r) });
  const jwt = new JWT({ jwtSecret: SECRET });
  const good = await jwt.generateToken({ audience: "WebSocketEvent" });
  const connection = await publisher.parseRequest(await callback(good, opening));
  assert.equal(connection?.connectionId, ID);
  assert.equal(connection?.isOpening(), true);

  const expired = await jwt.generateToken({ audience: "WebSocketEvent", now: Date.now() - 61_000 });
  const control = await jwt.generateToken({ audience: "ControlEvent" });
  const forged = await new JWT({ jwtSecret: "another-secret-of-thirty-two-by!" }).generateToken({ audience: "WebSocketEvent" });
  for (const token of [expired, control, forged, null, "garbage"]) {
    assert.equal(await publisher.parseRequest(await callback(token, opening)), null);
  }
  assert.equal(await publisher.parseRequest(await callback(good, "{not json")), null);
  assert.equal(await publisher.parseRequest(await callback(good, JSON.stringify({ events: [] }))), null);
  assert.deepEqual(refusals, [
    "bad token (expired)",
    "bad token (audience)",
    "bad token (signature)",
    "bad token (missing)",
    "bad token (malformed)",
    "body is not JSON",
    "body is not a callback",
  ]);
});

/** A control API that records what it is sent and answers with `answer`. */
async function controlApi(answer: (body: string) => [number, string]) {
  const seen: { authorization: string | undefined; contentType: string | undefined; body: string }[] = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      seen.push({ authorization: request.headers.authorization, contentType: request.headers["content-type"], body });
      const [status, text] = answer(body);
      response.writeHead(status, { "content-type": "application/json" }).end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url, seen, close: () => new Promise((resolve) => server.close(resolve)) };
}

test("send: one POST with a ControlEvent token and the commands in order; one-liners are sends", async () => {
  const api = await controlApi(() => [200, '{"message":"processed successfully"}']);
  const publisher = new SlipSocketPublisher({ controlApi: api.url, jwtSecret: SECRET });
  await publisher.send([
    { type: "SUBSCRIBE", connectionId: ID, channel: "room" },
    { type: "PUBLISH_TEXT", channelId: "room", data: "hi" },
  ]);
  await publisher.publishText("room", "one", { key: "k-one" });
  await publisher.publishBinary("room", new Uint8Array([1, 2]), { key: "k-two" });
  await publisher.close(ID, 4000, "done");
  await api.close();
  assert.equal(api.seen.length, 4);
  const token = api.seen[0]?.authorization?.replace("Bearer ", "") ?? "";
  assert.ok((await new JWT({ jwtSecret: SECRET }).verify(token, "ControlEvent")).ok);
  assert.equal(api.seen[0]?.contentType, "application/websocket-events");
  assert.deepEqual(
    api.seen.map((s) => JSON.parse(s.body)),
    [
      { events: [{ type: "SUBSCRIBE", connectionId: ID, channel: "room" }, { type: "PUBLISH_TEXT", channelId: "room", data: "hi" }] },
      { events: [{ type: "PUBLISH_TEXT", channelId: "room", data: "one", idempotencyKey: "k-one" }] },
      { events: [{ type: "PUBLISH_BINARY", channelId: "room", data: "AQI=", idempotencyKey: "k-two" }] },
      { events: [{ type: "CLOSE", connectionId: ID, code: 4000, reason: "done" }] },
    ],
  );
});

test("send: a refusal names the command the control API refused; no API is an error too", async () => {
  const api = await controlApi(() => [400, JSON.stringify({ message: "invalid commands", error: "command 1: channel name is empty" })]);
  const publisher = new SlipSocketPublisher({ controlApi: api.url, jwtSecret: SECRET });
  const batch = [
    { type: "PUBLISH_TEXT", channelId: "fine", data: "x" },
    { type: "SUBSCRIBE", connectionId: ID, channel: "" },
  ] as const;
  await assert.rejects(publisher.send([...batch]), (e: unknown) => {
    if (!(e instanceof ControlApiError)) return false;
    assert.equal(e.status, 400);
    assert.deepEqual(e.command, batch[1]);
    assert.match(e.message, /400 \(SUBSCRIBE at index 1\): invalid commands: command 1: channel name is empty/);
    return true;
  });
  await api.close();
  await assert.rejects(publisher.publishText("room", "x", { deadlineMs: 200 }), (e: unknown) => e instanceof ControlApiError && e.status === undefined);

  const failing = await controlApi(() => [503, JSON.stringify({ message: "command failed", index: 2, type: "PUBLISH_TEXT", error: "no owner" })]);
  const later = new SlipSocketPublisher({ controlApi: failing.url, jwtSecret: SECRET });
  const three = [
    { type: "SUBSCRIBE", connectionId: ID, channel: "a" },
    { type: "SUBSCRIBE", connectionId: ID, channel: "b" },
    { type: "PUBLISH_TEXT", channelId: "a", data: "x" },
  ] as const;
  await assert.rejects(later.send([...three]), (e: unknown) => {
    if (!(e instanceof ControlApiError)) return false;
    assert.deepEqual([e.status, e.command], [503, three[2]]);
    assert.match(e.message, /503 \(PUBLISH_TEXT at index 2\): command failed: no owner; the 2 before it ran/);
    return true;
  });
  await failing.close();
});

test("a publish retries with one key through the next control API while the gateway cannot take it", async () => {
  const seen: { url: string; body: string }[] = [];
  let answers = [503, 0, 200]; // 0: unreachable
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    seen.push({ url: String(input), body: String(init?.body) });
    const status = answers.shift() ?? 200;
    if (status === 0) throw new TypeError("fetch failed");
    return new Response(status === 200 ? '{"message":"processed successfully"}' : '{"message":"command failed","index":0}', { status });
  };
  const publisher = new SlipSocketPublisher({ controlApi: ["http://c0/", "http://c1/", "http://c2/"], jwtSecret: SECRET, fetch });
  await publisher.publishText("news", "hi");
  assert.deepEqual(seen.map((s) => s.url), ["http://c0/", "http://c1/", "http://c2/"], "the next control API each time");
  const keys = seen.map((s) => (JSON.parse(s.body) as { events: { idempotencyKey: string }[] }).events[0]?.idempotencyKey);
  assert.ok(keys[0] && keys.every((k) => k === keys[0]), `one key for every attempt: ${keys}`);

  // A refusal that is final is not retried; a deadline ends the retries.
  seen.length = 0;
  answers = [400];
  await assert.rejects(publisher.publishText("news", "bad", { key: "k1" }), (e: unknown) => e instanceof ControlApiError && e.status === 400);
  assert.equal(seen.length, 1);
  seen.length = 0;
  answers = Array(1000).fill(503);
  await assert.rejects(publisher.publishBinary("news", new Uint8Array([1]), { key: "k2", deadlineMs: 300 }), ControlApiError);
  assert.ok(seen.length > 3 && seen.every((s) => s.body.includes('"idempotencyKey":"k2"')), `${seen.length} tries`);
});

test("presence is read with a GET and a control token, on the next control API while one cannot answer", async () => {
  const seen: { url: string; auth: string | null }[] = [];
  let answers = [503, 200];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    seen.push({ url: String(input), auth: new Headers(init?.headers).get("authorization") });
    const status = answers.shift() ?? 200;
    const body = {
      channel: "room",
      members: [{ connectionId: "e.1", info: { name: "ann" } }, { connectionId: 7 }],
      count: 12,
    };
    return new Response(status === 200 ? JSON.stringify(body) : "{}", { status });
  };
  const publisher = new SlipSocketPublisher({ controlApi: ["http://c0", "http://c1/"], jwtSecret: SECRET, fetch });
  const presence = await publisher.presence("room/a b", { limit: 5 });
  assert.deepEqual(presence, { members: [{ connectionId: "e.1", info: { name: "ann" } }], count: 12 });
  assert.deepEqual(
    seen.map((s) => s.url),
    ["http://c0/presence?channel=room%2Fa+b&limit=5", "http://c1/presence?channel=room%2Fa+b&limit=5"],
  );
  assert.ok(seen.every((s) => s.auth?.startsWith("Bearer ")));
  answers = [403];
  await assert.rejects(publisher.presence("room"), (e: unknown) => e instanceof ControlApiError && e.status === 403);
});

test("a publish gives the epoch and offset the control API reports; an older gateway's reply gives offset 0", async () => {
  let reply = JSON.stringify({ message: "processed successfully", publishes: [{ channel: "news", epoch: "e1", offset: 41 }] });
  const fetch = async (): Promise<Response> => new Response(reply, { status: 200 });
  const publisher = new SlipSocketPublisher({ controlApi: "http://c0/", jwtSecret: SECRET, fetch });
  assert.deepEqual(await publisher.publish("news", "hi"), { channel: "news", epoch: "e1", offset: 41 });
  assert.deepEqual(await publisher.publish("news", new Uint8Array([1])), { channel: "news", epoch: "e1", offset: 41 });
  reply = '{"message":"processed successfully"}';
  assert.deepEqual(await publisher.publishText("news", "hi"), { channel: "news", epoch: "", offset: 0 });
  reply = JSON.stringify({ publishes: [{ channel: "a", epoch: "e", offset: 1 }, { channel: 7 }, { channel: "b", epoch: "e", offset: 2 }] });
  assert.deepEqual(await publisher.send([]), [
    { channel: "a", epoch: "e", offset: 1 },
    { channel: "b", epoch: "e", offset: 2 },
  ]);
});

test("history is read with a GET: since an epoch and offset, text and bytes, oldest first", async () => {
  const seen: string[] = [];
  const fetch = async (input: RequestInfo | URL): Promise<Response> => {
    seen.push(String(input));
    const body = {
      channel: "room",
      epoch: "e1",
      topOffset: 43,
      complete: true,
      publications: [{ offset: 42, text: "hi" }, { offset: 43, binary: "AQI=" }, { offset: "x" }, { offset: 44, binary: "%%" }],
    };
    return new Response(JSON.stringify(body), { status: 200 });
  };
  const publisher = new SlipSocketPublisher({ controlApi: "http://c0/", jwtSecret: SECRET, fetch });
  const history = await publisher.history("room", { sinceEpoch: "e1", sinceOffset: 41, limit: 10 });
  assert.deepEqual(history, {
    channel: "room",
    epoch: "e1",
    topOffset: 43,
    complete: true,
    publications: [{ offset: 42, text: "hi" }, { offset: 43, binary: new Uint8Array([1, 2]) }],
  });
  assert.deepEqual(seen, ["http://c0/history?channel=room&sinceEpoch=e1&sinceOffset=41&limit=10"]);
});

test("a control API that answers nothing (paused) is given up after requestTimeoutMs and the next one tried", async () => {
  const seen: string[] = [];
  const fetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    seen.push(String(input));
    if (String(input).startsWith("http://paused/")) {
      // Never answers; only the abort signal ends it.
      return new Promise((_, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    }
    const reply = { publishes: [{ channel: "news", epoch: "e", offset: 3 }] };
    return Promise.resolve(new Response(JSON.stringify(reply), { status: 200 }));
  };
  const publisher = new SlipSocketPublisher({ controlApi: ["http://paused/", "http://up/"], jwtSecret: SECRET, fetch, requestTimeoutMs: 50 });
  // AbortSignal.timeout's timer does not keep Node running (a server's sockets would).
  const alive = setTimeout(() => {}, 10_000);
  assert.deepEqual(await publisher.publish("news", "hi"), { channel: "news", epoch: "e", offset: 3 });
  clearTimeout(alive);
  assert.deepEqual(seen, ["http://paused/", "http://up/"]);
});
