// SlipClient: a slip.v1 session over a WebSocket that comes back. It
// reconnects with backoff, resumes its session with the places it has
// reached, drops what it has already delivered, and tells the application
// whether anything was lost.

import { backoffDelay } from "./backoff.js";
import { parseServerFrame, resumeFrame, resumeUrl } from "./frames.js";
import type {
  DirectMessage,
  JoinFrame,
  LeaveFrame,
  LostFrame,
  Position,
  PresenceFrame,
  Publication,
  SessionFrame,
} from "./frames.js";

/** What a WebSocket must offer: the browser's, or the `ws` package's in Node. */
export interface WebSocketLike {
  readyState: number;
  binaryType: string;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketFactory = new (url: string, protocols: string | string[]) => WebSocketLike;

/** The timer functions the client uses; tests pass a fake clock. */
export interface Clock {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type State = "connecting" | "open" | "reconnecting" | "closed";

/** What a (re)connection settled, from the session frame. */
export interface SessionEvent extends SessionFrame {
  /** False on a fresh session that replaced one that could not be resumed. */
  continued: boolean;
}

export interface SlipClientOptions {
  /** The WebSocket class (default: the global one, as in browsers). */
  WebSocket?: WebSocketFactory;
  /** First reconnect delay cap, ms (default 500). */
  minDelayMs?: number;
  /** Largest reconnect delay cap, ms (default 30,000). */
  maxDelayMs?: number;
  /** Messages `send` keeps while disconnected, at most (default 1,000); past it `send` returns false. */
  maxQueued?: number;
  random?: () => number;
  clock?: Clock;
}

/** A member leaving, with the info it had as the client knew it. */
export type Leaving = LeaveFrame & { info?: Record<string, unknown> };

interface Handlers {
  publication: (publication: Publication) => void;
  message: (message: DirectMessage) => void;
  session: (session: SessionEvent) => void;
  /** A channel's stream started over (every copy of it was lost): some of its publications will never come. */
  lost: (lost: LostFrame) => void;
  /** A member joined the presence of a channel this session subscribed to with `joinLeave` (or its info changed). */
  join: (join: JoinFrame) => void;
  /** A member left the presence of such a channel (with its info, if the client knew it). */
  leave: (leave: Leaving) => void;
  /** The members of such a channel as they stand: when the session begins watching it, and after a resume. */
  presence: (presence: PresenceFrame) => void;
  state: (state: State) => void;
}

const OPEN = 1;
const SUBPROTOCOL = "slip.v1";

export class SlipClient {
  private readonly urls: string[];
  private readonly WebSocketClass: WebSocketFactory;
  private readonly options: Required<Pick<SlipClientOptions, "minDelayMs" | "maxDelayMs" | "maxQueued">>;
  private readonly random: () => number;
  private readonly clock: Clock;
  private readonly handlers: { [K in keyof Handlers]: Set<Handlers[K]> } = {
    publication: new Set(),
    message: new Set(),
    session: new Set(),
    lost: new Set(),
    join: new Set(),
    leave: new Set(),
    presence: new Set(),
    state: new Set(),
  };
  private socket: WebSocketLike | undefined;
  private current: State = "connecting";
  private attempt = 0;
  private next = 0;
  private retry: unknown;
  private token: string | undefined;
  private id: string | undefined;
  private sessionOpen = false;
  private lastSeq = 0;
  private readonly positions = new Map<string, Position>();
  /** Per watched channel, its members as the join, leave and presence frames tell. */
  private readonly present = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly queued: (string | ArrayBufferLike | ArrayBufferView)[] = [];

  constructor(url: string | string[], options: SlipClientOptions = {}) {
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new Error("SlipClient needs at least one URL");
    const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WebSocketClass) throw new Error("no WebSocket here: pass options.WebSocket (in Node, the ws package)");
    this.WebSocketClass = WebSocketClass;
    this.options = {
      minDelayMs: options.minDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      maxQueued: options.maxQueued ?? 1_000,
    };
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
    };
    this.connect();
  }

  /**
   * The members of a channel this session watches (subscribed with `joinLeave`),
   * by connection id with their info, as the gateway's frames told them; `undefined` before any.
   */
  members(channel: string): ReadonlyMap<string, Record<string, unknown>> | undefined {
    return this.present.get(channel);
  }

  private membersOf(channel: string): Map<string, Record<string, unknown>> {
    let members = this.present.get(channel);
    if (!members) this.present.set(channel, (members = new Map()));
    return members;
  }

  on<K extends keyof Handlers>(event: K, handler: Handlers[K]): this {
    this.handlers[event].add(handler);
    return this;
  }

  off<K extends keyof Handlers>(event: K, handler: Handlers[K]): this {
    this.handlers[event].delete(handler);
    return this;
  }

