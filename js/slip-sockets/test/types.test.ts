// Type-level checks: this file compiles only if the event union narrows as
// documented (tsc runs before the tests; an unused @ts-expect-error fails it).
import { test } from "node:test";
import * as assert from "node:assert/strict";

import { assertUnreachable, SlipSocketPublisher } from "../src/index.js";
import type { SlipSocketConnection, FromSlipServer, InEvent } from "../src/index.js";

function original(connection: SlipSocketConnection<FromSlipServer>): string[] {
  const seen: string[] = [];
  for (const event of connection.inEvents) {
    if (event.type === "OPEN") continue;
    if (event.type === "CLOSE") continue;
    if (event.type === "TEXT") {
      seen.push(event.text, event.data);
      continue;
    }
    assertUnreachable(event); // OPEN, TEXT, CLOSE: exhaustive
  }
  return seen;
}

function withBinary(connection: SlipSocketConnection<InEvent>): void {
  for (const event of connection.inEvents) {
    if (event.type === "OPEN" || event.type === "TEXT" || event.type === "CLOSE") continue;
    // @ts-expect-error BINARY is not handled: with binaryEvents the union has it.
    assertUnreachable(event);
  }
}

test("binaryEvents widens what parseRequest's connection carries", async () => {
  const plain = new SlipSocketPublisher({ controlApi: "http://127.0.0.1:1/", jwtSecret: "s".repeat(32) });
  const binary = new SlipSocketPublisher({ controlApi: "http://127.0.0.1:1/", jwtSecret: "s".repeat(32), binaryEvents: true });
  const request = () => new Request("http://x/", { method: "POST", body: "{}" });
  const a: SlipSocketConnection<FromSlipServer> | null = await plain.parseRequest(request());
  const b: SlipSocketConnection<InEvent> | null = await binary.parseRequest(request());
  assert.equal(a, null);
  assert.equal(b, null);
  assert.equal(typeof original, "function");
  assert.equal(typeof withBinary, "function");
});
