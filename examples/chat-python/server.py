#!/usr/bin/env python3
"""The chat of the original SLIP Sockets README on the Python library
(``py/`` in the repository; ``pip install ./py``), with the standard
library's HTTP server.

    pip install ./py                               # from the repository's root
    export SLIP_JWT_SECRET=$(slip gen-secret)     # 32 bytes or more, shared with the gateway
    PORT=3000 python3 examples/chat-python/server.py &
    slip dev --target-url http://127.0.0.1:3000/ws

The library checks each callback's token (``parse_request``) and builds the
reply (``end_response``); the same ``Publisher`` publishes from anywhere else
in a backend, with idempotency keys and retries (``publisher.publish``).
"""

import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slip_sockets import Connection, Publisher

if not os.environ.get("SLIP_JWT_SECRET"):
    raise SystemExit("set SLIP_JWT_SECRET to the gateway's secret (`slip gen-secret` makes one)")
publisher = Publisher(os.environ.get("SLIP_CONTROL_API", "http://127.0.0.1:7070/"), os.environ["SLIP_JWT_SECRET"])
CHANNEL = "cool-channel"


def answer(connection: Connection) -> None:
    """Queues the commands for one callback."""
    for event in connection.in_events:
        if event["type"] == "OPEN":
            connection.accept()
            connection.subscribe(CHANNEL)
            connection.publish_text(CHANNEL, "New connection has joined!")
            connection.send_text("Welcome to the cool channel, be nice or get out")
        elif event["type"] == "CLOSE":
            connection.publish_text(CHANNEL, "A Connection has left")
        elif event["type"] == "TEXT" and event["data"] == "quit":
            connection.close()
        elif event["type"] == "TEXT":
            connection.publish_text(CHANNEL, f"{connection.connection_id} says {event['data']}")


class Handler(BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        # Small replies: do not let Nagle's algorithm hold them back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        connection = publisher.parse_request(self.headers.get("Authorization"), body)
        if connection is None:
            return self.reply(403, {"Content-Type": "text/plain"}, b"Invalid token")
        answer(connection)
        self.reply(*connection.end_response())

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "3000"))), Handler)
    print(f"chat backend on http://127.0.0.1:{server.server_port}/ws", flush=True)
    server.serve_forever()
