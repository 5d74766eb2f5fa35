// src/backoff.ts
function backoffDelay(attempt, random, options) {
  const cap = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random * cap);
}

// src/frames.ts
function bytes(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
function isCount(value) {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
function parseServerFrame(text) {
  let frame;
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null) return void 0;
    frame = parsed;
  } catch {
    return void 0;
  }
  const payload = () => typeof frame.data === "string" ? { data: frame.data } : typeof frame.binary === "string" ? { binary: bytes(frame.binary) } : void 0;
  switch (frame.type) {
    case "session": {
      if (typeof frame.session !== "string" || typeof frame.connectionId !== "string") return void 0;
      const lost = Array.isArray(frame.lost) ? frame.lost.filter((l) => typeof l === "string") : [];
      const resumed = frame.resumed === true;
      return {
        type: "session",
        session: {
          token: frame.session,
          connectionId: frame.connectionId,
          resumed,
          recovered: resumed && frame.recovered === true,
          lost,
          ...frame.refresh === true ? { refresh: true } : {}
        }
      };
    }
    case "publication": {
      const body = payload();
      if (typeof frame.channel !== "string" || typeof frame.epoch !== "string" || !isCount(frame.offset) || !body) {
        return void 0;
      }
      return { type: "publication", publication: { channel: frame.channel, epoch: frame.epoch, offset: frame.offset, ...body } };
    }
    case "message": {
      const body = payload();
      if (!isCount(frame.seq) || !body) return void 0;
      return { type: "message", message: { seq: frame.seq, ...body } };
    }
    case "lost": {
      if (typeof frame.channel !== "string" || typeof frame.epoch !== "string") return void 0;
      return { type: "lost", lost: { channel: frame.channel, epoch: frame.epoch } };
    }
    case "join": {
      const info = frame.info;
      if (typeof frame.channel !== "string" || typeof frame.connectionId !== "string") return void 0;
      if (!isObject(info)) return void 0;
      const join = { channel: frame.channel, connectionId: frame.connectionId, info };
      return { type: "join", join };
    }
    case "presence": {
      if (typeof frame.channel !== "string" || !Array.isArray(frame.members) || !isCount(frame.count)) return void 0;
      const members = [];
      for (const m of frame.members) {
        if (typeof m !== "object" || m === null) continue;
        const { connectionId, info } = m;
        if (typeof connectionId !== "string" || !isObject(info)) continue;
        members.push({ connectionId, info });
      }
      return { type: "presence", presence: { channel: frame.channel, members, count: frame.count } };
    }
    case "leave": {
      if (typeof frame.channel !== "string" || typeof frame.connectionId !== "string") return void 0;
      return { type: "leave", leave: { channel: frame.channel, connectionId: frame.connectionId } };
    }
    default:
      return void 0;
  }
}
function resumeFrame(seq, channels) {
  const places = {};
  for (const [channel, position] of channels) places[channel] = { epoch: position.epoch, offset: position.offset };
  return JSON.stringify({ type: "resume", seq, channels: places });
}
function resumeUrl(url, token) {
  const separator = url.includes("?") ? "&" : "?";
  return `${url}${separator}slip_resume=${encodeURIComponent(token)}`;
}

