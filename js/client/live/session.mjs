// Drives a SlipClient against a real gateway for the end-to-end tests
// (tests/e2e/js_client.rs): prints what the client hears as JSON lines, and
// takes commands on stdin: `drop` (the socket dies without a close frame),
// `send TEXT`, `close`.
import { createInterface } from "node:readline";
import WebSocket from "ws";

import { SlipClient } from "../dist/index.js";

const sockets = [];
class Tracked extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    sockets.push(this);
  }
}

const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const text = (payload) => payload.data ?? `binary:${payload.binary?.length}`;
const client = new SlipClient(process.argv.slice(2), { WebSocket: Tracked, minDelayMs: 50, maxDelayMs: 500 });
client.on("session", (s) =>
  print({ event: "session", id: s.connectionId, resumed: s.resumed, recovered: s.recovered, lost: s.lost, url: sockets.at(-1)?.url }),
);
client.on("publication", (p) => print({ event: "publication", channel: p.channel, epoch: p.epoch, offset: p.offset, data: text(p) }));
client.on("message", (m) => print({ event: "message", seq: m.seq, data: text(m) }));

for await (const line of createInterface({ input: process.stdin })) {
  if (line === "drop") sockets.at(-1)?.terminate();
  else if (line.startsWith("send ")) client.send(line.slice(5));
  else if (line === "close") break;
}
client.close();
process.exit(0);
