// The backend's side of SLIP Sockets: reads a callback (`parseRequest`)
// and talks to the control API (`send`, and one-liners on top of it).

import { fromBase64, toBase64 } from "./base64.js";
import { CONTENT_TYPE, SlipSocketConnection } from "./connection.js";
import { bearer, JWT } from "./jwt.js";
import type { ControlEvent, EventRequestData, FromSlipServer, InEvent, JsonValue, SubscribeOptions } from "./events.js";
import { parseEventRequest, subscribeCommand } from "./events.js";

export interface SlipSocketPublisherOptions<Binary extends boolean = false> {
  /**
   * The gateway's HTTP control API, e.g. `http://127.0.0.1:7070/`; or the
   * control APIs of several control nodes: a publish one of them refuses
   * (it is down, paused, or cut off from the others) is retried on the next.
   */
  controlApi: string | string[];
  /** The secret shared with the gateway (`SLIP_JWT_SECRET`). */
  jwtSecret: string;
  /** The gateway sends BINARY events (`SLIP_TARGET_BINARY`): `inEvents` may hold them. */
  binaryEvents?: Binary;
  /** Told why a request was refused (default: `console.error`). */
  onInvalidRequest?: (reason: string) => void;
  /** The `fetch` to reach the control API with (default: the global one). */
  fetch?: typeof fetch;
  /**
   * Longest wait for one answer of the control API, ms (default 5,000): a
   * control node that is paused or cut off answers nothing, and the next
   * one is tried.
   */
  requestTimeoutMs?: number;
}

/** How a publish is retried. */
export interface PublishOptions {
  /** Its idempotency key (at most 128 bytes); a fresh one when not given. */
  key?: string;
  /** How long it is retried while the gateway cannot take it, ms (default 10,000). */
  deadlineMs?: number;
}

/** How long a publish is retried by default, ms. */
export const PUBLISH_DEADLINE_MS = 10_000;
/** Longest wait for one answer of the control API by default, ms. */
export const REQUEST_TIMEOUT_MS = 5_000;
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1_000;

/**
 * Where a publish went in: the channel's stream `epoch` and the `offset` it
 * got there. A publish retried with the same key reports the offset its
 * first attempt got. (`epoch` "" and `offset` 0: the gateway is older and
 * did not say.)
 */
export interface Published {
  channel: string;
  epoch: string;
  offset: number;
}

/** What to read of a channel's history: after `sinceOffset` of `sinceEpoch` (everything held when not given), at most `limit`. */
export interface HistoryOptions {
  sinceEpoch?: string;
  sinceOffset?: number;
  /** At most this many publications (0 or absent: as many as history holds). */
  limit?: number;
}

/** One publication of a channel's stream: text or bytes, and its offset. */
export type Publication = { offset: number; text: string } | { offset: number; binary: Uint8Array };

/**
 * A channel's stream as its owner holds it: its `epoch`, its last offset,
 * the publications asked for, oldest first, and whether they are all there
 * (`complete` is false when `sinceEpoch` is not the stream's epoch or history
 * no longer holds everything after `sinceOffset`).
 */
export interface History {
  channel: string;
  epoch: string;
  topOffset: number;
  complete: boolean;
  publications: Publication[];
}

