"""Concurrent writes sent as one statement, so that concurrent uploads do not queue on their writes.

A :class:`BatchWriter` sends the first call at once, alone, and gathers the
calls that arrive while it runs into the next batch: a lone caller waits for
nothing extra, and under load one statement carries many rows. It knows
nothing of databases: ``run`` gets a session (say, a connection held while
batches keep coming) and the items, and returns one outcome per item: a
result, or the exception that item's caller should see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Generic, TypeVar

SessionT = TypeVar("SessionT")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)

DEFAULT_BATCHES_PER_SESSION: Final = 8
"""A connection's pool checkout is about the cost of a statement: one per few batches is enough."""
DEFAULT_MAX_BATCH: Final = 256
"""Rows per statement at most: large enough for any burst, small enough to stay cheap to plan."""


class BatchWriter(Generic[SessionT, ItemT, ResultT]):
    """Gathers concurrent :meth:`submit` calls into batches, one batch in flight at a time.

    Args:
        run: writes one batch in a session; returns one outcome per item, in
            order: its result, or the exception to raise in that item's
            caller. An exception ``run`` raises itself reaches every caller
            of the batch and ends the session (a new one serves the next batch).
        session: opens a session, held while batches keep coming; an
            exception opening it reaches the callers of the next batch.
        abandoned: undoes, in the same session, what a batch wrote for callers
            cancelled while it was in flight (item and result pairs), so
            that a cancelled write leaves nothing behind; its errors are
            logged, never raised.
        identity: the items of one batch have distinct identities (a second
            write to the same row waits for the next batch, so that each
            outcome is unambiguous).
        max_batch: items per batch at most.
        batches_per_session: batches one session serves before it is closed
            and another opened, so that a writer that never runs dry still
            lets others have a turn at a small connection pool.
    """

    def __init__(
        self,
        run: Callable[[SessionT, Sequence[ItemT]], Awaitable[Sequence[ResultT | Exception]]],
        *,
        session: Callable[[], AbstractAsyncContextManager[SessionT]],
        abandoned: Callable[[SessionT, list[tuple[ItemT, ResultT]]], Awaitable[None]] | None = None,
        identity: Callable[[ItemT], Hashable],
        max_batch: int = DEFAULT_MAX_BATCH,
        batches_per_session: int = DEFAULT_BATCHES_PER_SESSION,
    ) -> None:
        if max_batch < 1 or batches_per_session < 1:
            raise ValueError("max_batch and batches_per_session must be at least 1")
        self._run = run
        self._session = session
        self._abandoned = abandoned
        self._identity = identity
        self._max_batch = max_batch
        self._batches_per_session = batches_per_session
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._sending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        """How many batches were sent, written or failed (for tests and benchmarks)."""

    async def submit(self, item: ItemT) -> ResultT:
        """Write ``item`` with whatever else is waiting; its outcome.

        A caller cancelled before its batch starts writes nothing; one
        cancelled while its batch is in flight does not stop the batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write_all())
        return await future

    def _next_batch(self) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        later: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        seen: set[Hashable] = set()
        for entry in self._waiting:
            item, future = entry
            if future.done():  # its caller was cancelled before it was sent
                continue
            identity = self._identity(item)
            if len(batch) == self._max_batch or identity in seen:
                later.append(entry)
                continue
            seen.add(identity)
            batch.append(entry)
        self._waiting = later
        return batch

    async def _write_all(self) -> None:
        try:
            while any(not future.done() for _, future in self._waiting):
                opened = False
                try:
                    async with self._session() as session:
                        opened = True
                        await self._serve(session)
                except Exception as exc:  # handed to the callers of the batch it stopped
                    self._fail(exc, opened)
        finally:
            # Only a cancelled writer (the loop closing) leaves callers here.
            self._writer = None
            for _, future in [*self._sending, *self._waiting]:
                future.cancel()
            self._sending, self._waiting = [], []

    async def _serve(self, session: SessionT) -> None:
        """Write batches in one session, up to its share of them."""
        for _ in range(self._batches_per_session):
            self._sending = self._next_batch()
            if not self._sending:
                return
            outcomes = await self._run(session, [item for item, _ in self._sending])
            if not await self._undo(session, self._settle(self._sending, outcomes)):
                return  # the session may be broken: the next batch gets a new one

    def _fail(self, exc: Exception, opened: bool) -> None:
        if self._sending:  # the batch in flight failed
            self._settle(self._sending, [exc] * len(self._sending))
        elif not opened:  # no session: the next batch would wait for ever
            if batch := self._next_batch():
                self._settle(batch, [exc] * len(batch))
        else:
            logger.warning("closing a batch writer's session failed", exc_info=exc)

    async def idle(self) -> None:
        """Wait until every write submitted so far is settled and its session closed."""
        while self._writer is not None:
            await asyncio.wait({self._writer})

    async def _undo(self, session: SessionT, abandoned: list[tuple[ItemT, ResultT]]) -> bool:
        """Undo the abandoned writes; False if that failed (logged, never raised)."""
        if not abandoned or self._abandoned is None:
            return True
        try:
            await self._abandoned(session, abandoned)
        except Exception:
            logger.warning(
                "could not undo %d write(s) whose callers were cancelled",
                len(abandoned),
                exc_info=True,
            )
            return False
        return True

    def _settle(
        self,
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]],
        outcomes: Sequence[ResultT | Exception],
    ) -> list[tuple[ItemT, ResultT]]:
        """Hand each caller its outcome; the results of callers cancelled meanwhile."""
        if len(outcomes) != len(batch):
            error = RuntimeError(f"a batch of {len(batch)} got {len(outcomes)} outcomes")
            outcomes = [error] * len(batch)
        self.batches += 1
        abandoned: list[tuple[ItemT, ResultT]] = []
        for (item, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                if not future.done():
                    future.set_exception(outcome)
            elif future.done():
                abandoned.append((item, outcome))
            else:
                future.set_result(outcome)
        batch.clear()
        return abandoned
