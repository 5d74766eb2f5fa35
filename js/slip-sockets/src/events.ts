// What the gateway POSTs (events) and what a backend answers or sends to
// the control API (commands, which the original library also calls
// events). Field names are the SLIP v4 contract's, exactly: `channel` on
// SUBSCRIBE/UNSUBSCRIBE, `channelId` on PUBLISH_TEXT and CLOSE_CHANNEL.

import { fromBase64 } from "./base64.js";

export type JsonPrimitive = string | number | boolean | null;
export type JsonArray = JsonValue[] | readonly JsonValue[];
export type JsonObject = { [key: string]: JsonValue | undefined };
export type JsonValue = JsonPrimitive | JsonObject | JsonArray;

// ---- events: gateway → backend ----

export interface OpenEvent {
  type: "OPEN";
  connectionId: string;
}

export interface TextEvent {
  type: "TEXT";
  connectionId: string;
  data: string;
  /** The same text as `data`, under the name the original README uses. */
  text: string;
}

export interface CloseEvent {
  type: "CLOSE";
  connectionId: string;
  /** The client's close code, when it sent a close frame (1006 when it vanished). */
  code?: number;
  reason?: string;
  /** The same for every CLOSE of this connection, whoever sends it: drop a CLOSE whose `eventId` you have seen. */
  eventId?: string;
}

/** Sent only to a target that opted in (`SLIP_TARGET_BINARY`, and `binaryEvents: true` here). */
export interface BinaryEvent {
  type: "BINARY";
  connectionId: string;
  data: Uint8Array;
}

/** The events every target gets (the original's `FromSlipServer`). */
export type FromSlipServer = OpenEvent | TextEvent | CloseEvent;
/** Every event, with BINARY for targets that opted in. */
export type InEvent = FromSlipServer | BinaryEvent;

/** A callback's body. */
export interface EventRequestData<E extends InEvent = FromSlipServer> {
  connectionId: string;
  metadata: JsonValue | null;
  events: E[];
}

// ---- commands: backend → gateway ----

export interface AcceptCommand {
  type: "ACCEPT";
  connectionId: string;
  /** The WebSocket subprotocol to answer the client with. */
  protocol?: string;
}
export interface TextCommand {
  type: "TEXT";
  connectionId: string;
  data: string;
}
export interface BinaryCommand {
  type: "BINARY";
  connectionId: string;
  /** Base64. */
  data: string;
}
export interface SubscribeCommand {
  type: "SUBSCRIBE";
  connectionId: string;
  channel: string;
  /** Additive: the connection is a member of the channel's presence with this info (a JSON object, at most 1 KiB). */
  presence?: Record<string, unknown>;
  /** Additive: a `slip.v1` client gets the channel's join and leave frames. */
  joinLeave?: boolean;
}

/** How a connection subscribes, beyond the channel's name. */
export interface SubscribeOptions {
  /** Makes the connection a member of the channel's presence with this info (a JSON object, at most 1 KiB). */
  presence?: Record<string, unknown>;
  /** A `slip.v1` client gets `join` and `leave` frames for the channel's presence members. */
  joinLeave?: boolean;
}

/** A SUBSCRIBE command with only the options given (an old gateway sees the command it knows). */
export function subscribeCommand(connectionId: string, channel: string, options: SubscribeOptions = {}): SubscribeCommand {
  return {
    type: "SUBSCRIBE",
    connectionId,
    channel,
    ...(options.presence !== undefined ? { presence: options.presence } : {}),
    ...(options.joinLeave ? { joinLeave: true } : {}),
  };
}
export interface UnsubscribeCommand {
  type: "UNSUBSCRIBE";
  connectionId: string;
  channel: string;
}
export interface PublishTextCommand {
  type: "PUBLISH_TEXT";
  channelId: string;
  data: string;
  /** A key seen on the channel lately gets the first publish's place, and is not delivered again. */
  idempotencyKey?: string;
}
export interface PublishBinaryCommand {
  type: "PUBLISH_BINARY";
  channelId: string;
  /** Base64. */
  data: string;
  idempotencyKey?: string;
}
export interface CloseChannelCommand {
  type: "CLOSE_CHANNEL";
  channelId: string;
}
export interface SetMetadataCommand {
  type: "SET_METADATA";
  connectionId: string;
  metadata: JsonValue | null;
}
export interface CloseCommand {
  type: "CLOSE";
  connectionId: string;
  /** Close code (1000 when left out); 4000–4999 are the application's. */
  code?: number;
  reason?: string;
}
export interface PollForConnectionCommand {
  type: "POLL_FOR_CONNECTION";
  connectionId: string;
  /** Milliseconds to wait for the connection to exist. */
  timeout: number;
}

/** What a callback's reply may hold. */
export type EventResponseEvent =
  | AcceptCommand
  | TextCommand
  | BinaryCommand
  | SubscribeCommand
  | UnsubscribeCommand
  | SetMetadataCommand
  | PublishTextCommand
  | PublishBinaryCommand
  | CloseChannelCommand
  | CloseCommand;

/** What the control API takes: the reply's commands but ACCEPT, and POLL_FOR_CONNECTION. */
export type ControlEvent = Exclude<EventResponseEvent, AcceptCommand> | PollForConnectionCommand;

// ---- parsing a callback ----

/**
 * Reads a callback's body; `null` when it is not one (a missing field, a
 * wrong type, an unknown event, BINARY where it was not asked for).
 */
export function parseEventRequest(body: unknown, binaryEvents: boolean): EventRequestData<InEvent> | null {
  if (!isObject(body) || typeof body.connectionId !== "string" || !Array.isArray(body.events)) return null;
  const events: InEvent[] = [];
  for (const raw of body.events) {
    const event = parseEvent(raw, binaryEvents);
    if (!event) return null;
    events.push(event);
  }
  const metadata = body.metadata === undefined ? null : (body.metadata as JsonValue);
  return { connectionId: body.connectionId, metadata, events };
}

function parseEvent(raw: unknown, binaryEvents: boolean): InEvent | null {
  if (!isObject(raw) || typeof raw.connectionId !== "string") return null;
  const connectionId = raw.connectionId;
  switch (raw.type) {
    case "OPEN":
      return { type: "OPEN", connectionId };
    case "TEXT":
      return typeof raw.data === "string" ? { type: "TEXT", connectionId, data: raw.data, text: raw.data } : null;
    case "CLOSE": {
      const event: CloseEvent = { type: "CLOSE", connectionId };
      if (raw.code !== undefined && raw.code !== null) {
        if (typeof raw.code !== "number") return null;
        event.code = raw.code;
      }
      if (raw.reason !== undefined && raw.reason !== null) {
        if (typeof raw.reason !== "string") return null;
        event.reason = raw.reason;
      }
      if (typeof raw.eventId === "string") event.eventId = raw.eventId;
      return event;
    }
    case "BINARY": {
      if (!binaryEvents || typeof raw.data !== "string") return null;
      const data = fromBase64(raw.data);
      return data ? { type: "BINARY", connectionId, data } : null;
    }
    default:
      return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** For the `default:` of a `switch` on `event.type`: a compile error if a case is missing. */
export function assertUnreachable(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
