"""WorkerThreads: blocking calls on a store's own threads, outcomes back to the right loop."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import pytest

from demeter_storage.adapters.shared.worker_threads import WorkerThreads


def test_a_result_and_an_exception_reach_the_caller() -> None:
    pool = WorkerThreads(2, name="test-pool")

    def boom() -> None:
        raise KeyError("lost")

    async def scenario() -> None:
        assert await pool.run(lambda: threading.current_thread().name) == "test-pool_0"
        with pytest.raises(KeyError, match="lost"):
            await pool.run(boom)

    asyncio.run(scenario())
    pool.shutdown()


def test_a_stop_iteration_reaches_the_caller_as_a_runtime_error_and_others_still_finish() -> None:
    pool = WorkerThreads(4, name="test-pool")
    empty: list[int] = []

    async def scenario() -> None:
        outcomes = await asyncio.gather(
            *(pool.run(lambda: next(iter(empty))) for _ in range(8)),
            *(pool.run(lambda i=i: i) for i in range(8)),
            return_exceptions=True,
        )
        failures, results = outcomes[:8], outcomes[8:]
        assert all(isinstance(failure, RuntimeError) for failure in failures)
        assert all(isinstance(failure.__cause__, StopIteration) for failure in failures)
        assert results == list(range(8))

    asyncio.run(asyncio.wait_for(scenario(), 10))
    pool.shutdown()


def test_threads_start_as_work_needs_them_never_more_than_max_workers() -> None:
    pool = WorkerThreads(3, name="test-pool")
    release = threading.Event()
    running: set[str] = set()
    changed = threading.Condition()

    def hold() -> str:
        with changed:
            running.add(threading.current_thread().name)
            changed.notify_all()
        release.wait(5)
        return threading.current_thread().name

    def until_three_run() -> None:
        with changed:
            assert changed.wait_for(lambda: len(running) >= 3, timeout=5)

    async def scenario() -> None:
        for _ in range(500):  # calls that block briefly, as I/O does, one after another
            await pool.run(lambda: time.sleep(0.0001))
        assert pool.threads == 1, "one call at a time needs one thread"
        calls = [asyncio.ensure_future(pool.run(hold)) for _ in range(5)]
        await asyncio.to_thread(until_three_run)
        await asyncio.sleep(0.02)
        assert len(running) == 3, "only max_workers calls run at once"
        release.set()
        names = await asyncio.gather(*calls)
        assert set(names) == {"test-pool_0", "test-pool_1", "test-pool_2"}
        assert pool.threads == 3

    asyncio.run(scenario())
    pool.shutdown()


def test_many_calls_finishing_together_all_reach_their_callers() -> None:
    pool = WorkerThreads(8, name="test-pool")

    async def scenario() -> None:
        results = await asyncio.gather(*(pool.run(lambda i=i: i * i) for i in range(2_000)))
        assert results == [i * i for i in range(2_000)]

    asyncio.run(scenario())
    pool.shutdown()


def test_a_job_cancelled_before_a_thread_takes_it_never_runs() -> None:
    pool = WorkerThreads(1, name="test-pool")
    release = threading.Event()
    ran: list[str] = []

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(lambda: release.wait(5)))
        queued = asyncio.ensure_future(pool.run(lambda: ran.append("queued")))
        await asyncio.sleep(0.01)
        queued.cancel()
        await asyncio.sleep(0)
        release.set()
        assert await busy is True
        assert await pool.run(lambda: "after") == "after"
        with pytest.raises(asyncio.CancelledError):
            await queued

    asyncio.run(scenario())
    assert ran == []
    pool.shutdown()


def test_a_caller_cancelled_while_its_job_runs_gets_cancelled_and_the_pool_goes_on() -> None:
    pool = WorkerThreads(1, name="test-pool")
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "done"

    async def scenario() -> None:
        call = asyncio.ensure_future(pool.run(slow))
        assert await asyncio.to_thread(started.wait, 5)
        call.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await pool.run(lambda: "next") == "next"

    asyncio.run(scenario())
    pool.shutdown()


def test_one_pool_serves_several_event_loops_at_once() -> None:
    pool = WorkerThreads(4, name="test-pool")
    seen: dict[int, list[int]] = {}

    async def calls(loop_number: int) -> None:
        seen[loop_number] = list(
            await asyncio.gather(*(pool.run(lambda i=i: i + loop_number) for i in range(200)))
        )

    threads = [threading.Thread(target=asyncio.run, args=(calls(n),)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {n: [i + n for i in range(200)] for n in range(3)}
    pool.shutdown()


def test_the_pool_does_not_keep_finished_event_loops_alive() -> None:
    pool = WorkerThreads(2, name="test-pool")
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def call() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert await pool.run(lambda: 7) == 7

    for _ in range(3):
        asyncio.run(call())
    gc.collect()
    assert [loop() for loop in loops] == [None, None, None]
    pool.shutdown()


def test_an_outcome_for_a_closed_loop_is_dropped_and_the_thread_serves_on() -> None:
    pool = WorkerThreads(1, name="test-pool")
    release = threading.Event()
    finished = threading.Event()

    def outlives_its_loop() -> None:
        release.wait(5)
        finished.set()

    loop = asyncio.new_event_loop()
    task = loop.create_task(pool.run(outlives_its_loop))
    loop.run_until_complete(asyncio.sleep(0.01))
    task.cancel()
    loop.close()
    release.set()
    assert finished.wait(5)

    async def later() -> str:
        return await pool.run(lambda: "still serving")

    assert asyncio.run(later()) == "still serving"
    closed = weakref.ref(loop)
    del loop, task
    gc.collect()
    assert closed() is None, "the dropped outcome must not keep the closed loop alive"
    pool.shutdown()


def test_shutdown_cancels_queued_jobs_lets_running_ones_finish_and_refuses_new_work() -> None:
    pool = WorkerThreads(1, name="test-pool")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def running() -> str:
        started.set()
        release.wait(5)
        return "finished"

    async def scenario() -> None:
        first = asyncio.ensure_future(pool.run(running))
        queued = asyncio.ensure_future(pool.run(lambda: ran.append("queued")))
        assert await asyncio.to_thread(started.wait, 5)
        pool.shutdown()
        release.set()
        assert await first == "finished"
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(RuntimeError, match="shutdown"):
            await pool.run(lambda: None)

    asyncio.run(scenario())
    pool.shutdown()  # a second shutdown must not swallow the threads' stop signals
    assert ran == []
    deadline = time.monotonic() + 5
    while any(thread.is_alive() for thread in pool._threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(thread.is_alive() for thread in pool._threads)


def test_a_job_queued_while_another_thread_shuts_the_pool_down_is_cancelled() -> None:
    pool = WorkerThreads(1, name="test-pool")
    jobs = pool._jobs

    class ShutDownFirst:
        """The pool's queue, shut down by "another thread" just before a job is queued."""

        def put(self, job: object) -> None:
            pool.shutdown()
            jobs.put(job)  # type: ignore[arg-type]

        def get_nowait(self) -> object:
            return jobs.get_nowait()

    pool._jobs = ShutDownFirst()  # type: ignore[assignment]

    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(pool.run(lambda: "never"), 5)

    asyncio.run(scenario())


def test_the_threads_of_a_pool_nobody_holds_end() -> None:
    pool = WorkerThreads(2, name="test-pool")

    async def use(threads: WorkerThreads) -> None:
        await asyncio.gather(threads.run(lambda: None), threads.run(lambda: None))

    asyncio.run(use(pool))
    threads = list(pool._threads)
    assert threads and all(thread.is_alive() for thread in threads)
    reference = weakref.ref(pool)
    del pool
    gc.collect()
    assert reference() is None
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkerThreads(0, name="test-pool")
