// Publishes COUNT numbered messages to CHANNEL through the TypeScript
// library (js/slip-sockets, built), each with its own idempotency key, one
// after another; then sends every key again, as a backend does whose answer
// was lost. One JSON line per publish: {"i", "epoch", "offset"} or
// {"i", "error"}; then the channel's history, {"history": {"epoch",
// "complete", "publications": [[offset, text], ...]}}; then {"done": true}.
//
//   node publish.mjs API[,API...] SECRET CHANNEL COUNT
import { SlipSocketPublisher } from "../../../js/slip-sockets/dist/index.js";

const [apis, secret, channel, count] = process.argv.slice(2);
const publisher = new SlipSocketPublisher({ controlApi: apis.split(","), jwtSecret: secret });
const PAUSE_MS = 20;

async function one(i, again) {
  try {
    const { epoch, offset } = await publisher.publish(channel, `m${i}`, { key: `${channel}-m${i}`, deadlineMs: 30_000 });
    console.log(JSON.stringify({ i, epoch, offset, again }));
  } catch (err) {
    console.log(JSON.stringify({ i, error: String(err), again }));
  }
}

for (let i = 0; i < Number(count); i++) {
  await one(i, false);
  await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
}
for (let i = 0; i < Number(count); i++) await one(i, true);
// What the channel's (new) owner holds now.
const history = await publisher.history(channel);
const texts = history.publications.map((p) => ("text" in p ? [p.offset, p.text] : [p.offset, null]));
console.log(JSON.stringify({ history: { epoch: history.epoch, complete: history.complete, publications: texts } }));
console.log(JSON.stringify({ done: true }));
