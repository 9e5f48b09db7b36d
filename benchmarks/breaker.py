"""The circuit breaker: how fast an open circuit fails, against calls that go to a dead server.

Run: ``python benchmarks/breaker.py [--rounds N] [--calls N] [--output FILE]``.
No S3 server: the backend is a loopback port nothing listens on, so every
request is refused at once (the kindest outage there is: a server that hangs
costs a whole ``read_timeout``, 60 s by default, per call). Each call's latency
is timed on its own (``perf_counter_ns``); the rounds interleave the contenders.

Contenders:

- ``ResilientImageStore.get`` with its circuit open, state in this process;
- the same with the state shared through Redis, opened by another instance (as
  another process would see it), when Redis is reachable;
- for reference, without an open circuit: raw boto3 ``get_object`` and
  ``S3ImageStore.get`` against the refused port (one attempt each), and
  ``ResilientImageStore.get`` with its default retries (3 attempts, backoff);
- the closed circuit's cost on success: ``ResilientImageStore(InMemoryImageStore)``
  against the bare ``InMemoryImageStore``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from common import (
    Section,
    Summary,
    log,
    markdown_table,
    number,
    option,
    percentile,
    raw_client,
    standalone,
)

from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.errors import StorageUnavailable
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import REGION

SECTION: Final = "breaker"
REDIS_ENV: Final = "DEMETER_BENCH_REDIS_URL"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
KEY: Final = "session-0001/photo-00001.jpg"
BUCKET: Final = "bench-breaker"
OPEN_LOCAL: Final = "open circuit: `ResilientImageStore.get`"
OPEN_SHARED: Final = "open circuit, shared through Redis, opened by another instance"
RAW_REFUSED: Final = "no circuit: raw boto3 `get_object`, refused port, 1 attempt"
STORE_REFUSED: Final = "no circuit: `S3ImageStore.get`, refused port, 1 attempt"
RETRYING: Final = "closed circuit: `ResilientImageStore.get`, refused port, default retries"
MEMORY: Final = "healthy: `InMemoryImageStore.get`"
MEMORY_GUARDED: Final = "healthy: `ResilientImageStore(InMemoryImageStore).get`"
DEFAULTS: Final = {"rounds": 5, "calls": 5000, "slow_calls": 200, "retry_calls": 4}
QUICK: Final = {"rounds": 2, "calls": 500, "slow_calls": 20, "retry_calls": 1}

Call = Callable[[], Awaitable[None]]


def refused_endpoint() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens (a port just released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _config(endpoint: str) -> S3Config:
    return S3Config(
        endpoint_url=endpoint,
        region=REGION,
        addressing_style="path",
        access_key_id="bench",
        secret_access_key=Secret("bench-secret"),
        connect_timeout=1.0,
        read_timeout=1.0,
    )


def _expect_unavailable(store: ImageStore) -> Call:
    async def call() -> None:
        try:
            await store.get(KEY)
        except StorageUnavailable:
            return
        raise AssertionError("the call did not fail with StorageUnavailable")

    return call


@dataclass
class Contenders:
    """Each contender's call and calls per round; what to close; notes."""

    calls: dict[str, tuple[Call, int]] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close every store, and the boto3 client."""
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()


async def _redis_problem(url: str) -> str | None:
    try:
        from redis import asyncio as aioredis  # noqa: PLC0415 - the optional redis extra
    except ImportError:
        return "the redis client is not installed (the `redis` extra)"
    client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        return f"{url} is unreachable ({type(exc).__name__}: {exc})"
    finally:
        await client.aclose()
    return None


async def _trip(store: ResilientImageStore) -> None:
    """Fail calls until the circuit opens."""
    for _ in range(store.breaker.threshold):
        await _expect_unavailable(store)()
    status = await store.breaker_status()
    if status.state != "open":
        raise AssertionError(f"the circuit did not open: {status}")


async def build(calls: int, slow_calls: int, retry_calls: int, redis_url: str) -> Contenders:
    """Every contender, with its circuit opened where it should be."""
    found = Contenders()
    endpoint = refused_endpoint()
    found.notes.append(f"The dead backend: `{endpoint}` (connection refused).")

    def resilient(**kwargs: Any) -> ResilientImageStore:
        inner = S3ImageStore(BUCKET, config=_config(endpoint))
        store = ResilientImageStore(inner, reset_timeout=3600, **kwargs)
        found.closers.append(store.aclose)
        return store

    opened = resilient(retry_attempts=1, circuit_name=f"bench-local-{uuid.uuid4().hex[:8]}")
    await _trip(opened)
    found.calls[OPEN_LOCAL] = (_expect_unavailable(opened), calls)

    problem = await _redis_problem(redis_url)
    if problem is None:
        name = f"bench-shared-{uuid.uuid4().hex[:8]}"
        tripper = resilient(retry_attempts=1, circuit_name=name, redis_url=redis_url)
        await _trip(tripper)
        other = resilient(retry_attempts=1, circuit_name=name, redis_url=redis_url)
        status = await other.breaker_status()
        if not status.shared or status.state != "open":
            raise AssertionError(f"the other instance does not see the open circuit: {status}")
        found.calls[OPEN_SHARED] = (_expect_unavailable(other), calls)
        found.closers.append(lambda: _forget_circuit(redis_url, name))
        found.notes.append(f"Redis: `{redis_url}` (the circuit's keys are deleted afterwards).")
    else:
        found.notes.append(f"The shared (Redis) circuit was left out: {problem}.")

    client = raw_client(endpoint, "bench", "bench-secret", pool=1)
    found.closers.append(lambda: asyncio.to_thread(client.close))

    async def raw_call() -> None:
        try:
            await asyncio.to_thread(client.get_object, Bucket=BUCKET, Key=KEY)
        except Exception as exc:  # botocore's EndpointConnectionError
            if "connect" not in str(exc).lower():
                raise
            return
        raise AssertionError("raw boto3 reached a dead port")

    found.calls[RAW_REFUSED] = (raw_call, slow_calls)
    bare = S3ImageStore(BUCKET, config=_config(endpoint))
    found.closers.append(bare.aclose)
    found.calls[STORE_REFUSED] = (_expect_unavailable(bare), slow_calls)
    # A circuit that never opens, the store's default retries and backoff otherwise.
    retrying = resilient(failure_threshold=1_000_000)
    found.calls[RETRYING] = (_expect_unavailable(retrying), retry_calls)

    memory = InMemoryImageStore(BUCKET)
    await memory.put(KEY, os.urandom(1024), content_type="image/jpeg")
    guarded = ResilientImageStore(memory)

    async def memory_get() -> None:
        await memory.get(KEY)

    async def guarded_get() -> None:
        await guarded.get(KEY)

    found.calls[MEMORY] = (memory_get, calls)
    found.calls[MEMORY_GUARDED] = (guarded_get, calls)
    return found


async def _forget_circuit(redis_url: str, name: str) -> None:
    from redis import asyncio as aioredis  # noqa: PLC0415 - the optional redis extra

    client = aioredis.from_url(redis_url)
    try:
        await client.delete(f"cbr::{name}", f"cbr::{name}::probe")
    finally:
        await client.aclose()


async def _timed(call: Call, count: int) -> list[float]:
    """Each call's latency in microseconds."""
    latencies = []
    for _ in range(count):
        start = time.perf_counter_ns()
        await call()
        latencies.append((time.perf_counter_ns() - start) / 1000)
    return latencies


