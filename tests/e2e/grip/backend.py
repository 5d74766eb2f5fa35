"""A WebSocket-over-HTTP backend written the way one is written for Pushpin:
Python's standard library plus the unmodified GRIP library (PyPI
`gripcontrol`) to verify Grip-Sig, decode and encode the events, and publish.

    python3 backend.py KEY CONTROL_URI [PORT]

Prints `listening PORT` once ready (PORT 0 or none: any free port). Every request's events are kept and
served back as JSON at `GET /log` so a test can see what the backend saw.

Behaviour, per client message:
    echo X       -> "X" back to the sender
    binary       -> a binary message back
    meta         -> "user=<meta user>" (set at open with Set-Meta-User)
    rename X     -> sets meta user to X with a set-meta control message
    publish X    -> publishes X to channel "room" through CONTROL_URI (GRIP)
    unsubscribe  -> leaves "room"
    detach       -> detaches: the gateway stops forwarding this client
    keepalive    -> asks for a text keep-alive "ka" after 1 s of quiet
    keepalive-requests -> asks for a request every 20 s (Keep-Alive-Interval)
    close        -> closes the client with 4000 "bye"
    fail         -> answers HTTP 500
    unprefixed   -> a TEXT without the m: prefix (to be dropped)
"""

import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gripcontrol import (
    GripPubControl,
    WebSocketEvent,
    WebSocketMessageFormat,
    decode_websocket_events,
    encode_websocket_events,
    validate_sig,
    websocket_control_message,
)
from gripcontrol.websocketcontext import WebSocketContext
from pubcontrol import Item

KEY = sys.argv[1]
PUBLISHER = GripPubControl({"control_uri": sys.argv[2], "control_iss": "backend", "key": KEY})
LOG = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Small replies: without this each one waits for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            body = json.dumps(LOG).encode()
        self.reply(200, body, [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not validate_sig(self.headers.get("Grip-Sig", ""), KEY):
            self.reply(401, b"bad Grip-Sig\n")
            return
        cid = self.headers.get("Connection-Id")
        meta = {k[5:].lower(): v for k, v in self.headers.items() if k.lower().startswith("meta-")}
        events = decode_websocket_events(body)
        with LOCK:
            LOG.append({
                "cid": cid,
                "path": self.path,
                "meta": meta,
                "extensions": self.headers.get("Sec-WebSocket-Extensions"),
                "cookie": self.headers.get("Cookie"),
                "events": [[e.type, (e.content or b"").decode("latin-1")] for e in events],
            })
        ctx = WebSocketContext(cid, meta, events)
        headers = [("Content-Type", "application/websocket-events")]
        if ctx.is_opening():
            ctx.accept()
            ctx.subscribe("room")
            ctx.send("welcome")
            headers += [("Sec-WebSocket-Extensions", "grip"), ("Set-Meta-User", "ann")]
        while ctx.can_recv():
            message = ctx.recv()
            if message is None:  # the client closed: acknowledge
                ctx.close(ctx.close_code)
                break
            if isinstance(message, bytes):
                ctx.send_binary(message)
                continue
            command, _, arg = message.partition(" ")
            if command == "echo":
                ctx.send(arg)
            elif command == "binary":
                ctx.send_binary(b"\x00\x01\xfe")
            elif command == "meta":
                ctx.send("user=" + ctx.meta.get("user", ""))
            elif command == "rename":
                ctx.send_control(websocket_control_message("set-meta", {"name": "user", "value": arg}))
            elif command == "publish":
                PUBLISHER.publish("room", Item(WebSocketMessageFormat(arg)), blocking=True)
            elif command == "unsubscribe":
                ctx.unsubscribe("room")
                ctx.send("left")
            elif command == "detach":
                ctx.detach()
            elif command == "keepalive-requests":
                # Ask for a request at least every 20 s (Pushpin's floor).
                headers.append(("Keep-Alive-Interval", "20"))
                ctx.send("ok")
            elif command == "keepalive":
                ctx.send_control(websocket_control_message("keep-alive", {"content": "ka", "timeout": 1}))
            elif command == "close":
                ctx.out_events.append(WebSocketEvent("CLOSE", struct.pack(">H", 4000) + b"bye"))
            elif command == "fail":
                self.reply(500, b"failing on purpose\n")
                return
            elif command == "unprefixed":
                ctx.out_events.append(WebSocketEvent("TEXT", b"no prefix"))
                ctx.send("after unprefixed")
        out = []
        if ctx.accepted:
            out.append(WebSocketEvent("OPEN"))
        out.extend(ctx.out_events)
        if ctx.closed:
            code = ctx.out_close_code or 1000
            out.append(WebSocketEvent("CLOSE", struct.pack(">H", code)))
        self.reply(200, encode_websocket_events(out), headers)


def main():
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