  get state(): State {
    return this.current;
  }

  /** The session's connection id, once the gateway has said it. */
  get connectionId(): string | undefined {
    return this.id;
  }

  /** Where this client is in each channel it has received from. */
  get channels(): ReadonlyMap<string, Position> {
    return this.positions;
  }

  /** Sends a message to the backend now, or once connected again; false if too many wait. */
  send(data: string | ArrayBufferLike | ArrayBufferView): boolean {
    if (this.current === "closed") return false;
    if (this.sessionOpen && this.socket?.readyState === OPEN) {
      this.socket.send(data);
      return true;
    }
    if (this.queued.length >= this.options.maxQueued) return false;
    this.queued.push(data);
    return true;
  }

  /** Ends the session: the gateway tells the backend at once. */
  close(): void {
    if (this.current === "closed") return;
    this.setState("closed");
    if (this.retry !== undefined) this.clock.clearTimeout(this.retry);
    this.retry = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      this.detach(socket);
      socket.close(1000, "");
    }
  }

  private connect(): void {
    const base = this.urls[this.next % this.urls.length];
    this.next += 1;
    const url = this.token ? resumeUrl(base, this.token) : base;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketClass(url, SUBPROTOCOL);
    } catch {
      this.scheduleReconnect();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.sessionOpen = false;
    const resuming = this.token !== undefined;
    socket.onopen = () => {
      if (resuming) socket.send(resumeFrame(this.lastSeq, this.positions));
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.frame(event.data);
    };
    socket.onclose = () => this.dropped(socket);
    socket.onerror = () => {
      // A close follows; it decides what happens next.
    };
  }

  private frame(text: string): void {
    const frame = parseServerFrame(text);
    if (!frame) return;
    switch (frame.type) {
      case "session":
        return this.session(frame.session);
      case "publication": {
        const p = frame.publication;
        const at = this.positions.get(p.channel);
        // Delivered already (a replay overlapping what came live): dropped.
        if (at && at.epoch === p.epoch && p.offset <= at.offset) return;
        this.positions.set(p.channel, { epoch: p.epoch, offset: p.offset });
        this.handlers.publication.forEach((h) => h(p));
        return;
      }
      case "message": {
        if (frame.message.seq <= this.lastSeq) return;
        this.lastSeq = frame.message.seq;
        this.handlers.message.forEach((h) => h(frame.message));
        return;
      }
      case "lost":
        this.handlers.lost.forEach((h) => h(frame.lost));
        return;
      case "join": {
        const j = frame.join;
        this.membersOf(j.channel).set(j.connectionId, j.info);
        this.handlers.join.forEach((h) => h(j));
        return;
      }
      case "leave": {
        const l = frame.leave;
        const members = this.present.get(l.channel);
        const info = members?.get(l.connectionId);
        members?.delete(l.connectionId);
        const left: Leaving = info ? { ...l, info } : l;
        this.handlers.leave.forEach((h) => h(left));
        return;
      }
      case "presence": {
        const p = frame.presence;
        this.present.set(p.channel, new Map(p.members.map((m) => [m.connectionId, m.info])));
        this.handlers.presence.forEach((h) => h(p));
        return;
      }
    }
  }

  private session(session: SessionFrame): void {
    if (session.refresh && session.connectionId === this.id) {
      // The same session, a younger token for the next resume.
      this.token = session.token;
      return;
    }
    const continued = session.resumed || this.id === undefined;
    if (!session.resumed && this.id !== undefined) {
      // The old session could not be resumed: this is a new one, from scratch.
      this.positions.clear();
      this.present.clear();
      this.lastSeq = 0;
    }
    this.token = session.token;
    this.id = session.connectionId;
    this.sessionOpen = true;
    this.attempt = 0;
    this.setState("open");
    this.handlers.session.forEach((h) => h({ ...session, continued }));
    const socket = this.socket;
    while (socket && socket.readyState === OPEN && this.queued.length > 0) {
      socket.send(this.queued.shift() as string);
    }
  }

  private dropped(socket: WebSocketLike): void {
    if (socket !== this.socket) return;
    this.detach(socket);
    this.socket = undefined;
    this.sessionOpen = false;
    if (this.current === "closed") return;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.setState("reconnecting");
    const delay = backoffDelay(this.attempt, this.random(), this.options);
    this.attempt += 1;
    this.retry = this.clock.setTimeout(() => {
      this.retry = undefined;
      if (this.current !== "closed") this.connect();
    }, delay);
  }

  private detach(socket: WebSocketLike): void {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
  }

  private setState(state: State): void {
    if (state === this.current) return;
    this.current = state;
    this.handlers.state.forEach((h) => h(state));
  }
}
