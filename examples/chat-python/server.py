#!/usr/bin/env python3
"""The chat of the original SLIP Sockets README, with no SDK at all: Python's
standard library, plain HTTP and JSON. It shows the whole protocol.

    export SLIP_JWT_SECRET=$(slip gen-secret)     # 32 bytes or more, shared with the gateway
    PORT=3000 python3 server.py &
    slip dev --target-url http://127.0.0.1:3000/ws
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if not os.environ.get("SLIP_JWT_SECRET"):
    raise SystemExit("set SLIP_JWT_SECRET to the gateway's secret (`slip gen-secret` makes one)")
SECRET = os.environ["SLIP_JWT_SECRET"].encode()
CHANNEL = "cool-channel"


def b64url_decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def valid_token(authorization):
    """HS256, iss=slip-sockets, aud contains WebSocketEvent, not expired."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    try:
        header, claims, signature = authorization[len("Bearer "):].split(".")
        if json.loads(b64url_decode(header)).get("alg") != "HS256":
            return False
        expected = hmac.new(SECRET, f"{header}.{claims}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, b64url_decode(signature)):
            return False
        claims = json.loads(b64url_decode(claims))
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        return (claims.get("iss") == "slip-sockets" and "WebSocketEvent" in audiences
                and time.time() < claims.get("exp", 0))
    except (ValueError, KeyError, TypeError):
        return False


def answer(request):
    """The commands for one callback."""
    commands = []
    for event in request["events"]:
        me = event["connectionId"]
        if event["type"] == "OPEN":
            commands += [
                {"type": "ACCEPT", "connectionId": me},
                {"type": "SUBSCRIBE", "connectionId": me, "channel": CHANNEL},
                {"type": "PUBLISH_TEXT", "channelId": CHANNEL, "data": "New connection has joined!"},
                {"type": "TEXT", "connectionId": me, "data": "Welcome to the cool channel, be nice or get out"},
            ]
        elif event["type"] == "CLOSE":
            commands.append({"type": "PUBLISH_TEXT", "channelId": CHANNEL, "data": "A Connection has left"})
        elif event["type"] == "TEXT" and event["data"] == "quit":
            commands.append({"type": "CLOSE", "connectionId": me})
        elif event["type"] == "TEXT":
            commands.append({"type": "PUBLISH_TEXT", "channelId": CHANNEL, "data": f"{me} says {event['data']}"})
    return {"events": commands}


class Handler(BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        # Small replies: do not let Nagle's algorithm hold them back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not valid_token(self.headers.get("Authorization")):
            return self.reply(403, b"Invalid token", "text/plain")
        try:
            request = json.loads(body)
        except ValueError:
            return self.reply(400, b"not JSON", "text/plain")
        self.reply(200, json.dumps(answer(request)).encode(), "application/json")

    def reply(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "3000"))), Handler)
    print(f"chat backend on http://127.0.0.1:{server.server_port}/ws", flush=True)
    server.serve_forever()
