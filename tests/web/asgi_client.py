"""An ASGI app called in process, as a server would call it: scopes built here, answers checked.

``call`` sends one request and returns what the app answered and how much of
the body it read, checking the message order a server relies on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

GIB = 1024**3
BASE = "http://testserver"


@attrs.define
class Answer:
    """What the app sent for one request, and how much of the request body it read."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    complete: bool
    bytes_read: int
    body_read_to_end: bool

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for n, v in self.headers if n.decode().lower() == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


def scope_for(
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
) -> dict[str, Any]:
    """An HTTP scope as a server builds it from a request line and headers."""
    path, _, query = target.partition("?")
    raw_path = path.encode("latin-1")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [
            (
                (n if isinstance(n, bytes) else n.encode("latin-1")).lower(),
                v if isinstance(v, bytes) else v.encode("latin-1"),
            )
            for n, v in headers
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def call(
    app: Any,
    method: str,
    target: str,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    body_size: int | None = None,
    chunk: int = 64 * 1024,
    on_receive: Any = None,
) -> Answer:
    """Send one request to ``app``; ``body_size`` streams that many zero bytes instead of ``body``.

    The send side checks the ASGI message order as a server would (one start,
    then body messages, nothing after the last); any exception the app raises
    reaches the caller.
    """
    size = len(body) if body_size is None else body_size
    header_list = list(headers)
    if method in ("PUT", "POST") or size:
        header_list.append(("content-length", str(size)))
    sent = 0
    received = 0
    finished = False  # the body's last message was handed over

    async def receive() -> dict[str, Any]:
        nonlocal sent, received, finished
        received += 1
        if on_receive is not None:
            await on_receive(received)
        if finished:  # what a server says once the body is over: the client left
            return {"type": "http.disconnect"}
        count = min(chunk, size - sent)
        piece = body[sent : sent + count] if body_size is None else bytes(count)
        sent += count
        finished = sent >= size
        return {"type": "http.request", "body": piece, "more_body": not finished}

    start: dict[str, Any] = {}
    parts: list[bytes] = []
    done = False

    async def send(message: dict[str, Any]) -> None:
        nonlocal done
        assert not done, f"message after the response ended: {message['type']}"
        if not start:
            assert message["type"] == "http.response.start", message
            assert 100 <= message["status"] <= 599
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes)
                assert b"\r" not in value and b"\n" not in value
            start.update(message)
            return
        assert message["type"] == "http.response.body", message
        parts.append(message.get("body", b""))
        done = not message.get("more_body", False)

    await app(scope_for(method, target, header_list), receive, send)
    assert start, "the app returned without answering"
    return Answer(
        status=start["status"],
        headers=list(start.get("headers", [])),
        body=b"".join(parts),
        complete=done,
        bytes_read=sent,
        body_read_to_end=finished or size == 0,
    )


def local_path(url: str) -> str:
    """The path and query of a signed URL, as the request line carries them."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]
