"""The hop from the event loop to a thread and back: ``run_in_executor`` against ``WorkerThreads``.

Run: ``python benchmarks/thread_hop.py [--rounds N] [--calls N] [--output FILE]``.
No server. Every boto3 call of ``S3ImageStore`` makes this hop, so its cost is
paid once per GET or PUT. Two calls stand in for the work: an empty one (the
hop alone) and a 1 ms ``time.sleep`` (a thread blocked in I/O, with the GIL
released, as during a request). Each contender has 16 threads; the rounds
interleave the contenders. CPU is this process's (every thread), per call.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from common import Section, Summary, log, markdown_table, number, option, ratio, standalone

from demeter_storage.adapters.shared.worker_threads import WorkerThreads

SECTION: Final = "thread-hop"
THREADS: Final = 16
EXECUTOR: Final = "`loop.run_in_executor(ThreadPoolExecutor(16), fn)`"
WORKERS: Final = "`WorkerThreads(16).run(fn)` (the S3 store's)"
DEFAULTS: Final = {"rounds": 5, "calls": 20_000, "sleep_calls": 3_000}
QUICK: Final = {"rounds": 1, "calls": 2_000, "sleep_calls": 200}


def _empty() -> None:
    return None


def _blocked() -> None:
    time.sleep(0.001)


WORK: Final[dict[str, Callable[[], None]]] = {"empty call": _empty, "1 ms sleep": _blocked}

Hop = Callable[[Callable[[], None]], Awaitable[None]]


async def _timed(
    hop: Hop, fn: Callable[[], None], concurrency: int, calls: int
) -> tuple[float, float]:
    """Wall and CPU µs per call for ``calls`` calls, ``concurrency`` at a time."""
    each = calls // concurrency

    async def one_caller() -> None:
        for _ in range(each):
            await hop(fn)

    await asyncio.gather(*(one_caller() for _ in range(concurrency)))  # threads started, warm
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_caller() for _ in range(concurrency)))
    done = each * concurrency
    return (time.perf_counter() - wall) / done * 1e6, (time.process_time() - cpu) / done * 1e6


async def _measure_once(
    contender: str, work: str, concurrency: int, calls: int
) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    if contender == EXECUTOR:
        executor = ThreadPoolExecutor(THREADS)
        try:
            return await _timed(
                lambda fn: loop.run_in_executor(executor, fn), WORK[work], concurrency, calls
            )
        finally:
            executor.shutdown()
    threads = WorkerThreads(THREADS, name="bench-hop")
    try:
        return await _timed(threads.run, WORK[work], concurrency, calls)
    finally:
        threads.shutdown()


Results = dict[tuple[str, str, int], tuple[list[float], list[float]]]


def measure(*, rounds: int, calls: int, sleep_calls: int, seed: int | None) -> Results:
    """Every (contender, work, concurrency) over ``rounds`` interleaved rounds."""
    shuffle = random.Random(seed)
    cases = [(work, concurrency) for work in WORK for concurrency in (1, THREADS)]
    results: Results = {}
    for round_number in range(1, rounds + 1):
        for work, concurrency in cases:
            order = [EXECUTOR, WORKERS]
            shuffle.shuffle(order)
            for contender in order:
                count = calls if work == "empty call" else sleep_calls
                wall, cpu = asyncio.run(_measure_once(contender, work, concurrency, count))
                walls, cpus = results.setdefault((contender, work, concurrency), ([], []))
                walls.append(wall)
                cpus.append(cpu)
                log(
                    f"round {round_number}/{rounds} {work} x{concurrency} {contender}: "
                    f"{wall:.1f} µs wall, {cpu:.1f} µs CPU per call"
                )
    return results


def report(results: Results, *, rounds: int) -> str:
    """The markdown section."""
    rows = []
    for work in WORK:
        for concurrency in (1, THREADS):
            baseline_cpu = Summary.of(results[(EXECUTOR, work, concurrency)][1]).median
            for contender in (EXECUTOR, WORKERS):
                walls, cpus = results[(contender, work, concurrency)]
                wall, cpu = Summary.of(walls), Summary.of(cpus)
                rows.append(
                    [
                        work,
                        str(concurrency),
                        contender,
                        number(wall.median, 1),
                        number(cpu.median, 1),
                        f"{number(cpu.low, 1)}-{number(cpu.high, 1)}",
                        ratio(cpu.median, baseline_cpu),
                    ]
                )
    headers = [
        "work",
        "concurrency",
        "contender",
        "wall µs per call",
        "CPU µs per call",
        "CPU min-max",
        "CPU vs executor",
    ]
    return (
        "## The hop to a thread and back\n\n"
        f"{markdown_table(headers, rows, right=4)}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds. Each S3 call of "
        "`S3ImageStore` crosses from the event loop to one of the store's threads and back; "
        "this measures that crossing alone, with an empty call and with a 1 ms sleep (a "
        "thread waiting on I/O without the GIL). Wall time at concurrency 16 is per call of "
        "all 16 callers together; CPU is the process's (every thread) per call. "
        "`WorkerThreads` (`adapters/worker_threads.py`) hands jobs over a `SimpleQueue` and "
        "wakes the loop once for results that finish together.\n"
    )


def run(*, rounds: int, calls: int, sleep_calls: int, seed: int | None = None) -> Section:
    """Measure and return the markdown section."""
    results = measure(rounds=rounds, calls=calls, sleep_calls=sleep_calls, seed=seed)
    return Section(SECTION, report(results, rounds=rounds))


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument(
        f"--{prefix}calls", type=int, help="empty calls per pass (default 20000, quick 2000)"
    )
    parser.add_argument(
        f"--{prefix}sleep-calls", type=int, help="1 ms calls per pass (default 3000, quick 200)"
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    picked = {
        name: option(args, prefix, name, DEFAULTS[name], QUICK[name])
        for name in ("rounds", "calls", "sleep_calls")
    }
    return {**picked, "seed": args.seed}


if __name__ == "__main__":
    standalone(sys.modules[__name__])
