// @slip-sockets/client: slip.v1 sessions for browsers and Node.
export { SlipClient } from "./client.js";
export type { Clock, Leaving, SessionEvent, SlipClientOptions, State, WebSocketFactory, WebSocketLike } from "./client.js";
export type {
  DirectMessage,
  JoinFrame,
  LeaveFrame,
  LostFrame,
  Position,
  PresenceFrame,
  Publication,
  SessionFrame,
} from "./frames.js";
export { parseServerFrame, resumeFrame, resumeUrl } from "./frames.js";
export { backoffDelay } from "./backoff.js";
