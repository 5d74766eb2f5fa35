// One callback: the events it carried, and the reply being built. Commands
// queue in the order they are called; `endResponse()` puts ACCEPT first
// (the gateway accepts an opening connection only when its first command
// for it is ACCEPT), then the queue, then the metadata change and the close
// asked for.

import { toBase64 } from "./base64.js";
import type {
  CloseCommand,
  EventRequestData,
  EventResponseEvent,
  FromSlipServer,
  InEvent,
  JsonValue,
  SubscribeOptions,
} from "./events.js";
import { subscribeCommand } from "./events.js";

/** The content type of callbacks and of control requests. */
export const CONTENT_TYPE = "application/websocket-events";

export class SlipSocketConnection<E extends InEvent = FromSlipServer> {
  readonly connectionId: string;
  /** The connection's metadata as the gateway sent it (`null` if cleared). */
  readonly metadata: JsonValue | null;
  readonly inEvents: E[];
  /** Commands queued for the reply, in order. */
  readonly outEvents: EventResponseEvent[] = [];
  accepted = false;
  /** Set by `accept({ protocol })`: the subprotocol to answer the client with. */
  protocol: string | undefined = undefined;
  closed = false;
  closeCode: number | undefined = undefined;
  closeReason: string | undefined = undefined;
  /** `undefined`: unchanged; `null`: cleared. */
  newMetadata: JsonValue | null | undefined = undefined;

  constructor({ connectionId, metadata, events }: EventRequestData<E>) {
    this.connectionId = connectionId;
    this.metadata = metadata;
    this.inEvents = events;
  }

  /** Whether this callback opens the connection: its reply must `accept()` it, or it is refused. */
  isOpening(): boolean {
    return this.inEvents[0]?.type === "OPEN";
  }

  /** Accepts the opening connection, optionally answering with a subprotocol. */
  accept(options: { protocol?: string } = {}): void {
    this.accepted = true;
    this.protocol = options.protocol;
  }

  /** Closes the connection once the reply's other commands ran (code 1000 by default). */
  close(code?: number, reason?: string): void {
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
  }

  /** Subscribes this connection; `options` may make it a member of the channel's presence and ask for join/leave frames. */
  subscribe(channel: string, options?: SubscribeOptions): void {
    this.queueEvent(subscribeCommand(this.connectionId, channel, options));
  }

  unsubscribe(channel: string): void {
    this.queueEvent({ type: "UNSUBSCRIBE", connectionId: this.connectionId, channel });
  }

  sendText(data: string): void {
    this.queueEvent({ type: "TEXT", connectionId: this.connectionId, data });
  }

  /** A binary message to this connection (any target may send one; receiving BINARY events is opt-in). */
  sendBinary(data: Uint8Array): void {
    this.queueEvent({ type: "BINARY", connectionId: this.connectionId, data: toBase64(data) });
  }

  publishText(channelId: string, data: string): void {
    this.queueEvent({ type: "PUBLISH_TEXT", channelId, data });
  }

  /** The original README's spelling of `publishText`; bytes publish as binary. */
  publish(channelId: string, data: string | Uint8Array): void {
    if (typeof data === "string") this.publishText(channelId, data);
    else this.publishBinary(channelId, data);
  }

  publishBinary(channelId: string, data: Uint8Array): void {
    this.queueEvent({ type: "PUBLISH_BINARY", channelId, data: toBase64(data) });
  }

  closeChannel(channelId: string): void {
    this.queueEvent({ type: "CLOSE_CHANNEL", channelId });
  }

  /** Replaces the connection's metadata (`null` clears it); the last call wins. */
  setMetadata(metadata: JsonValue | null): void {
    this.newMetadata = metadata;
  }

  /** Queues any command, for this connection or another. */
  queueEvent(event: EventResponseEvent): void {
    this.outEvents.push(event);
  }

  /** The commands the reply carries, in the order the gateway runs them. */
  responseEvents(): EventResponseEvent[] {
    const { connectionId } = this;
    const events: EventResponseEvent[] = [];
    if (this.accepted) {
      events.push(this.protocol === undefined ? { type: "ACCEPT", connectionId } : { type: "ACCEPT", connectionId, protocol: this.protocol });
    }
    events.push(...this.outEvents);
    if (this.newMetadata !== undefined) {
      events.push({ type: "SET_METADATA", connectionId, metadata: this.newMetadata });
    }
    if (this.closed) {
      const close: CloseCommand = { type: "CLOSE", connectionId };
      if (this.closeCode !== undefined) close.code = this.closeCode;
      if (this.closeReason !== undefined) close.reason = this.closeReason;
      events.push(close);
    }
    return events;
  }

  /** The reply to the callback: `{"events": [...]}`. */
  endResponse(): Response {
    return new Response(JSON.stringify({ events: this.responseEvents() }), {
      status: 200,
      headers: { "content-type": CONTENT_TYPE },
    });
  }
}
