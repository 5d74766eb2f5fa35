// The slip.v1 frames (docs/protocol.md, "slip.v1 sessions"), parsed and
// built as plain data: no socket, no timer.

/** Where a client is in one channel's stream. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A message published to a channel this session is subscribed to. */
export interface Publication {
  channel: string;
  epoch: string;
  offset: number;
  /** The text, or `undefined` for a binary publication. */
  data?: string;
  /** The bytes of a binary publication. */
  binary?: Uint8Array;
}

/** A message sent to this connection alone. */
export interface DirectMessage {
  seq: number;
  data?: string;
  binary?: Uint8Array;
}

/** The gateway's first frame on every connection of a session. */
export interface SessionFrame {
  token: string;
  connectionId: string;
  resumed: boolean;
  /** On a resume: whether everything missed was sent again. */
  recovered: boolean;
  /** On a resume: the channels (and "#messages") with something the client will not get. */
  lost: string[];
  /** A fresh token for the live session, nothing else: its old one would soon be too old to resume with. */
  refresh?: boolean;
}

/** A channel's stream started over: what this client had not got of the old epoch will never come. */
export interface LostFrame {
  channel: string;
  /** The epoch the stream goes on in. */
  epoch: string;
}

/** A member joined a channel's presence (or its info changed): sent to sessions subscribed with `joinLeave`. */
export interface JoinFrame {
  channel: string;
  connectionId: string;
  /** The member's presence info, as its backend gave it. */
  info: Record<string, unknown>;
}

/** A member left a channel's presence. */
export interface LeaveFrame {
  channel: string;
  connectionId: string;
}

/** A channel's presence as it stands, sent when a session begins watching it (and after a resume): replaces what the client knew. */
export interface PresenceFrame {
  channel: string;
  /** By connection id, at most the gateway's snapshot limit (1,000). */
  members: { connectionId: string; info: Record<string, unknown> }[];
  /** How many members there are in all. */
  count: number;
}

export type ServerFrame =
  | { type: "session"; session: SessionFrame }
  | { type: "publication"; publication: Publication }
  | { type: "message"; message: DirectMessage }
  | { type: "lost"; lost: LostFrame }
  | { type: "join"; join: JoinFrame }
  | { type: "leave"; leave: LeaveFrame }
  | { type: "presence"; presence: PresenceFrame };

function bytes(base64: string): Uint8Array {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** Parses a frame from the gateway; `undefined` for anything else. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let frame: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null) return undefined;
    frame = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const payload = () =>
    typeof frame.data === "string"
      ? { data: frame.data }
      : typeof frame.binary === "string"
        ? { binary: bytes(frame.binary) }
        : undefined;
  switch (frame.type) {
    case "session": {
      if (typeof frame.session !== "string" || typeof frame.connectionId !== "string") return undefined;
      const lost = Array.isArray(frame.lost) ? frame.lost.filter((l): l is string => typeof l === "string") : [];
      const resumed = frame.resumed === true;
      return {
        type: "session",
        session: {
          token: frame.session,
          connectionId: frame.connectionId,
          resumed,
          recovered: resumed && frame.recovered === true,
          lost,
          ...(frame.refresh === true ? { refresh: true } : {}),
        },
      };
    }
    case "publication": {
      const body = payload();
      if (typeof frame.channel !== "string" || typeof frame.epoch !== "string" || !isCount(frame.offset) || !body) {
        return undefined;
      }
      return { type: "publication", publication: { channel: frame.channel, epoch: frame.epoch, offset: frame.offset, ...body } };
    }
    case "message": {
      const body = payload();
      if (!isCount(frame.seq) || !body) return undefined;
      return { type: "message", message: { seq: frame.seq, ...body } };
    }
    case "lost": {
      if (typeof frame.channel !== "string" || typeof frame.epoch !== "string") return undefined;
      return { type: "lost", lost: { channel: frame.channel, epoch: frame.epoch } };
    }
    case "join": {
      const info = frame.info;
      if (typeof frame.channel !== "string" || typeof frame.connectionId !== "string") return undefined;
      if (!isObject(info)) return undefined;
      const join = { channel: frame.channel, connectionId: frame.connectionId, info };
      return { type: "join", join };
    }
    case "presence": {
      if (typeof frame.channel !== "string" || !Array.isArray(frame.members) || !isCount(frame.count)) return undefined;
      const members: PresenceFrame["members"] = [];
      for (const m of frame.members as unknown[]) {
        if (typeof m !== "object" || m === null) continue;
        const { connectionId, info } = m as Record<string, unknown>;
        if (typeof connectionId !== "string" || !isObject(info)) continue;
        members.push({ connectionId, info });
      }
      return { type: "presence", presence: { channel: frame.channel, members, count: frame.count } };
    }
    case "leave": {
      if (typeof frame.channel !== "string" || typeof frame.connectionId !== "string") return undefined;
      return { type: "leave", leave: { channel: frame.channel, connectionId: frame.connectionId } };
    }
    default:
      return undefined;
  }
}

/** The client's first frame on a resumed connection. */
export function resumeFrame(seq: number, channels: ReadonlyMap<string, Position>): string {
  const places: Record<string, Position> = {};
  for (const [channel, position] of channels) places[channel] = { epoch: position.epoch, offset: position.offset };
  return JSON.stringify({ type: "resume", seq, channels: places });
}

/** `url` with the session token to resume, as the gateway reads it. */
export function resumeUrl(url: string, token: string): string {
  const separator = url.includes("?") ? "&" : "?";
  return `${url}${separator}slip_resume=${encodeURIComponent(token)}`;
}
