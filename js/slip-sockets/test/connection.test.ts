import { test } from "node:test";
import * as assert from "node:assert/strict";

import { parseEventRequest, SlipSocketConnection } from "../src/index.js";
import type { FromSlipServer } from "../src/index.js";

const ID = "edge-1.0123456789abcdef0123";

function opening(): SlipSocketConnection {
  const parsed = parseEventRequest({ connectionId: ID, metadata: { ip: "1.2.3.4" }, events: [{ type: "OPEN", connectionId: ID }] }, false);
  assert.ok(parsed);
  return new SlipSocketConnection(parsed as { connectionId: string; metadata: null; events: FromSlipServer[] });
}

test("the reply: ACCEPT first, the queue in order, then metadata, then the close", async () => {
  const connection = opening();
  assert.equal(connection.isOpening(), true);
  assert.deepEqual(connection.metadata, { ip: "1.2.3.4" });
  connection.subscribe("room");
  connection.setMetadata({ user: 1 });
  connection.publishText("room", "joined");
  connection.publish("room", "same as publishText");
  connection.sendText("welcome");
  connection.close(4001, "bye");
  connection.accept();
  const response = connection.endResponse();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/websocket-events");
  assert.deepEqual(await response.json(), {
    events: [
      { type: "ACCEPT", connectionId: ID },
      { type: "SUBSCRIBE", connectionId: ID, channel: "room" },
      { type: "PUBLISH_TEXT", channelId: "room", data: "joined" },
      { type: "PUBLISH_TEXT", channelId: "room", data: "same as publishText" },
      { type: "TEXT", connectionId: ID, data: "welcome" },
      { type: "SET_METADATA", connectionId: ID, metadata: { user: 1 } },
      { type: "CLOSE", connectionId: ID, code: 4001, reason: "bye" },
    ],
  });
});

test("binary goes as base64; a subprotocol rides on ACCEPT; null metadata clears", async () => {
  const connection = opening();
  connection.accept({ protocol: "chat.v2" });
  connection.sendBinary(new Uint8Array([0, 1, 255]));
  connection.publishBinary("room", new Uint8Array([104, 105]));
  connection.publish("room", new Uint8Array([1]));
  connection.setMetadata(null);
  assert.deepEqual(connection.responseEvents(), [
    { type: "ACCEPT", connectionId: ID, protocol: "chat.v2" },
    { type: "BINARY", connectionId: ID, data: "AAH/" },
    { type: "PUBLISH_BINARY", channelId: "room", data: "aGk=" },
    { type: "PUBLISH_BINARY", channelId: "room", data: "AQ==" },
    { type: "SET_METADATA", connectionId: ID, metadata: null },
  ]);
});

test("nothing asked: an empty reply, and a TEXT event carries both spellings", async () => {
  const parsed = parseEventRequest({ connectionId: ID, metadata: null, events: [{ type: "TEXT", connectionId: ID, data: "hi" }] }, false);
  assert.deepEqual(parsed?.events, [{ type: "TEXT", connectionId: ID, data: "hi", text: "hi" }]);
  const connection = new SlipSocketConnection(parsed as { connectionId: string; metadata: null; events: FromSlipServer[] });
  assert.equal(connection.isOpening(), false);
  assert.deepEqual(await connection.endResponse().json(), { events: [] });
});

test("a subscription may carry presence info and ask for join/leave frames; without them it is the command old gateways know", async () => {
  const connection = opening();
  connection.accept();
  connection.subscribe("plain");
  connection.subscribe("room", { presence: { name: "ann" }, joinLeave: true });
  connection.subscribe("quiet", { joinLeave: false });
  const body = (await connection.endResponse().json()) as { events: unknown[] };
  assert.deepEqual(body.events.slice(1), [
    { type: "SUBSCRIBE", connectionId: ID, channel: "plain" },
    { type: "SUBSCRIBE", connectionId: ID, channel: "room", presence: { name: "ann" }, joinLeave: true },
    { type: "SUBSCRIBE", connectionId: ID, channel: "quiet" },
  ]);
});
