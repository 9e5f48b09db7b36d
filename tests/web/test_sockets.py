"""The signed-URL app on a real uvicorn, spoken to by a hostile client over raw sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.live_server import PHOTO, Server

pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as running:
        running.run(running.store.put("s1/a.jpg", PHOTO, content_type="image/jpeg"))
        yield running


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def connect(server: Server) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def read_answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (its body by Content-Length), leaving the connection as it is."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed before the headers ended: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def request(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as connection:
        connection.sendall(raw)
        return read_answer(connection)


def test_a_range_of_five_thousand_digits_is_416_not_500(server: Server) -> None:
    url = path_of(server.run(server.store.presign("s1/a.jpg", expires_in=600)).url)  # type: ignore[attr-defined]
    huge = "9" * 5000
    status, headers, _ = request(
        server, f"GET {url} HTTP/1.1\r\nHost: x\r\nRange: bytes={huge}-\r\n\r\n".encode()
    )
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(PHOTO)}"
    status, _, body = request(
        server, f"GET {url} HTTP/1.1\r\nHost: x\r\nRange: bytes=-{huge}\r\n\r\n".encode()
    )
    assert (status, body) == (206, PHOTO)


def test_header_bytes_that_are_not_text_get_no_server_error(server: Server) -> None:
    url = path_of(server.run(server.store.presign("s1/a.jpg", expires_in=600)).url)  # type: ignore[attr-defined]
    raw = (
        f"GET {url} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Range: bytes=\xff\xfe-\x80\r\nIf-None-Match: \xc3\x28\r\nX-Odd: \xe9\r\n\r\n"
    )
    status, _, body = request(server, raw)
    assert (status, body) == (200, PHOTO)


@pytest.mark.parametrize(
    ("why", "method", "target", "headers"),
    [
        ("tampered signature", "PUT", "tampered", "Content-Type: image/jpeg\r\nIf-None-Match: *"),
        ("wrong content type", "PUT", "put", "Content-Type: text/html\r\nIf-None-Match: *"),
        ("not conditional", "PUT", "put", "Content-Type: image/jpeg"),
        ("not a form", "POST", "/photos", "Content-Type: text/plain"),
        ("no such bucket", "PUT", "/nowhere/a.jpg", "Content-Type: image/jpeg"),
    ],
)
def test_a_refused_one_gib_body_is_answered_and_the_connection_closed_unread(
    server: Server, why: str, method: str, target: str, headers: str
) -> None:
    """Before, the server answered, then read (and dropped) the whole body to reuse the socket."""
    signed = server.run(
        server.store.presign("s2/new.jpg", expires_in=600, method="PUT", content_type="image/jpeg")
    )
    url = path_of(signed.url)  # type: ignore[attr-defined]
    target = {"put": url, "tampered": url[:-1] + ("0" if url[-1] != "0" else "1")}.get(
        target, target
    )
    with connect(server) as connection:
        connection.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
            f"Content-Length: {1024**3}\r\n\r\n".encode()
            + b"x" * 1024
        )
        status, answer_headers, _ = read_answer(connection)
        assert 400 <= status < 500, why
        assert answer_headers["connection"] == "close"
        # The server closed its side: sending more of the body soon fails.
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012 - the loop is the act
            for _ in range(64):
                connection.sendall(b"x" * MiB)
    assert not server.run(server.store.exists("s2/new.jpg"))


def test_a_successful_put_keeps_the_connection_for_the_next_request(server: Server) -> None:
    signed = server.run(
        server.store.presign("s2/new.jpg", expires_in=600, method="PUT", content_type="image/jpeg")
    )
    get = server.run(server.store.presign("s1/a.jpg", expires_in=600))
    with connect(server) as connection:
        connection.sendall(
            f"PUT {path_of(signed.url)} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"  # type: ignore[attr-defined]
            "If-None-Match: *\r\nContent-Length: 5\r\n\r\nhello".encode()
        )
        status, headers, _ = read_answer(connection)
        assert (status, headers.get("connection")) == (200, None)
        connection.sendall(f"GET {path_of(get.url)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # type: ignore[attr-defined]
        assert read_answer(connection)[::2] == (200, PHOTO)
    assert server.run(server.store.get("s2/new.jpg")) == b"hello"
