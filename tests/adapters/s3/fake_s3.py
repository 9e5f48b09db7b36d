"""A scripted S3 server on loopback: each request takes the next answer of its script.

For the obstore store's tests of what a real server will not do on demand:
dropped connections, bodies cut short, stalls, injected error codes, servers
that ignore ranges. Without a script entry a request gets ``fake.body``
(ranged GETs a 206 with their slice).
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from demeter_storage import Secret
from demeter_storage.adapters.s3.config import S3Config

LAST_MODIFIED = "Thu, 01 Jan 2026 00:00:00 GMT"
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeS3Server

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        fake = self.server
        fake.requests.append(f"{self.command} {self.path}")
        fake.headers.append({name.lower(): value for name, value in self.headers.items()})
        action = fake.script.pop(0) if fake.script else ("ok",)
        if action[0] == "drop":  # the connection dies without an answer
            self.close_connection = True
            self.connection.close()
            return
        if action[0] == "cut":  # the body ends early
            ranged = self.headers.get("Range") is not None
            self.send_response(206 if ranged else 200)
            if ranged:
                self.send_header("Content-Range", "bytes 0-999/1000")
            self.send_header("Content-Length", "1000")
            self.send_header("ETag", '"etag-1"')
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            self.connection.close()
            return
        if action[0] == "stall":  # no answer until the test ends
            fake.released.wait(30)
            self.close_connection = True
            return
        if action[0] == "error":
            _, status, code = action
            body = f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>"
            self._send(status, body.encode(), {"Content-Type": "application/xml"})
            return
        headers = {"ETag": '"etag-1"', "Last-Modified": LAST_MODIFIED, "Content-Type": "image/jpeg"}
        asked = _RANGE.fullmatch(self.headers.get("Range") or "")
        if asked is None or fake.ignores_ranges:
            self._send(200, fake.body, headers)
            return
        first, last = int(asked.group(1)), min(int(asked.group(2)), len(fake.body) - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{len(fake.body)}"
        self._send(206, fake.body[first : last + 1], headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()


class FakeS3Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.body = b"hello"
        self.released = threading.Event()
        self.ignores_ranges = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading (a stream closed early) is no server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def fake_s3() -> Iterator[FakeS3Server]:
    server = FakeS3Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()


def fake_config(fake: FakeS3Server, **overrides: Any) -> S3Config:
    values: dict[str, Any] = {
        "endpoint_url": fake.endpoint,
        "region": "us-east-1",
        "addressing_style": "path",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": Secret("secret"),
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
    }
    values.update(overrides)
    return S3Config(**values)
