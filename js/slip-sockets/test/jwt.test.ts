import { test } from "node:test";
import * as assert from "node:assert/strict";

import { JWT } from "../src/index.js";

const SECRET = "test-secret-of-thirty-two-bytes!";
const jwt = new JWT({ jwtSecret: SECRET });

function part(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

test("a token verifies for its audience only, until it expires, with no leeway", async () => {
  const now = 1_700_000_000_000;
  const token = await jwt.generateToken({ audience: "WebSocketEvent", now });
  const ok = await jwt.verify(token, "WebSocketEvent", now);
  assert.ok(ok.ok);
  assert.deepEqual(ok.ok && { iss: ok.claims.iss, aud: ok.claims.aud, exp: ok.claims.exp - (ok.claims.iat ?? 0) }, {
    iss: "slip-sockets",
    aud: "WebSocketEvent",
    exp: 60,
  });
  assert.deepEqual(await jwt.verify(token, "ControlEvent", now), { ok: false, problem: "audience" });
  assert.ok((await jwt.verify(token, "WebSocketEvent", now + 59_999)).ok);
  assert.deepEqual(await jwt.verify(token, "WebSocketEvent", now + 60_000), { ok: false, problem: "expired" });
});

test("another secret, a changed claim, another issuer or algorithm: refused", async () => {
  const token = await new JWT({ jwtSecret: "another-secret-of-thirty-two-by!" }).generateToken({ audience: "WebSocketEvent" });
  assert.deepEqual(await jwt.verify(token, "WebSocketEvent"), { ok: false, problem: "signature" });

  const [header, , signature] = (await jwt.generateToken({ audience: "WebSocketEvent" })).split(".");
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const longer = `${header}.${part({ iss: "slip-sockets", aud: "WebSocketEvent", exp })}.${signature}`;
  assert.deepEqual(await jwt.verify(longer, "WebSocketEvent"), { ok: false, problem: "signature" });

  const none = `${part({ alg: "none", typ: "JWT" })}.${part({ iss: "slip-sockets", aud: "WebSocketEvent", exp })}.`;
  assert.deepEqual(await jwt.verify(none, "WebSocketEvent"), { ok: false, problem: "algorithm" });
});

test("an audience array naming ours passes; the issuer must be slip-sockets", async () => {
  const sign = async (claims: object) => {
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
    const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(signed));
    return `${signed}.${Buffer.from(mac).toString("base64url")}`;
  };
  const exp = Math.floor(Date.now() / 1000) + 60;
  assert.ok((await jwt.verify(await sign({ iss: "slip-sockets", aud: ["x", "WebSocketEvent"], exp }), "WebSocketEvent")).ok);
  assert.deepEqual(await jwt.verify(await sign({ iss: "someone", aud: "WebSocketEvent", exp }), "WebSocketEvent"), {
    ok: false,
    problem: "issuer",
  });
  assert.deepEqual(await jwt.verify(await sign({ iss: "slip-sockets", aud: "WebSocketEvent" }), "WebSocketEvent"), {
    ok: false,
    problem: "expired",
  });
});

test("garbage is refused, never thrown", async () => {
  const samples = ["", "a", "a.b", "a.b.c", "..", "é.é.é", "x".repeat(10_000), "eyJ9.eyJ9.AAAA", `${part([])}.${part(1)}.AA`];
  for (let i = 0; i < 500; i++) {
    samples.push(Array.from({ length: i % 40 }, () => String.fromCharCode(32 + Math.floor(Math.random() * 95))).join(""));
  }
  for (const sample of samples) {
    const verified = await jwt.verify(sample, "WebSocketEvent");
    assert.equal(verified.ok, false, sample);
  }
  assert.equal(await jwt.verifyAuthTokenFromHeader(null, "WebSocketEvent"), false);
  assert.equal(await jwt.verifyAuthTokenFromHeader("Basic abc", "WebSocketEvent"), false);
  // No secret: nothing passes, nothing is signed (and constructing does not throw: builds load routes without secrets).
  const unconfigured = new JWT({ jwtSecret: "" });
  const token = await jwt.generateToken({ audience: "WebSocketEvent" });
  assert.deepEqual(await unconfigured.verify(token, "WebSocketEvent"), { ok: false, problem: "unconfigured" });
  await assert.rejects(unconfigured.generateToken({ audience: "ControlEvent" }), /jwtSecret/);
});

test("secrets under 32 bytes are refused; tokens living too long or issued ahead of the clock too", async () => {
  assert.throws(() => new JWT({ jwtSecret: "short" }), /32 bytes/);
  const sign = async (claims: object) => {
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
    const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(signed));
    return `${signed}.${Buffer.from(mac).toString("base64url")}`;
  };
  const now = 1_700_000_000;
  const claims = (iat: number, exp: number) => ({ iss: "slip-sockets", aud: "ControlEvent", iat, exp });
  assert.ok((await jwt.verify(await sign(claims(now, now + 3600)), "ControlEvent", now * 1000)).ok);
  assert.deepEqual(await jwt.verify(await sign(claims(now, now + 10 * 365 * 86_400)), "ControlEvent", now * 1000), { ok: false, problem: "lifetime" });
  assert.deepEqual(await jwt.verify(await sign(claims(now + 86_400, now + 86_460)), "ControlEvent", now * 1000), { ok: false, problem: "future" });
  assert.ok((await jwt.verify(await sign(claims(now + 60, now + 120)), "ControlEvent", now * 1000)).ok, "within the leeway");
  await assert.rejects(jwt.generateToken({ audience: "ControlEvent", expiresInSeconds: 7200 }), RangeError);
  const longer = new JWT({ jwtSecret: SECRET, maxTokenSeconds: 7200 });
  assert.ok((await longer.verify(await longer.generateToken({ audience: "ControlEvent", expiresInSeconds: 7200 }), "ControlEvent")).ok);
});