async def measure(
    *, rounds: int, calls: int, slow_calls: int, retry_calls: int, redis_url: str, seed: int | None
) -> tuple[dict[str, list[list[float]]], list[str], dict[str, int], list[str]]:
    """Per contender, each round's latencies; the order; calls per round; notes."""
    found = await build(calls, slow_calls, retry_calls, redis_url)
    try:
        shuffler = random.Random(seed)
        results: dict[str, list[list[float]]] = {}
        for call, _ in found.calls.values():
            await _timed(call, 1)  # warm: imports, first connection attempts
        for round_number in range(1, rounds + 1):
            order = list(found.calls)
            shuffler.shuffle(order)
            for name in order:
                call, count = found.calls[name]
                latencies = await _timed(call, count)
                results.setdefault(name, []).append(latencies)
                log(
                    f"round {round_number}/{rounds} {name:<66} median "
                    f"{percentile(latencies, 0.5):10.1f} µs"
                )
        counts = {name: count for name, (_, count) in found.calls.items()}
        return results, list(found.calls), counts, found.notes
    finally:
        await found.aclose()


def _micros(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1000:,.0f} ms"
    return number(value, 1 if value < 100 else 0)


def report(
    results: dict[str, list[list[float]]],
    order: list[str],
    counts: dict[str, int],
    notes: list[str],
    *,
    rounds: int,
) -> str:
    """The markdown section: one row per contender."""
    rows = []
    for name in order:
        medians = Summary.of([percentile(r, 0.5) for r in results[name]])
        p99 = Summary.of([percentile(r, 0.99) for r in results[name]])
        every = [value for r in results[name] for value in r]
        rows.append(
            [
                name,
                str(counts[name]),
                _micros(medians.median),
                f"{_micros(medians.low)}-{_micros(medians.high)}",
                _micros(p99.median),
                _micros(max(every)),
                number(1e6 / medians.median),
            ]
        )
    headers = [
        "contender",
        "calls per round",
        "median µs",
        "min-max of round medians",
        "p99 µs",
        "max µs",
        "calls/s",
    ]
    notes_text = "".join(f"- {note}\n" for note in notes)
    return (
        "## Circuit breaker: failing fast\n\n"
        f"{markdown_table(headers, rows, right=6)}\n\n"
        f"Median over {rounds} interleaved round(s) of each round's median latency (min-max "
        "across rounds); p99 is the median of the rounds' 99th percentiles, max the "
        "slowest call of all. One call at a time, each awaited and timed on its own. The "
        "open circuits raise `StorageUnavailable` (with `retry_after`) without a request; "
        "the references show what a caller waits for each failure when no open circuit "
        "stops it, on the friendliest outage (a refused loopback port; a hung server "
        "costs `read_timeout` per attempt). The last two rows are the closed circuit's "
        "cost on a call that succeeds.\n\n"
        f"{notes_text}"
    )