function record(text: string): Record<string, unknown> {
  const body: unknown = JSON.parse(text);
  return (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
}

/** The `publishes` of a control API reply (none from an older gateway, or a reply that is not JSON). */
function parsePublishes(text: string): Published[] {
  let body: Record<string, unknown>;
  try {
    body = record(text);
  } catch {
    return [];
  }
  const publishes: Published[] = [];
  for (const p of Array.isArray(body.publishes) ? (body.publishes as unknown[]) : []) {
    if (typeof p !== "object" || p === null) continue;
    const { channel, epoch, offset } = p as Record<string, unknown>;
    if (typeof channel === "string" && typeof epoch === "string" && typeof offset === "number") {
      publishes.push({ channel, epoch, offset });
    }
  }
  return publishes;
}

function parseHistory(text: string): History {
  const body = record(text);
  const publications: Publication[] = [];
  for (const p of Array.isArray(body.publications) ? (body.publications as unknown[]) : []) {
    if (typeof p !== "object" || p === null) continue;
    const { offset, text: t, binary } = p as Record<string, unknown>;
    if (typeof offset !== "number") continue;
    if (typeof t === "string") publications.push({ offset, text: t });
    else if (typeof binary === "string") {
      const bytes = fromBase64(binary);
      if (bytes) publications.push({ offset, binary: bytes });
    }
  }
  return {
    channel: typeof body.channel === "string" ? body.channel : "",
    epoch: typeof body.epoch === "string" ? body.epoch : "",
    topOffset: typeof body.topOffset === "number" ? body.topOffset : 0,
    complete: body.complete === true,
    publications,
  };
}

/** A channel's presence: members by connection id with their info, and how many there are in all. */
export interface Presence {
  members: { connectionId: string; info: Record<string, unknown> }[];
  count: number;
}

function parsePresence(text: string): Presence {
  const body = record(text);
  const members: Presence["members"] = [];
  for (const m of Array.isArray(body.members) ? (body.members as unknown[]) : []) {
    if (typeof m !== "object" || m === null) continue;
    const { connectionId, info } = m as Record<string, unknown>;
    if (typeof connectionId !== "string" || typeof info !== "object" || info === null) continue;
    members.push({ connectionId, info: info as Record<string, unknown> });
  }
  return { members, count: typeof body.count === "number" ? body.count : members.length };
}

/** A fresh idempotency key. */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** Events a connection carries: BINARY too, when the publisher opted in. */
export type EventsFor<Binary extends boolean> = Binary extends true ? InEvent : FromSlipServer;

/** The control API refused a request, or could not be reached. */
export class ControlApiError extends Error {
  /** The HTTP status; `undefined` when the API could not be reached. */
  readonly status: number | undefined;
  /** The API's reply, as it sent it. */
  readonly body: string;
  /** The command the API named as the one it refused, when it named one. */
  readonly command: ControlEvent | undefined;

  constructor(message: string, status: number | undefined, body: string, command?: ControlEvent, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "ControlApiError";
    this.status = status;
    this.body = body;
    this.command = command;
  }
}

export class SlipSocketPublisher<Binary extends boolean = false> {
  /** The control API requests go to now. */
  get controlApi(): string {
    return this.controlApis[this.current % this.controlApis.length] as string;
  }
  readonly controlApis: string[];
  private current = 0;
  readonly jwt: JWT;
  private readonly binaryEvents: boolean;
  private readonly onInvalidRequest: (reason: string) => void;
  private readonly fetch: typeof fetch;
  private readonly requestTimeoutMs: number;

  constructor(options: SlipSocketPublisherOptions<Binary>) {
    const apis = Array.isArray(options.controlApi) ? options.controlApi : [options.controlApi];
    if (apis.length === 0 || apis.some((api) => !api)) throw new Error('"controlApi" is required');
    this.controlApis = apis;
    this.jwt = new JWT({ jwtSecret: options.jwtSecret });
    this.binaryEvents = options.binaryEvents === true;
    this.onInvalidRequest = options.onInvalidRequest ?? ((reason) => console.error(`".parseRequest" ${reason}`));
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  /**
   * The connection a callback is about, or `null` when the request is not a
   * callback from the gateway: a token that fails (signature, issuer,
   * audience, expiry) or a body that is not a callback. The token is
   * checked before the body is read.
   */
  async parseRequest(request: Request): Promise<SlipSocketConnection<EventsFor<Binary>> | null> {
    const token = await this.jwt.verify(bearer(request.headers.get("authorization")), "WebSocketEvent");
    if (!token.ok) {
      this.onInvalidRequest(`bad token (${token.problem})`);
      return null;
    }
    let body: unknown;
    try {
      body = await request.json();
    } catch {
      this.onInvalidRequest("body is not JSON");
      return null;
    }
    const parsed = parseEventRequest(body, this.binaryEvents);
    if (!parsed) {
      this.onInvalidRequest("body is not a callback");
      return null;
    }
    // BINARY events are in it only when `binaryEvents` let them through.
    return new SlipSocketConnection(parsed as EventRequestData<EventsFor<Binary>>);
  }

  /**
   * Runs commands through the control API, in order; throws a
   * `ControlApiError` naming what failed. Gives where each publish among
   * them went in, in order.
   */
  async send(events: ControlEvent[]): Promise<Published[]> {
    const token = await this.jwt.generateToken({ audience: "ControlEvent" });
    let response: Response;
    try {
      response = await this.fetch(this.controlApi, {
        method: "POST",
        body: JSON.stringify({ events }),
        headers: { authorization: `Bearer ${token}`, "content-type": CONTENT_TYPE },
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ControlApiError(`".send" control API unreachable at ${this.controlApi}: ${reason}`, undefined, "", undefined, err);
    }
    const body = await response.text().catch(() => "");
    if (response.ok) return parsePublishes(body);
    throw refused(response.status, body, events);
  }

  /**
   * Publishes text, or bytes as binary, with an idempotency key (a fresh
   * one unless `options.key` gives one), retrying while the gateway answers
   * 502, 503 or 504 or cannot be reached, up to `options.deadlineMs`, on the
   * next control API each time: the message gets into the channel's stream
   * once. Gives its epoch and offset there.
   */
  publish(channelId: string, data: string | Uint8Array, options: PublishOptions = {}): Promise<Published> {
    return typeof data === "string" ? this.publishText(channelId, data, options) : this.publishBinary(channelId, data, options);
  }

  /** `publish` for text. */
  publishText(channelId: string, data: string, options: PublishOptions = {}): Promise<Published> {
    const key = options.key ?? newIdempotencyKey();
    return this.retried({ type: "PUBLISH_TEXT", channelId, data, idempotencyKey: key }, channelId, options);
  }

  /** `publish` for bytes. */
  publishBinary(channelId: string, data: Uint8Array, options: PublishOptions = {}): Promise<Published> {
    const key = options.key ?? newIdempotencyKey();
    return this.retried({ type: "PUBLISH_BINARY", channelId, data: toBase64(data), idempotencyKey: key }, channelId, options);
  }

  /** Sends one keyed publish until it is taken, refused for good, or its deadline passes. */
  private async retried(command: ControlEvent, channel: string, options: PublishOptions): Promise<Published> {
    const deadline = Date.now() + (options.deadlineMs ?? PUBLISH_DEADLINE_MS);
    let wait = RETRY_FIRST_MS;
    for (let tried = 1; ; tried++) {
      try {
        const [published] = await this.send([command]);
        return published ?? { channel, epoch: "", offset: 0 };
      } catch (err) {
        if (!(err instanceof ControlApiError) || !retryable(err) || Date.now() + wait >= deadline) throw err;
        // The next control API; a pause once each has said no.
        this.current += 1;
        if (tried % this.controlApis.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          wait = Math.min(wait * 2, RETRY_MAX_MS);
        }
      }
    }
  }

  /**
   * A channel's history from its owner: the publications after
   * `options.sinceOffset` of `options.sinceEpoch` (everything held when not
   * given), oldest first. A reader that has seen offset N of epoch E asks
   * `{ sinceEpoch: E, sinceOffset: N }` and gets what it missed, or
   * `complete: false` when that can no longer be given whole.
   */
  async history(channel: string, options: HistoryOptions = {}): Promise<History> {
    const query = new URLSearchParams({
      channel,
      sinceEpoch: options.sinceEpoch ?? "",
      sinceOffset: String(options.sinceOffset ?? 0),
      limit: String(options.limit ?? 0),
    });
    return parseHistory(await this.read("history", query, channel));
  }

  /**
   * Who is in a channel's presence, from its owner: at most `options.limit`
   * members (default 1,000) by connection id with their info, and how many
   * there are in all. Tried on each control API in turn while one cannot answer.
   */
  async presence(channel: string, options: { limit?: number } = {}): Promise<Presence> {
    const query = new URLSearchParams({ channel, limit: String(options.limit ?? 0) });
    return parsePresence(await this.read("presence", query, channel));
  }

  /** A GET of the control API (`presence`, `history`), tried on each control API in turn while one cannot answer. */
  private async read(path: "presence" | "history", query: URLSearchParams, channel: string): Promise<string> {
    const token = await this.jwt.generateToken({ audience: "ControlEvent" });
    let last: ControlApiError | undefined;
    for (let tried = 0; tried < this.controlApis.length; tried++) {
      const url = new URL(`${path}?${query}`, this.controlApi.endsWith("/") ? this.controlApi : `${this.controlApi}/`);
      let response: Response;
      try {
        response = await this.fetch(url, {
          headers: { authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(this.requestTimeoutMs),
        });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        last = new ControlApiError(`".${path}" control API unreachable at ${this.controlApi}: ${reason}`, undefined, "", undefined, err);
        this.current += 1;
        continue;
      }
      const body = await response.text().catch(() => "");
      if (response.ok) return body;
      last = new ControlApiError(`".${path}" of ${channel} refused: ${response.status} ${body}`, response.status, body);
      if (!retryable(last)) throw last;
      this.current += 1;
    }
    throw last ?? new ControlApiError(`".${path}" no control API`, undefined, "");
  }

  /** `send` for commands that publish nothing. */
  private async run(events: ControlEvent[]): Promise<void> {
    await this.send(events);
  }

  sendText(connectionId: string, data: string): Promise<void> {
    return this.run([{ type: "TEXT", connectionId, data }]);
  }

  sendBinary(connectionId: string, data: Uint8Array): Promise<void> {
    return this.run([{ type: "BINARY", connectionId, data: toBase64(data) }]);
  }

  /** Subscribes a connection; `options` may make it a member of the channel's presence and ask for join/leave frames. */
  subscribe(connectionId: string, channel: string, options?: SubscribeOptions): Promise<void> {
    return this.run([subscribeCommand(connectionId, channel, options)]);
  }

  unsubscribe(connectionId: string, channel: string): Promise<void> {
    return this.run([{ type: "UNSUBSCRIBE", connectionId, channel }]);
  }

  setMetadata(connectionId: string, metadata: JsonValue | null): Promise<void> {
    return this.run([{ type: "SET_METADATA", connectionId, metadata }]);
  }

  close(connectionId: string, code?: number, reason?: string): Promise<void> {
    const command: ControlEvent = { type: "CLOSE", connectionId };
    if (code !== undefined) command.code = code;
    if (reason !== undefined) command.reason = reason;
    return this.run([command]);
  }

  closeChannel(channelId: string): Promise<void> {
    return this.run([{ type: "CLOSE_CHANNEL", channelId }]);
  }
}

/** Worth sending the same keyed publish again: the gateway could not take it just now. */
function retryable(err: ControlApiError): boolean {
  return err.status === undefined || err.status === 502 || err.status === 503 || err.status === 504;
}

/**
 * The error for a refusal, naming the command at fault when the control API
 * names one: a batch that breaks a rule is refused whole with 400
 * `{"message": "invalid commands", "error": "command 1: ..."}` (nothing
 * ran); a command that could not be carried out stops the batch with
 * `{"message": "command failed", "index": 1, ...}` (those before it ran).
 */
function refused(status: number, body: string, events: ControlEvent[]): ControlApiError {
  let detail = body.trim();
  let index: number | undefined;
  try {
    const reply = JSON.parse(body) as { message?: unknown; error?: unknown; index?: unknown };
    detail = [reply.message, reply.error].filter((part) => typeof part === "string").join(": ") || detail;
    if (typeof reply.index === "number") index = reply.index;
  } catch {
    // Not JSON (a proxy's page, "Invalid token"): shown as sent.
  }
  const named = /^invalid commands: command (\d+)/.exec(detail);
  if (index === undefined && named) index = Number(named[1]);
  const command = index === undefined ? undefined : events[index];
  const which = command ? ` (${command.type} at index ${index})` : "";
  const ran = command && !named && index !== undefined && index > 0 ? `; the ${index} before it ran` : "";
  return new ControlApiError(`".send" control API refused the request with ${status}${which}: ${detail}${ran}`, status, body, command);
}