// src/client.ts
var OPEN = 1;
var SUBPROTOCOL = "slip.v1";
var SlipClient = class {
  constructor(url, options = {}) {
    this.handlers = {
      publication: /* @__PURE__ */ new Set(),
      message: /* @__PURE__ */ new Set(),
      session: /* @__PURE__ */ new Set(),
      lost: /* @__PURE__ */ new Set(),
      join: /* @__PURE__ */ new Set(),
      leave: /* @__PURE__ */ new Set(),
      presence: /* @__PURE__ */ new Set(),
      state: /* @__PURE__ */ new Set()
    };
    this.current = "connecting";
    this.attempt = 0;
    this.next = 0;
    this.sessionOpen = false;
    this.lastSeq = 0;
    this.positions = /* @__PURE__ */ new Map();
    /** Per watched channel, its members as the join, leave and presence frames tell. */
    this.present = /* @__PURE__ */ new Map();
    this.queued = [];
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new Error("SlipClient needs at least one URL");
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (!WebSocketClass) throw new Error("no WebSocket here: pass options.WebSocket (in Node, the ws package)");
    this.WebSocketClass = WebSocketClass;
    this.options = {
      minDelayMs: options.minDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 3e4,
      maxQueued: options.maxQueued ?? 1e3
    };
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (handle) => clearTimeout(handle)
    };
    this.connect();
  }
  /**
   * The members of a channel this session watches (subscribed with `joinLeave`),
   * by connection id with their info, as the gateway's frames told them; `undefined` before any.
   */
  members(channel) {
    return this.present.get(channel);
  }
  membersOf(channel) {
    let members = this.present.get(channel);
    if (!members) this.present.set(channel, members = /* @__PURE__ */ new Map());
    return members;
  }
  on(event, handler) {
    this.handlers[event].add(handler);
    return this;
  }
  off(event, handler) {
    this.handlers[event].delete(handler);
    return this;
  }
  get state() {
    return this.current;
  }
  /** The session's connection id, once the gateway has said it. */
  get connectionId() {
    return this.id;
  }
  /** Where this client is in each channel it has received from. */
  get channels() {
    return this.positions;
  }
  /** Sends a message to the backend now, or once connected again; false if too many wait. */
  send(data) {
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
  close() {
    if (this.current === "closed") return;
    this.setState("closed");
    if (this.retry !== void 0) this.clock.clearTimeout(this.retry);
    this.retry = void 0;
    const socket = this.socket;
    this.socket = void 0;
    if (socket) {
      this.detach(socket);
      socket.close(1e3, "");
    }
  }
  connect() {
    const base = this.urls[this.next % this.urls.length];
    this.next += 1;
    const url = this.token ? resumeUrl(base, this.token) : base;
    let socket;
    try {
      socket = new this.WebSocketClass(url, SUBPROTOCOL);
    } catch {
      this.scheduleReconnect();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.sessionOpen = false;
    const resuming = this.token !== void 0;
    socket.onopen = () => {
      if (resuming) socket.send(resumeFrame(this.lastSeq, this.positions));
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.frame(event.data);
    };
    socket.onclose = () => this.dropped(socket);
    socket.onerror = () => {
    };
  }
  frame(text) {
    const frame = parseServerFrame(text);
    if (!frame) return;
    switch (frame.type) {
      case "session":
        return this.session(frame.session);
      case "publication": {
        const p = frame.publication;
        const at = this.positions.get(p.channel);
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
        const left = info ? { ...l, info } : l;
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
  session(session) {
    if (session.refresh && session.connectionId === this.id) {
      this.token = session.token;
      return;
    }
    const continued = session.resumed || this.id === void 0;
    if (!session.resumed && this.id !== void 0) {
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
      socket.send(this.queued.shift());
    }
  }
  dropped(socket) {
    if (socket !== this.socket) return;
    this.detach(socket);
    this.socket = void 0;
    this.sessionOpen = false;
    if (this.current === "closed") return;
    this.scheduleReconnect();
  }
  scheduleReconnect() {
    this.setState("reconnecting");
    const delay = backoffDelay(this.attempt, this.random(), this.options);
    this.attempt += 1;
    this.retry = this.clock.setTimeout(() => {
      this.retry = void 0;
      if (this.current !== "closed") this.connect();
    }, delay);
  }
  detach(socket) {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = null;
  }
  setState(state) {
    if (state === this.current) return;
    this.current = state;
    this.handlers.state.forEach((h) => h(state));
  }
};
export {
  SlipClient,
  backoffDelay,
  parseServerFrame,
  resumeFrame,
  resumeUrl
};
