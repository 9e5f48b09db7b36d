"""A store's own threads for blocking calls, with cheap hand-offs to and from the event loop.

``loop.run_in_executor`` pays, per call, for a ``concurrent.futures.Future``
and its condition lock, an asyncio future chained to it, and one self-pipe
write to wake the loop for each result. On this project's 2-core machines
that hop cost about 100 µs of CPU per call at concurrency 1 and 50 µs at 16,
next to a 256 KiB GET's 1-1.5 ms (``docs/benchmarks.md``).

:class:`WorkerThreads` hands jobs to its threads over a ``SimpleQueue`` and
returns their outcomes in batches: a thread that finishes while its loop
already has a wake-up pending adds its outcome to that batch, so calls that
finish together wake the loop once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")

_STOP: Final = None
"""Put on the queue once per thread to end it."""

_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _Inbox:
    """Outcomes finished for one event loop, delivered to it in batches."""

    # It holds no reference to its loop (each outcome's future does), so that a
    # pool's inbox for a finished loop never keeps that loop alive.

    def __init__(self) -> None:
        self._outcomes: collections.deque[_Outcome] = collections.deque()
        self._wake_pending = False

    def deliver(self, outcome: _Outcome) -> None:
        """Queue ``outcome`` for the loop (from any thread); wake the loop unless a wake is due."""
        self._outcomes.append(outcome)
        # Unlocked on purpose: two threads may both schedule a drain (harmless),
        # and an outcome appended after a drain emptied the deque sees the flag
        # that drain cleared first, so it schedules the next one.
        if not self._wake_pending:
            self._wake_pending = True
            try:
                outcome[0].get_loop().call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody awaits these outcomes
                self._outcomes.clear()

    def _drain(self) -> None:
        self._wake_pending = False
        outcomes = self._outcomes
        while outcomes:
            future, result, error = outcomes.popleft()
            if future.done():  # cancelled while its job ran
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


_Job = tuple[_Inbox, "asyncio.Future[Any]", Callable[[], Any]]


class _IdleCount:
    """How many threads wait for a job: a new job starts a thread only when none does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0


def _work(jobs: queue.SimpleQueue[_Job | None], idle: _IdleCount) -> None:
    while (job := jobs.get()) is not _STOP:
        _run(*job, idle)
        # The job (and its result) is not kept alive while the thread waits for the next.
        del job


def _run(
    inbox: _Inbox, future: asyncio.Future[Any], fn: Callable[[], Any], idle: _IdleCount
) -> None:
    outcome: _Outcome | None = None
    if not future.done():  # a job cancelled before it started never runs
        try:
            outcome = (future, fn(), None)
        except StopIteration as error:
            # An asyncio future refuses StopIteration (it would end the awaiting
            # coroutine silently), as a coroutine's own StopIteration becomes this.
            failure = RuntimeError(f"{fn!r} raised StopIteration")
            failure.__cause__ = error
            outcome = (future, None, failure)
        except BaseException as error:  # the awaiting caller gets it, whatever it is
            outcome = (future, None, error)
    # Idle before the caller hears back: its next call (often made at once) then
    # goes to this thread instead of starting another.
    with idle.lock:
        idle.value += 1
    if outcome is not None:
        inbox.deliver(outcome)


def _stop_threads(jobs: queue.SimpleQueue[_Job | None], threads: list[threading.Thread]) -> None:
    for _ in threads:
        jobs.put(_STOP)


class WorkerThreads:
    """Up to ``max_workers`` threads running blocking calls for coroutines.

    Threads start as work needs them and are kept. Several event loops may
    share one pool (each call returns to the loop that made it).

    Args:
        max_workers: threads at most; more calls at once wait their turn.
        name: the threads' name prefix.
    """

    def __init__(self, max_workers: int, *, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = _IdleCount()
        self._threads: list[threading.Thread] = []
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False
        # Threads blocked on the queue of a pool nobody can close any more end.
        self._finalizer = weakref.finalize(self, _stop_threads, self._jobs, self._threads)

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called (another thread may call it at any time)."""
        return self._closed

    @property
    def threads(self) -> int:
        """How many threads have been started."""
        return len(self._threads)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one of the threads and return its result (or raise its exception).

        Cancelling the caller before a thread takes the job means it never
        runs; once running, it finishes and its outcome is dropped.

        Raises:
            RuntimeError: the pool was shut down.
        """
        if self.closed:
            raise RuntimeError("cannot run new work after shutdown")
        loop = asyncio.get_running_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = _Inbox()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((inbox, future, fn))
        if self._closed:  # read again: the check above may be stale by now
            # Shut down (from another thread) after the check above: the job may sit
            # behind the threads' stop signals, where no thread takes it.
            future.cancel()
        else:
            self._make_room()
        return await future

    def _make_room(self) -> None:
        with self._idle.lock:
            if self._idle.value:
                self._idle.value -= 1
                return
            if len(self._threads) >= self.max_workers:
                return
            thread = threading.Thread(
                target=_work,
                args=(self._jobs, self._idle),
                name=f"{self.name}_{len(self._threads)}",
                daemon=True,
            )
            self._threads.append(thread)
        thread.start()

    def shutdown(self) -> None:
        """Refuse new work, cancel the jobs no thread has taken, and let the threads end.

        Jobs already running finish; their callers get their outcomes. A
        second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                _cancel_soon(job[1])
        self._finalizer()


def _cancel_soon(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` in its loop's thread (a closed loop has nobody awaiting it)."""
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(future.cancel)
