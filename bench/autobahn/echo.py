#!/usr/bin/env python3
"""An echo backend for the Autobahn run: every client message comes back to
its connection as it came (text as TEXT, binary as BINARY). Trusts any
caller: it listens on 127.0.0.1 for the gateway of this run only.

    PORT=3001 python3 echo.py
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = json.loads(body or b"{}")
        connection = request.get("connectionId")
        commands = []
        for event in request.get("events", []):
            kind = event.get("type")
            if kind == "OPEN":
                commands.append({"type": "ACCEPT", "connectionId": connection})
            elif kind in ("TEXT", "BINARY"):
                commands.append({"type": kind, "connectionId": connection, "data": event.get("data", "")})
        reply = json.dumps({"events": commands}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "3001"))), Handler).serve_forever()
