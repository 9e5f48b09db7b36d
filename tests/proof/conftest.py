"""Fixtures the proofs share: one event loop per property, and the fuzzed signed-URL server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proof.url_server import Server


@pytest.fixture
def loop() -> Iterator[asyncio.Runner]:
    """One event loop for every example of a property (``asyncio.run`` each costs more)."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def server(loop: asyncio.Runner, tmp_path: Path) -> Iterator[Server]:
    """The server of ``tests/proof/url_server.py``, every store filled with ``KEYS``."""
    running = Server(tmp_path)
    loop.run(running.fill())
    yield running
    loop.run(running.client.aclose())
