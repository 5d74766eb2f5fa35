import { strict as assert } from "node:assert";
import { beforeEach, test } from "node:test";

import { SlipClient, backoffDelay, parseServerFrame, resumeUrl } from "../src/index.js";
import type { DirectMessage, Publication, SessionEvent, State } from "../src/index.js";
import { FakeClock, FakeSocket } from "./fakes.js";

function publication(channel: string, epoch: string, offset: number, data: string) {
  return { type: "publication", channel, epoch, offset, data };
}

function client(clock: FakeClock, urls: string | string[] = "ws://edge-a/chat") {
  const seen = { publications: [] as Publication[], messages: [] as DirectMessage[], sessions: [] as SessionEvent[], states: [] as State[] };
  const c = new SlipClient(urls, { WebSocket: FakeSocket, clock, random: () => 0.5, minDelayMs: 100, maxDelayMs: 1000 });
  c.on("publication", (p) => seen.publications.push(p));
  c.on("message", (m) => seen.messages.push(m));
  c.on("session", (s) => seen.sessions.push(s));
  c.on("state", (s) => seen.states.push(s));
  return { c, seen };
}

beforeEach(() => {
  FakeSocket.made = [];
});

test("offers slip.v1, then delivers publications and messages and takes the session", () => {
  const clock = new FakeClock();
  const { c, seen } = client(clock);
  const socket = FakeSocket.last();
  assert.equal(socket.protocols, "slip.v1");
  assert.equal(socket.url, "ws://edge-a/chat");
  socket.open();
  socket.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  assert.equal(c.state, "open");
  assert.equal(c.connectionId, "edge-a.1");
  socket.receive(publication("room", "e1", 1, "hi"));
  socket.receive({ type: "message", seq: 1, binary: "AQID" });
  assert.deepEqual(seen.publications, [{ channel: "room", epoch: "e1", offset: 1, data: "hi" }]);
  assert.deepEqual(seen.messages, [{ seq: 1, binary: new Uint8Array([1, 2, 3]) }]);
  assert.deepEqual(c.channels.get("room"), { epoch: "e1", offset: 1 });
});

test("after a drop it waits with full jitter, then resumes with its token and places, and drops what it has", () => {
  const clock = new FakeClock();
  const { c, seen } = client(clock, ["ws://edge-a/chat", "ws://edge-b/chat?x=1"]);
  const first = FakeSocket.last();
  first.open();
  first.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  first.receive(publication("room", "e1", 1, "a"));
  first.receive(publication("room", "e1", 2, "b"));
  first.receive({ type: "message", seq: 1, data: "m1" });
  assert.equal(c.send("queued?"), true);
  assert.deepEqual(first.sent, ["queued?"], "open: sent at once");
  first.drop();
  assert.equal(c.state, "reconnecting");
  assert.equal(c.send("while away"), true, "kept for later");
  // Full jitter: half of the first cap (100 ms), with random() = 0.5.
  assert.deepEqual(clock.pending(), [50]);
  clock.advance(49);
  assert.equal(FakeSocket.made.length, 1);
  clock.advance(1);
  const second = FakeSocket.last();
  assert.equal(second.url, "ws://edge-b/chat?x=1&slip_resume=t1", "the next edge, with the token");
  second.open();
  assert.deepEqual(JSON.parse(second.sent[0] as string), {
    type: "resume",
    seq: 1,
    channels: { room: { epoch: "e1", offset: 2 } },
  });
  second.receive({ type: "session", session: "t2", connectionId: "edge-a.1", resumed: true, recovered: true, lost: [] });
  assert.deepEqual(second.sent.slice(1), ["while away"], "what waited goes after the session frame");
  // A replay overlapping what it had: each once, in order.
  second.receive(publication("room", "e1", 2, "b"));
  second.receive(publication("room", "e1", 3, "c"));
  second.receive({ type: "message", seq: 1, data: "m1" });
  second.receive({ type: "message", seq: 2, data: "m2" });
  assert.deepEqual(seen.publications.map((p) => p.data), ["a", "b", "c"]);
  assert.deepEqual(seen.messages.map((m) => m.data), ["m1", "m2"]);
  const resumed = seen.sessions[1];
  assert.equal(resumed?.resumed, true);
  assert.equal(resumed?.recovered, true);
  assert.deepEqual(seen.states, ["open", "reconnecting", "open"]);
});

