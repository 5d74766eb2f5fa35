// The backend's side of SLIP Sockets: reads a callback (`parseRequest`)
// and talks to the control API (`send`, and one-liners on top of it).

import { toBase64 } from "./base64.js";
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
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1_000;

/** A channel's presence: members by connection id with their info, and how many there are in all. */
export interface Presence {
  members: { connectionId: string; info: Record<string, unknown> }[];
  count: number;
}

function parsePresence(text: string): Presence {
  const body: unknown = JSON.parse(text);
  const record = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const members: Presence["members"] = [];
  for (const m of Array.isArray(record.members) ? (record.members as unknown[]) : []) {
    if (typeof m !== "object" || m === null) continue;
    const { connectionId, info } = m as Record<string, unknown>;
    if (typeof connectionId !== "string" || typeof info !== "object" || info === null) continue;
    members.push({ connectionId, info: info as Record<string, unknown> });
  }
  return { members, count: typeof record.count === "number" ? record.count : members.length };
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

  constructor(options: SlipSocketPublisherOptions<Binary>) {
    const apis = Array.isArray(options.controlApi) ? options.controlApi : [options.controlApi];
    if (apis.length === 0 || apis.some((api) => !api)) throw new Error('"controlApi" is required');
    this.controlApis = apis;
    this.jwt = new JWT({ jwtSecret: options.jwtSecret });
    this.binaryEvents = options.binaryEvents === true;
    this.onInvalidRequest = options.onInvalidRequest ?? ((reason) => console.error(`".parseRequest" ${reason}`));
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
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

  /** Runs commands through the control API, in order; throws a `ControlApiError` naming what failed. */
  async send(events: ControlEvent[]): Promise<void> {
    const token = await this.jwt.generateToken({ audience: "ControlEvent" });
    let response: Response;
    try {
      response = await this.fetch(this.controlApi, {
        method: "POST",
        body: JSON.stringify({ events }),
        headers: { authorization: `Bearer ${token}`, "content-type": CONTENT_TYPE },
      });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ControlApiError(`".send" control API unreachable at ${this.controlApi}: ${reason}`, undefined, "", undefined, err);
    }
    if (response.ok) return;
    const body = await response.text().catch(() => "");
    throw refused(response.status, body, events);
  }

  /**
   * Publishes with an idempotency key (a fresh one unless `options.key`
   * gives one), retrying while the gateway answers 502, 503 or 504 or
   * cannot be reached, up to `options.deadlineMs`, on the next control API
   * each time: the message gets into the channel's stream once.
   */
  publishText(channelId: string, data: string, options: PublishOptions = {}): Promise<void> {
    const key = options.key ?? newIdempotencyKey();
    return this.retried({ type: "PUBLISH_TEXT", channelId, data, idempotencyKey: key }, options);
  }

  /** `publishText` for bytes. */
  publishBinary(channelId: string, data: Uint8Array, options: PublishOptions = {}): Promise<void> {
    const key = options.key ?? newIdempotencyKey();
    return this.retried({ type: "PUBLISH_BINARY", channelId, data: toBase64(data), idempotencyKey: key }, options);
  }

  /** Sends one keyed publish until it is taken, refused for good, or its deadline passes. */
  private async retried(command: ControlEvent, options: PublishOptions): Promise<void> {
    const deadline = Date.now() + (options.deadlineMs ?? PUBLISH_DEADLINE_MS);
    let wait = RETRY_FIRST_MS;
    for (let tried = 1; ; tried++) {
      try {
        return await this.send([command]);
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
   * Who is in a channel's presence, from its owner: at most `options.limit`
   * members (default 1,000) by connection id with their info, and how many
   * there are in all. Tried on each control API in turn while one cannot answer.
   */
  async presence(channel: string, options: { limit?: number } = {}): Promise<Presence> {
    const token = await this.jwt.generateToken({ audience: "ControlEvent" });
    const query = new URLSearchParams({ channel, limit: String(options.limit ?? 0) });
    let last: ControlApiError | undefined;
    for (let tried = 0; tried < this.controlApis.length; tried++) {
      const url = new URL(`presence?${query}`, this.controlApi.endsWith("/") ? this.controlApi : `${this.controlApi}/`);
      let response: Response;
      try {
        response = await this.fetch(url, { headers: { authorization: `Bearer ${token}` } });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        last = new ControlApiError(`".presence" control API unreachable at ${this.controlApi}: ${reason}`, undefined, "", undefined, err);
        this.current += 1;
        continue;
      }
      const body = await response.text().catch(() => "");
      if (response.ok) return parsePresence(body);
      last = new ControlApiError(`".presence" of ${channel} refused: ${response.status} ${body}`, response.status, body);
      if (!retryable(last)) throw last;
      this.current += 1;
    }
    throw last ?? new ControlApiError('".presence" no control API', undefined, "");
  }

  sendText(connectionId: string, data: string): Promise<void> {
    return this.send([{ type: "TEXT", connectionId, data }]);
  }

  sendBinary(connectionId: string, data: Uint8Array): Promise<void> {
    return this.send([{ type: "BINARY", connectionId, data: toBase64(data) }]);
  }

  /** Subscribes a connection; `options` may make it a member of the channel's presence and ask for join/leave frames. */
  subscribe(connectionId: string, channel: string, options?: SubscribeOptions): Promise<void> {
    return this.send([subscribeCommand(connectionId, channel, options)]);
  }

  unsubscribe(connectionId: string, channel: string): Promise<void> {
    return this.send([{ type: "UNSUBSCRIBE", connectionId, channel }]);
  }

  setMetadata(connectionId: string, metadata: JsonValue | null): Promise<void> {
    return this.send([{ type: "SET_METADATA", connectionId, metadata }]);
  }

  close(connectionId: string, code?: number, reason?: string): Promise<void> {
    const command: ControlEvent = { type: "CLOSE", connectionId };
    if (code !== undefined) command.code = code;
    if (reason !== undefined) command.reason = reason;
    return this.send([command]);
  }

  closeChannel(channelId: string): Promise<void> {
    return this.send([{ type: "CLOSE_CHANNEL", channelId }]);
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
