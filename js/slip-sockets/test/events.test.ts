import { test } from "node:test";
import * as assert from "node:assert/strict";

import { parseEventRequest } from "../src/index.js";

const ID = "edge-1.0123456789abcdef0123";

test("every event the gateway sends parses; BINARY only when asked for", () => {
  const body = {
    connectionId: ID,
    metadata: null,
    events: [
      { type: "OPEN", connectionId: ID },
      { type: "TEXT", connectionId: ID, data: "hi" },
      { type: "BINARY", connectionId: ID, data: "AAH/" },
      { type: "CLOSE", connectionId: ID, code: 1000, reason: "bye", eventId: `close:${ID}` },
      { type: "CLOSE", connectionId: ID },
    ],
  };
  assert.equal(parseEventRequest(body, false), null, "BINARY to a target that did not opt in");
  const parsed = parseEventRequest(body, true);
  assert.deepEqual(parsed?.events, [
    { type: "OPEN", connectionId: ID },
    { type: "TEXT", connectionId: ID, data: "hi", text: "hi" },
    { type: "BINARY", connectionId: ID, data: new Uint8Array([0, 1, 255]) },
    { type: "CLOSE", connectionId: ID, code: 1000, reason: "bye", eventId: `close:${ID}` },
    { type: "CLOSE", connectionId: ID },
  ]);
});

test("what is not a callback is null, and nothing throws", () => {
  const bad: unknown[] = [
    null,
    [],
    "x",
    {},
    { connectionId: ID },
    { connectionId: 1, events: [] },
    { connectionId: ID, events: [{ type: "NOPE", connectionId: ID }] },
    { connectionId: ID, events: [{ type: "TEXT", connectionId: ID }] },
    { connectionId: ID, events: [{ type: "TEXT", connectionId: ID, data: 5 }] },
    { connectionId: ID, events: [{ type: "CLOSE", connectionId: ID, code: "1000" }] },
    { connectionId: ID, events: [{ type: "OPEN" }] },
    { connectionId: ID, events: [null] },
  ];
  for (const body of bad) assert.equal(parseEventRequest(body, true), null, JSON.stringify(body));
  // Random shapes: never a throw.
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
  const value = (depth: number): unknown =>
    depth > 3
      ? pick([null, 1, "s", true])
      : pick([
          () => null,
          () => "TEXT",
          () => ID,
          () => 7,
          () => Array.from({ length: 3 }, () => value(depth + 1)),
          () => ({ type: pick(["OPEN", "TEXT", "CLOSE", "BINARY", "X"]), connectionId: value(depth + 1), data: value(depth + 1) }),
          () => ({ connectionId: value(depth + 1), metadata: value(depth + 1), events: value(depth + 1) }),
        ])();
  for (let i = 0; i < 5_000; i++) parseEventRequest(value(0), i % 2 === 0);
});