test("a session that could not be resumed starts over and says so", () => {
  const clock = new FakeClock();
  const { seen } = client(clock);
  const first = FakeSocket.last();
  first.open();
  first.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  first.receive(publication("room", "e1", 5, "old"));
  first.receive({ type: "message", seq: 3, data: "old" });
  first.drop();
  clock.advance(1000);
  const second = FakeSocket.last();
  second.open();
  second.receive({ type: "session", session: "t9", connectionId: "edge-b.2", resumed: false });
  assert.equal(seen.sessions[1]?.continued, false, "the old session is gone");
  // Its places are forgotten: the new session's first publication and message go through.
  second.receive(publication("room", "e1", 1, "new"));
  second.receive({ type: "message", seq: 1, data: "new" });
  assert.deepEqual(seen.publications.map((p) => p.data), ["old", "new"]);
  assert.deepEqual(seen.messages.map((m) => m.data), ["old", "new"]);
});

test("what could not be recovered is reported; a new epoch is followed", () => {
  const clock = new FakeClock();
  const { seen } = client(clock);
  const first = FakeSocket.last();
  first.open();
  first.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  first.receive(publication("room", "e1", 7, "x"));
  first.drop();
  clock.advance(1000);
  const second = FakeSocket.last();
  second.open();
  second.receive({ type: "session", session: "t2", connectionId: "edge-a.1", resumed: true, recovered: false, lost: ["room", "#messages"] });
  second.receive(publication("room", "e2", 1, "y"));
  assert.deepEqual(seen.sessions[1]?.lost, ["room", "#messages"]);
  assert.equal(seen.sessions[1]?.recovered, false);
  assert.deepEqual(seen.publications.map((p) => p.data), ["x", "y"]);
});

test("backoff grows to its cap with full jitter, and resets once connected", () => {
  const options = { minDelayMs: 100, maxDelayMs: 1000 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, 0.999999, options)), [99, 199, 399, 799, 999, 999]);
  assert.equal(backoffDelay(5, 0, options), 0);
  const clock = new FakeClock();
  client(clock);
  for (let i = 0; i < 5; i++) {
    FakeSocket.last().drop();
    clock.advance(10_000);
  }
  assert.equal(FakeSocket.made.length, 6);
  const socket = FakeSocket.last();
  socket.open();
  socket.receive({ type: "session", session: "t", connectionId: "c", resumed: false });
  socket.drop();
  assert.deepEqual(clock.pending(), [50], "back to the first delay");
});

test("close ends it for good; garbage frames are ignored", () => {
  const clock = new FakeClock();
  const { c, seen } = client(clock);
  const socket = FakeSocket.last();
  socket.open();
  for (const garbage of ["", "null", "[]", "{", '{"type":"publication","channel":"a"}', '{"type":"message","seq":-1,"data":"x"}']) {
    socket.receive(garbage);
  }
  assert.deepEqual(seen.publications, []);
  c.close();
  assert.equal(socket.closed, true);
  assert.equal(c.state, "closed");
  clock.advance(60_000);
  assert.equal(FakeSocket.made.length, 1, "no reconnect after close");
  assert.equal(c.send("x"), false);
  assert.equal(parseServerFrame('{"type":"session","session":"t","connectionId":"c"}')?.type, "session");
  assert.equal(resumeUrl("ws://h/p", "a.b"), "ws://h/p?slip_resume=a.b");
});

test("a refreshed token replaces the old one quietly and is the one a resume uses", () => {
  const clock = new FakeClock();
  const { seen } = client(clock);
  const first = FakeSocket.last();
  first.open();
  first.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  first.receive({ type: "session", session: "t2", connectionId: "edge-a.1", resumed: true, recovered: true, lost: [], refresh: true });
  assert.equal(seen.sessions.length, 1, "no session event for a refresh");
  first.drop();
  clock.advance(1000);
  assert.match(FakeSocket.last().url, /slip_resume=t2/);
});

