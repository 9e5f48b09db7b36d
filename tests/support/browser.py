"""A real headless Chromium for tests: load a page on loopback, get its DOM back.

Debian's ``chromium`` package at ``/usr/bin/chromium`` (CI installs it). Where
it is absent, the ``chromium`` fixture skips with a clear reason, or fails when
``DEMETER_REQUIRE_SERVICES=1`` (as CI sets it), like the PostgreSQL and Redis
fixtures. Mark such tests ``@pytest.mark.chromium``.

A test serves its page on 127.0.0.1 (:func:`serve_pages`): a ``data:`` URL page
cannot even load an image from loopback (Chromium's local network access rules,
seen with Chromium 156), a loopback page behaves like a real front-end. Inline event
handlers write what happened into ``data-`` attributes, :meth:`Chromium.dump_dom`
returns the DOM once the page has loaded, and :func:`elements_by_id` reads
those attributes back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import attrs
import pytest

from demeter_storage.testing import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # CI containers often have a 64 MB /dev/shm, too small for the renderer.
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-breakpad",
)


class ChromiumFailed(RuntimeError):
    """Chromium exited with an error or did not finish in time."""


@attrs.frozen
class Chromium:
    """A headless Chromium; every call starts a fresh browser with an empty profile."""

    path: Path = CHROMIUM

    def dump_dom(self, url: str, *, budget_ms: int = 5_000, timeout: float = 60) -> str:
        """The serialized DOM of ``url`` after its load event (and its timers).

        ``budget_ms`` is virtual time: timers run in it at once, network waits
        stay real; the load event itself waits for every ``<img>`` to load or fail.
        """
        with tempfile.TemporaryDirectory(
            prefix="demeter-chromium-", ignore_cleanup_errors=True
        ) as profile:
            argv = [
                str(self.path),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                url,
            ]
            # Output to files, not pipes: a helper process that inherited a pipe
            # would hold it open after the browser exits. A session of its own, so
            # that no helper (zygote, crashpad) outlives the call, even on a timeout.
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                browser = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
                try:
                    returncode = browser.wait(timeout)
                except subprocess.TimeoutExpired:
                    returncode = None
                finally:
                    _kill_group(browser.pid)
                    browser.wait()
                dom, log = _read(out), "\n".join(_read(err).splitlines()[-40:])
        if returncode is None:
            raise ChromiumFailed(f"Chromium did not finish {url} in {timeout} s; stderr:\n{log}")
        if returncode != 0:
            raise ChromiumFailed(f"Chromium exited with {returncode} on {url}; stderr:\n{log}")
        return dom


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    """Debian's headless Chromium; skips (or fails, in CI) where it is absent."""
    if not os.access(CHROMIUM, os.X_OK):
        skip_or_fail(
            f"Chromium not found at {CHROMIUM}; install Debian's chromium package "
            "(apt-get install chromium)"
        )
    return Chromium(CHROMIUM)


@contextlib.contextmanager
def serve_pages(pages: Mapping[str, str]) -> Iterator[str]:
    """Serve HTML ``pages`` (by path, e.g. ``"/index.html"``) on a free loopback port.

    Yields the base URL (``http://127.0.0.1:PORT``); other paths answer 404.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path.split("?", 1)[0])
            body = (page if page is not None else "not found\n").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def elements_by_id(dom: str) -> dict[str, dict[str, str]]:
    """The attributes of every element that has an ``id``, by id."""
    found: dict[str, dict[str, str]] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            attributes = {name: value or "" for name, value in attrs}
            if "id" in attributes:
                found[attributes["id"]] = {"tag": tag, **attributes}

    parser = Parser()
    parser.feed(dom)
    parser.close()
    return found
