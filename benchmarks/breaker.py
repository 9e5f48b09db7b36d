"""The circuit breaker: how fast an open circuit fails, and what a closed one costs.

No S3 server: the backend is a loopback port nothing listens on, so every
request is refused at once. Each call is timed on its own; the rounds
interleave the contenders. The shared circuit is opened by one instance and
called through another, through Redis (``DEMETER_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/0``; its keys are deleted afterwards).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from common import Summary, log, row, shuffled

from demeter_storage import (
    ImageStore,
    InMemoryImageStore,
    ResilientImageStore,
    S3Config,
    S3ImageStore,
    Secret,
    StorageUnavailable,
)

REDIS_URL: Final = os.environ.get("DEMETER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY: Final = "session-0001/photo-00001.jpg"
OPEN: Final = "open circuit: `ResilientImageStore.get`"
SHARED: Final = "open circuit shared through Redis, opened by another instance"
REFUSED: Final = "no circuit: `S3ImageStore.get`, refused port, 1 attempt"
MEMORY: Final = "healthy: `InMemoryImageStore.get`"
GUARDED: Final = "healthy: `ResilientImageStore(InMemoryImageStore).get`"

Call = Callable[[], Awaitable[None]]


def dead_store() -> S3ImageStore:
    """An S3 store whose endpoint refuses connections (a port just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = S3Config(
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        addressing_style="path",
        access_key_id="bench",
        secret_access_key=Secret("bench-secret"),
        connect_timeout=1.0,
    )
    return S3ImageStore("bench-breaker", config=config)


def refused(store: ImageStore) -> Call:
    """A call to ``store.get`` that must fail with ``StorageUnavailable``."""

    async def call() -> None:
        try:
            await store.get(KEY)
        except StorageUnavailable:
            return
        raise AssertionError("the call did not fail with StorageUnavailable")

    return call


async def opened(**options: Any) -> ResilientImageStore:
    """A resilient store on the dead backend, failed until its circuit opened."""
    store = ResilientImageStore(dead_store(), retry_attempts=1, reset_timeout=3600, **options)
    for _ in range(store.breaker.threshold):
        await refused(store)()
    return store


async def forget(name: str) -> None:
    """Delete the shared circuit's keys from Redis."""
    from redis import asyncio as aioredis  # noqa: PLC0415 - the optional `redis` extra

    client = aioredis.from_url(REDIS_URL)
    await client.delete(f"cbr::{name}", f"cbr::{name}::probe")
    await client.aclose()


async def contenders() -> tuple[dict[str, tuple[Call, int]], list[Call], dict[str, str]]:
    """Each contender's call and calls per round; what to close afterwards; absentees."""
    local = await opened(circuit_name=f"bench-{uuid.uuid4().hex[:8]}")
    calls: dict[str, tuple[Call, int]] = {OPEN: (refused(local), 5000)}
    closers: list[Call] = [local.aclose]
    absent: dict[str, str] = {}
    name = f"bench-shared-{uuid.uuid4().hex[:8]}"
    try:
        closers.append((await opened(circuit_name=name, redis_url=REDIS_URL)).aclose)
        closers.append(lambda: forget(name))
        other = ResilientImageStore(
            dead_store(), retry_attempts=1, circuit_name=name, redis_url=REDIS_URL
        )
        closers.append(other.aclose)
        if (await other.breaker_status()).state != "open":
            raise AssertionError("the other instance does not see the open circuit")
        calls[SHARED] = (refused(other), 5000)
    except Exception as exc:  # no Redis here: the rest still runs
        absent[SHARED] = f"{REDIS_URL}: {type(exc).__name__}: {exc}"
    bare = dead_store()
    memory = InMemoryImageStore("bench")
    await memory.put(KEY, os.urandom(1024), content_type="image/jpeg")
    guarded = ResilientImageStore(memory)
    closers += [bare.aclose, guarded.aclose]

    async def memory_get() -> None:
        await memory.get(KEY)

    async def guarded_get() -> None:
        await guarded.get(KEY)

    calls[REFUSED] = (refused(bare), 200)
    calls[MEMORY] = (memory_get, 5000)
    calls[GUARDED] = (guarded_get, 5000)
    return calls, closers, absent


async def measure(
    rounds: int, scale: float, seed: int | None
) -> tuple[dict[str, list[list[float]]], dict[str, str]]:
    """Each contender's latencies in µs, one list per round; absentees."""
    calls, closers, absent = await contenders()
    latencies: dict[str, list[list[float]]] = {name: [] for name in calls}
    try:
        shuffler = random.Random(seed)
        for number in range(1, rounds + 1):
            for name in shuffled(list(calls), shuffler):
                call, count = calls[name]
                times = []
                for _ in range(max(1, int(count * scale))):
                    start = time.perf_counter_ns()
                    await call()
                    times.append((time.perf_counter_ns() - start) / 1000)
                latencies[name].append(times)
                median = Summary.of(times).median
                log(f"breaker round {number}/{rounds} {name:<62} {median:9.1f} µs")
    finally:
        for close in reversed(closers):
            await close()
    return latencies, absent


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure; the section's result."""
    rounds = rounds or (2 if quick else 5)
    latencies, absent = asyncio.run(measure(rounds, 0.1 if quick else 1.0, seed))
    rows = []
    for name, per_round in latencies.items():
        ordered = sorted(value for times in per_round for value in times)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        medians = [Summary.of(times).median for times in per_round]
        rows.append(row(name, medians, extra={"p99 µs": p99, "calls": len(ordered)}))
    return {
        "title": "The circuit breaker: failing fast",
        "unit": "µs per call",
        "parameters": {"rounds": rounds},
        "rows": rows,
        "targets": [],
        "absent": absent,
    }