test("a stream that started over is told as lost, then the new epoch is delivered from its start", () => {
  const clock = new FakeClock();
  const { c, seen } = client(clock);
  const lost: { channel: string; epoch: string }[] = [];
  c.on("lost", (l) => lost.push(l));
  const socket = FakeSocket.last();
  socket.open();
  socket.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  socket.receive(publication("room", "e1", 7, "old"));
  socket.receive({ type: "lost", channel: "room", epoch: "e2" });
  socket.receive(publication("room", "e2", 1, "new"));
  assert.deepEqual(lost, [{ channel: "room", epoch: "e2" }]);
  assert.deepEqual(seen.publications.map((p) => `${p.epoch}:${p.offset}`), ["e1:7", "e2:1"]);
  assert.deepEqual(c.channels.get("room"), { epoch: "e2", offset: 1 });
  assert.equal(parseServerFrame('{"type":"lost","channel":1}'), undefined, "garbage is no frame");
});

test("joins and leaves reach their handlers in order with publications; malformed ones are dropped", () => {
  const clock = new FakeClock();
  const { c, seen } = client(clock);
  const order: string[] = [];
  c.on("join", (j) => order.push(`+${j.connectionId}:${JSON.stringify(j.info)}`));
  c.on("leave", (l) => order.push(`-${l.connectionId}`));
  c.on("publication", (p) => order.push(`=${p.data}`));
  const socket = FakeSocket.last();
  socket.open();
  socket.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  socket.receive({ type: "join", channel: "room", connectionId: "edge-a.2", info: { name: "ann" } });
  socket.receive(publication("room", "e1", 1, "hi"));
  socket.receive({ type: "join", channel: "room", connectionId: "edge-a.3", info: "not an object" });
  socket.receive({ type: "leave", channel: "room" });
  socket.receive({ type: "leave", channel: "room", connectionId: "edge-a.2" });
  assert.deepEqual(order, ['+edge-a.2:{"name":"ann"}', "=hi", "-edge-a.2"]);
  assert.equal(seen.publications.length, 1);
});

test("the members of a watched channel: a presence frame replaces them, joins and leaves change them", () => {
  const clock = new FakeClock();
  const { c } = client(clock);
  const snapshots: number[] = [];
  c.on("presence", (p) => snapshots.push(p.count));
  const left: unknown[] = [];
  c.on("leave", (l) => left.push(l.info));
  const socket = FakeSocket.last();
  socket.open();
  socket.receive({ type: "session", session: "t1", connectionId: "edge-a.1", resumed: false });
  assert.equal(c.members("room"), undefined);
  socket.receive({ type: "join", channel: "room", connectionId: "edge-a.1", info: { name: "me" } });
  socket.receive({
    type: "presence",
    channel: "room",
    count: 2,
    members: [
      { connectionId: "edge-a.1", info: { name: "me" } },
      { connectionId: "edge-b.7", info: { name: "bo" } },
      { connectionId: 3, info: {} },
    ],
  });
  assert.deepEqual([...(c.members("room")?.keys() ?? [])], ["edge-a.1", "edge-b.7"], "malformed members are skipped");
  socket.receive({ type: "leave", channel: "room", connectionId: "edge-b.7" });
  socket.receive({ type: "join", channel: "room", connectionId: "edge-c.2", info: { name: "cy" } });
  assert.deepEqual([...(c.members("room")?.entries() ?? [])], [
    ["edge-a.1", { name: "me" }],
    ["edge-c.2", { name: "cy" }],
  ]);
  assert.deepEqual(snapshots, [2]);
  assert.deepEqual(left, [{ name: "bo" }], "a leave carries the info the member had");
  assert.equal(parseServerFrame('{"type":"presence","channel":"room","members":{},"count":1}'), undefined);
});