def run(
    *,
    rounds: int,
    calls: int,
    slow_calls: int,
    retry_calls: int,
    redis_url: str | None = None,
    seed: int | None = None,
) -> Section:
    """Measure and return the markdown section."""
    url = redis_url or os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL)
    results, order, counts, notes = asyncio.run(
        measure(
            rounds=rounds,
            calls=calls,
            slow_calls=slow_calls,
            retry_calls=retry_calls,
            redis_url=url,
            seed=seed,
        )
    )
    return Section(SECTION, report(results, order, counts, notes, rounds=rounds))


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 5, quick 2)")
    parser.add_argument(
        f"--{prefix}calls", type=int, help="calls per round of fast contenders (5000, quick 500)"
    )
    parser.add_argument(
        f"--{prefix}slow-calls", type=int, help="calls per round to the refused port (200)"
    )
    parser.add_argument(
        f"--{prefix}retry-calls", type=int, help="calls per round with retries and backoff (4)"
    )
    parser.add_argument(
        f"--{prefix}redis-url",
        help=f"Redis for the shared circuit (${REDIS_ENV}, default {DEFAULT_REDIS_URL})",
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    picked = {
        name: option(args, prefix, name, DEFAULTS[name], QUICK[name])
        for name in ("rounds", "calls", "slow_calls", "retry_calls")
    }
    return {**picked, "redis_url": option(args, prefix, "redis_url", None, None), "seed": args.seed}


if __name__ == "__main__":
    standalone(sys.modules[__name__])
