// The tokens of the SLIP v4 contract: HS256 over the shared secret,
// `iss: "slip-sockets"`, `aud: "WebSocketEvent"` on callbacks and
// `"ControlEvent"` on control requests, `exp = iat + 60`, verified with no
// leeway. Written on WebCrypto (`crypto.subtle`), which Node >= 20 and
// edge runtimes both have: no dependency, and the signature check is the
// platform's constant-time one.

import { fromBase64Url, toBase64Url } from "./base64.js";

export const ISSUER = "slip-sockets";
export type Audience = "WebSocketEvent" | "ControlEvent";
/** Lifetime of the tokens this library signs, in seconds. */
export const TOKEN_LIFETIME_SECONDS = 60;
/** Longest token looked at; anything longer is refused unread. */
export const MAX_TOKEN_BYTES = 8 * 1024;
/** Shortest secret taken, in bytes (as the gateway): HS256's own key size. */
export const MIN_SECRET_BYTES = 32;
/** Default for the longest a token may live (`exp - iat`), in seconds, as the gateway's `SLIP_MAX_TOKEN_SECS`. */
export const MAX_TOKEN_SECONDS = 3600;
/** How far ahead of this clock a token's `iat` may be, in seconds (clock skew). */
export const IAT_LEEWAY_SECONDS = 60;

export interface Claims {
  iss: string;
  aud: string | string[];
  iat?: number;
  exp: number;
  nbf?: number;
  [claim: string]: unknown;
}

/** Why a token was refused ("unconfigured": this side has no secret). */
export type TokenProblem =
  | "unconfigured"
  | "missing"
  | "malformed"
  | "algorithm"
  | "signature"
  | "issuer"
  | "audience"
  | "expired"
  /** It lives longer than `maxTokenSeconds` (`exp - iat`). */
  | "lifetime"
  /** Its `iat` is ahead of this clock by more than `IAT_LEEWAY_SECONDS`. */
  | "future";

export type Verified = { ok: true; claims: Claims } | { ok: false; problem: TokenProblem };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HEADER = toBase64Url(encoder.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));

export class JWT {
  /** `null` without a secret: nothing verifies and nothing is signed. */
  private readonly key: Promise<CryptoKey> | null;
  private readonly maxTokenSeconds: number;

  /**
   * An empty secret does not throw here: frameworks (Next.js among them)
   * load route modules while building, where runtime secrets are often
   * absent. Without one, every token is refused ("unconfigured") and
   * signing throws, so a missing secret never lets anything through. A
   * secret shorter than `MIN_SECRET_BYTES` throws: the gateway refuses to
   * start with one, and it would be the weak point of every token.
   */
  constructor({ jwtSecret, maxTokenSeconds = MAX_TOKEN_SECONDS }: { jwtSecret: string; maxTokenSeconds?: number }) {
    if (jwtSecret && encoder.encode(jwtSecret).length < MIN_SECRET_BYTES) {
      throw new Error(`"jwtSecret" must be at least ${MIN_SECRET_BYTES} bytes (the gateway's "slip gen-secret" makes one)`);
    }
    this.maxTokenSeconds = maxTokenSeconds;
    this.key = jwtSecret
      ? crypto.subtle.importKey("raw", encoder.encode(jwtSecret), { name: "HMAC", hash: "SHA-256" }, false, [
          "sign",
          "verify",
        ])
      : null;
  }

  private async secret(): Promise<CryptoKey> {
    if (!this.key) throw new Error('"jwtSecret" is required to sign tokens (set the secret shared with the gateway)');
    return this.key;
  }

  /** A token for `audience`, valid for `expiresInSeconds` (60 by default). */
  async generateToken({
    audience,
    expiresInSeconds = TOKEN_LIFETIME_SECONDS,
    now = Date.now(),
  }: {
    audience: Audience;
    expiresInSeconds?: number;
    now?: number;
  }): Promise<string> {
    if (expiresInSeconds > this.maxTokenSeconds) {
      throw new RangeError(`a token lives at most ${this.maxTokenSeconds} s; asked for ${expiresInSeconds}`);
    }
    const iat = Math.floor(now / 1000);
    const claims = { iss: ISSUER, aud: audience, iat, exp: iat + expiresInSeconds };
    const signed = `${HEADER}.${toBase64Url(encoder.encode(JSON.stringify(claims)))}`;
    const signature = await crypto.subtle.sign("HMAC", await this.secret(), encoder.encode(signed));
    return `${signed}.${toBase64Url(new Uint8Array(signature))}`;
  }

  /** Checks a token's signature, issuer, audience and expiry, and says what was wrong. */
  async verify(token: string | null | undefined, audience: Audience, now = Date.now()): Promise<Verified> {
    if (!this.key) return { ok: false, problem: "unconfigured" };
    if (!token) return { ok: false, problem: "missing" };
    if (token.length > MAX_TOKEN_BYTES) return { ok: false, problem: "malformed" };
    const parts = token.split(".");
    if (parts.length !== 3) return { ok: false, problem: "malformed" };
    const [headerPart, claimsPart, signaturePart] = parts as [string, string, string];
    const header = parseJson(fromBase64Url(headerPart));
    const claims = parseJson(fromBase64Url(claimsPart));
    const signature = fromBase64Url(signaturePart);
    if (!isObject(header) || !isObject(claims) || !signature) return { ok: false, problem: "malformed" };
    // Only HS256: a token naming "none" or another algorithm is never tried.
    if (header.alg !== "HS256") return { ok: false, problem: "algorithm" };
    const valid = await crypto.subtle.verify(
      "HMAC",
      await this.key,
      signature as BufferSource,
      encoder.encode(`${headerPart}.${claimsPart}`),
    );
    if (!valid) return { ok: false, problem: "signature" };
    if (claims.iss !== ISSUER) return { ok: false, problem: "issuer" };
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(audience)) return { ok: false, problem: "audience" };
    const seconds = now / 1000;
    if (typeof claims.exp !== "number" || seconds >= claims.exp) return { ok: false, problem: "expired" };
    if (typeof claims.nbf === "number" && seconds < claims.nbf) return { ok: false, problem: "expired" };
    const iat = typeof claims.iat === "number" ? claims.iat : undefined;
    if (iat !== undefined && iat > seconds + IAT_LEEWAY_SECONDS) return { ok: false, problem: "future" };
    if (claims.exp - (iat ?? seconds) > this.maxTokenSeconds) return { ok: false, problem: "lifetime" };
    return { ok: true, claims: claims as Claims };
  }

  /** The token of an `Authorization: Bearer <token>` header, verified for `audience`. */
  async verifyAuthTokenFromHeader(authorization: string | null | undefined, audience: Audience): Promise<boolean> {
    return (await this.verify(bearer(authorization), audience)).ok;
  }
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearer(authorization: string | null | undefined): string | null {
  const match = authorization?.match(/^Bearer (.+)$/);
  return match?.[1] ?? null;
}

function parseJson(bytes: Uint8Array | null): unknown {
  if (!bytes) return null;
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
