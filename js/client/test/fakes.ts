// A fake clock and a fake WebSocket: the client's rules run without time passing or a network.
import type { Clock, WebSocketLike } from "../src/client.js";

export class FakeClock implements Clock {
  now = 0;
  private timers: { at: number; callback: () => void; id: number }[] = [];
  private nextId = 1;

  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.now + ms, callback, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Runs every timer due within `ms` from now, in order. */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const due = this.timers[0];
      if (!due || due.at > until) break;
      this.timers.shift();
      this.now = due.at;
      due.callback();
    }
    this.now = until;
  }

  pending(): number[] {
    return this.timers.map((t) => t.at - this.now);
  }
}

export class FakeSocket implements WebSocketLike {
  static made: FakeSocket[] = [];
  readyState = 0;
  binaryType = "blob";
  sent: unknown[] = [];
  closed = false;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string | string[],
  ) {
    FakeSocket.made.push(this);
  }

  send(data: unknown): void {
    this.sent.push(data);
  }

  close(): void {
    this.closed = true;
    this.readyState = 3;
  }

  // The server's side:
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: object | string): void {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }

  static last(): FakeSocket {
    const socket = FakeSocket.made[FakeSocket.made.length - 1];
    if (!socket) throw new Error("no socket made");
    return socket;
  }
}
