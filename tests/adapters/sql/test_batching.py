"""BatchWriter: concurrent writes gathered into batches, each caller given its own outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from demeter_storage.adapters.sql.batching import BatchWriter


class FakeStore:
    """Writes batches of strings; a test can hold a batch in flight, or make things fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.sessions_opened = 0
        self.sessions_closed = 0
        self.release = asyncio.Event()
        self.release.set()
        self.in_flight = asyncio.Event()
        self.fail_open: Exception | None = None
        self.fail_batch: Exception | None = None
        self.fail_close: Exception | None = None
        self.undone: list[list[tuple[str, str]]] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[int]:
        if self.fail_open is not None:
            error, self.fail_open = self.fail_open, None
            raise error
        self.sessions_opened += 1
        try:
            yield self.sessions_opened
        finally:
            self.sessions_closed += 1
            if self.fail_close is not None:
                error, self.fail_close = self.fail_close, None
                raise error

    async def run(self, session: int, items: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        self.in_flight.set()
        await self.release.wait()
        if self.fail_batch is not None:
            error, self.fail_batch = self.fail_batch, None
            raise error
        return [
            ValueError(item) if item.startswith("bad") else f"{item}@{session}" for item in items
        ]

    async def undo(self, session: int, abandoned: list[tuple[str, str]]) -> None:
        self.undone.append(abandoned)
        if any(item.startswith("unundoable") for item, _ in abandoned):
            raise RuntimeError("cannot undo")

    def writer(self, **options: int) -> BatchWriter[int, str, str]:
        return BatchWriter(
            self.run,
            session=self.session,
            abandoned=self.undo,
            identity=lambda item: item.split("#")[0],
            **options,
        )

    async def hold_first(self, writer: BatchWriter[int, str, str], item: str) -> asyncio.Task[str]:
        """Submit ``item`` and keep its batch in flight until :attr:`release` is set."""
        self.release.clear()
        self.in_flight.clear()
        first = asyncio.create_task(writer.submit(item))
        await self.in_flight.wait()
        return first

    @staticmethod
    async def queue(writer: BatchWriter[int, str, str], *items: str) -> list[asyncio.Task[str]]:
        """Submit ``items``, each in a task of its own, and let them reach the writer's queue."""
        tasks = [asyncio.create_task(writer.submit(item)) for item in items]
        await asyncio.sleep(0)
        return tasks


async def test_a_lone_write_goes_alone_and_the_writes_meanwhile_go_together() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    later = await store.queue(writer, "b", "c", "d")
    store.release.set()
    assert await first == "a@1"
    assert await asyncio.gather(*later) == ["b@1", "c@1", "d@1"]
    assert store.batches == [["a"], ["b", "c", "d"]]
    assert writer.batches == 2
    await writer.idle()
    assert (store.sessions_opened, store.sessions_closed) == (1, 1)


async def test_batches_keep_to_their_size_and_sessions_to_their_share() -> None:
    store = FakeStore()
    writer = store.writer(max_batch=2, batches_per_session=2)
    first = await store.hold_first(writer, "a")
    later = await store.queue(writer, *(f"item{n}" for n in range(5)))
    store.release.set()
    await asyncio.gather(first, *later)
    assert store.batches == [["a"], ["item0", "item1"], ["item2", "item3"], ["item4"]]
    await writer.idle()
    assert store.sessions_opened == store.sessions_closed == 2  # 2 batches per session


async def test_two_writes_to_one_row_never_share_a_batch() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "x")
    later = await store.queue(writer, "y#1", "y#2", "z")
    store.release.set()
    assert await asyncio.gather(first, *later) == ["x@1", "y#1@1", "y#2@1", "z@1"]
    assert store.batches == [["x"], ["y#1", "z"], ["y#2"]]


async def test_each_caller_gets_its_own_outcome() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    good, bad = await store.queue(writer, "good", "bad")
    store.release.set()
    await first
    assert await good == "good@1"
    with pytest.raises(ValueError, match="bad"):
        await bad
    assert store.batches == [["a"], ["good", "bad"]]


async def test_a_failed_batch_fails_its_callers_and_ends_its_session() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    later = await store.queue(writer, "b", "c")
    store.fail_batch = ConnectionError("lost")
    store.release.set()
    with pytest.raises(ConnectionError, match="lost"):
        await first
    assert await asyncio.gather(*later) == ["b@2", "c@2"]
    assert store.sessions_opened == 2  # a new session after the failure


async def test_a_session_that_cannot_open_fails_the_batch_that_waits_for_it() -> None:
    store = FakeStore()
    writer = store.writer()
    store.fail_open = ConnectionRefusedError("database down")
    with pytest.raises(ConnectionRefusedError, match="database down"):
        await writer.submit("a")
    assert store.batches == []
    assert await writer.submit("b") == "b@1"  # the next write opens a session again


async def test_a_session_that_fails_to_close_costs_no_caller_its_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    writer = store.writer()
    store.fail_close = OSError("socket gone")
    with caplog.at_level(logging.WARNING, logger="demeter_storage.adapters.sql.batching"):
        assert await writer.submit("a") == "a@1"
        await writer.idle()
    assert "closing a batch writer's session failed" in caplog.text
    assert await writer.submit("b") == "b@2"


async def test_a_caller_cancelled_before_its_batch_goes_writes_nothing() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    cancelled, kept = await store.queue(writer, "never", "kept")
    cancelled.cancel()
    store.release.set()
    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert store.batches == [["a"], ["kept"]]
    assert store.undone == []


async def test_what_was_written_for_a_caller_cancelled_in_flight_is_undone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    store.release.set()
    assert await writer.submit("b") == "b@1"
    assert store.undone == [[("a", "a@1")]]
    assert store.batches == [["a"], ["b"]]
    # An undo that fails is logged; the writer goes on.
    first = await store.hold_first(writer, "unundoable")
    first.cancel()
    store.release.set()
    with caplog.at_level(logging.WARNING, logger="demeter_storage.adapters.sql.batching"):
        assert await writer.submit("c") == "c@3"  # a new session, after the failed undo
    assert "could not undo 1 write(s)" in caplog.text


async def test_a_run_that_miscounts_its_outcomes_fails_every_caller() -> None:
    async def short(session: int, items: Sequence[str]) -> list[str | Exception]:
        return []

    @asynccontextmanager
    async def session() -> AsyncIterator[int]:
        yield 1

    writer: BatchWriter[int, str, str] = BatchWriter(short, session=session, identity=str)
    with pytest.raises(RuntimeError, match="a batch of 1 got 0 outcomes"):
        await writer.submit("a")


async def test_a_writer_cancelled_with_the_loop_cancels_its_callers() -> None:
    store = FakeStore()
    writer = store.writer()
    first = await store.hold_first(writer, "a")
    (waiting,) = await store.queue(writer, "b")
    assert writer._writer is not None
    writer._writer.cancel()
    for task in (first, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    await writer.idle()
    store.release.set()
    assert await writer.submit("c") == "c@2"  # a new writer starts with the next write


def test_sizes_below_one_are_refused() -> None:
    store = FakeStore()
    with pytest.raises(ValueError, match="at least 1"):
        store.writer(max_batch=0)
    with pytest.raises(ValueError, match="at least 1"):
        store.writer(batches_per_session=0)
