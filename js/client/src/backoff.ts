// Reconnect delays: exponential backoff with full jitter (a uniformly
// random delay up to the exponential cap), so that the clients of a
// restarted edge do not all come back at the same instant.

export interface BackoffOptions {
  /** The cap of the first retry's delay, in milliseconds. */
  minDelayMs: number;
  /** The largest cap, in milliseconds. */
  maxDelayMs: number;
}

/** The delay before retry number `attempt` (0 for the first), given a random number in [0, 1). */
export function backoffDelay(attempt: number, random: number, options: BackoffOptions): number {
  const cap = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random * cap);
}
