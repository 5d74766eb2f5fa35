export { SlipSocketPublisher, ControlApiError, PUBLISH_DEADLINE_MS, REQUEST_TIMEOUT_MS, newIdempotencyKey } from "./publisher.js";
export type { SlipSocketPublisherOptions, EventsFor, PublishOptions, Presence, Published, History, HistoryOptions, Publication } from "./publisher.js";
export { SlipSocketConnection, CONTENT_TYPE } from "./connection.js";
export { JWT, ISSUER, TOKEN_LIFETIME_SECONDS, MAX_TOKEN_BYTES, MIN_SECRET_BYTES, MAX_TOKEN_SECONDS, IAT_LEEWAY_SECONDS, bearer } from "./jwt.js";
export type { Audience, Claims, TokenProblem, Verified } from "./jwt.js";
export { parseEventRequest, assertUnreachable, subscribeCommand } from "./events.js";
export type * from "./events.js";
