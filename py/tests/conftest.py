"""A real gateway for the tests: ``slip dev`` (the binary built from this repository, or
``SLIP_BIN``) calling back a backend written on this library, all on 127.0.0.1."""

import os
import pathlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slip_sockets import Publisher

SECRET = "test-secret-of-at-least-32-bytes!"
ROOT = pathlib.Path(__file__).resolve().parents[2]
#: How long the gateway may take to start.
START_SECONDS = 30


def slip_binary() -> str:
    path = os.environ.get("SLIP_BIN") or str(ROOT / "target" / "debug" / "slip")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing: `cargo build --bin slip` first, or set SLIP_BIN")
    return path


class Backend(ThreadingHTTPServer):
    """Accepts every connection, subscribes it to ``room`` as a presence member named by the
    path it connected with, welcomes it, and publishes what it says to ``room``."""

    daemon_threads = True

    def __init__(self):
        self.publisher = Publisher("http://127.0.0.1:1/", SECRET)
        self.refused = []
        self.publisher.on_invalid_request = self.refused.append
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        connection = self.server.publisher.parse_request(self.headers.get("Authorization"), body)
        if connection is None:
            return self.reply(403, {}, b"Invalid token")
        for event in connection.in_events:
            if event["type"] == "OPEN":
                connection.accept()
                connection.subscribe("room", presence={"name": "py"})
                connection.send_text("welcome")
            elif event["type"] == "TEXT":
                connection.publish_text("room", event["data"])
        status, headers, reply = connection.end_response()
        self.reply(status, headers, reply)

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


class Gateway:
    def __init__(self, process, ws, control):
        self.process, self.ws, self.control = process, ws, control


@pytest.fixture
def backend():
    server = Backend()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gateway(backend):
    target = f"http://127.0.0.1:{backend.server_port}/ws"
    process = subprocess.Popen(
        [slip_binary(), "dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
         "--target-url", target, "--jwt-secret", SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    found = {}
    timer = threading.Timer(START_SECONDS, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            line = line.strip()
            for label in ("WebSocket:", "Control API:"):
                if line.startswith(label):
                    found[label] = line[len(label):].split()[0]
            if len(found) == 2:
                break
    finally:
        timer.cancel()
    if len(found) != 2:
        process.kill()
        raise RuntimeError(f"slip dev did not start: {found}")
    # Keep reading its output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    yield Gateway(process, found["WebSocket:"].rstrip("/"), found["Control API:"])
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
