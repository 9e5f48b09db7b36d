"""Each loopback optimisation against the plain library way, in interleaved rounds.

Run: ``python benchmarks/ab_optimisations.py [--rounds N] [--seconds S]``.
Writes ``benchmarks/results/ab_optimisations.json``. Every case measures one
optimisation on the workload it was built for (the S3 store on a local
SeaweedFS, the upload path on PostgreSQL), once with it and once the plain
way, alternating which goes first from round to round; each round's ratio
(with it / plain) compares two runs made back to back. An optimisation pays
when the median ratio moves the case by more than the ratios spread between
rounds (max - min). An optimisation whose module is gone keeps the figures of the
last run that measured it, marked deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import importlib
import importlib.util
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from unittest import mock

import asyncpg
import attrs

from demeter_storage.adapters.s3 import config as s3_config
from demeter_storage.adapters.s3 import sigv4
from demeter_storage.adapters.s3 import store as s3_store
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.engine import create_engine
from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.testing.seaweedfs import SeaweedFSServer, running_seaweedfs

HERE: Final = Path(__file__).resolve().parent
OUTPUT: Final = HERE / "results" / "ab_optimisations.json"
SAMPLE: Final = HERE.parent / "docs" / "assets" / "sample-leaf.jpg"
POSTGRES_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/test"
OBJECT: Final = bytes(range(256)) * 1024
"""256 KiB: the small object the store's hot path was tuned on."""
BINARY: Final = "application/octet-stream"
LISTED: Final = 1000
"""Keys in the listing case: one full page."""

Op = Callable[[int], Awaitable[object]]
"""One operation of a worker, given its running count."""
Patches = Callable[[], contextlib.AbstractContextManager[Any]]
"""What is patched while one side runs (the plain way swapped in)."""


@dataclass(frozen=True)
class Ready:
    """One side, set up: its operation, and what is patched while it runs."""

    op: Op
    during: Patches = contextlib.nullcontext


Side = Callable[[], AsyncIterator[Ready]]
"""Sets up one side of an A/B (with it, or plain) and yields it ready."""
Build = Callable[[S3ImageStore], Awaitable[Op]]
"""Prepares a store for a workload (say, objects to get) and returns its operation."""


@dataclass(frozen=True)
class Case:
    """One optimisation on one workload: both sides, and how many callers at once."""

    optimisation: str
    workload: str
    concurrency: int
    with_it: Side
    plain: Side
    module: str
    """Where the optimisation lives: ``package.module``, or ``package.module:name``."""


@dataclass
class Outcome:
    """Rates per round (operations per second) of both sides, and the verdict."""

    optimisation: str
    workload: str
    concurrency: int
    with_it: list[float]
    plain: list[float]
    median_with: float
    median_plain: float
    cpu_us_with: list[float]
    """This process's CPU microseconds per operation, with it, round by round."""
    cpu_us_plain: list[float]
    ratios: list[float]
    """with it / plain, round by round."""
    gain: float
    """The median ratio, less 1."""
    spread: float
    """The ratios' max - min."""
    pays: bool


def outcome(case: Case, rates: dict[str, list[float]], cpu: dict[str, list[float]]) -> Outcome:
    """Both sides' figures, and whether the gain beats the spread between rounds."""
    with_it, plain = rates["with"], rates["plain"]
    ratios = [mine / theirs for mine, theirs in zip(with_it, plain, strict=True)]
    gain, spread = statistics.median(ratios) - 1, max(ratios) - min(ratios)
    return Outcome(
        case.optimisation, case.workload, case.concurrency, with_it, plain,
        statistics.median(with_it), statistics.median(plain),
        cpu["with"], cpu["plain"], ratios,
        gain=gain, spread=spread, pays=gain > spread,
    )  # fmt: skip


async def rate(op: Op, concurrency: int, seconds: float) -> tuple[float, float]:
    """Operations per second of ``concurrency`` workers repeating ``op`` for ``seconds``,
    and this process's CPU microseconds per operation (all its threads)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await op(done)
            done += 1

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_us = (time.process_time() - cpu) / done * 1e6
    return done / (time.perf_counter() - start), cpu_us


async def measure(case: Case, rounds: int, seconds: float) -> Outcome:
    """Interleaved rounds: with it first in even rounds, plain first in odd ones."""
    rates: dict[str, list[float]] = {"with": [], "plain": []}
    cpu: dict[str, list[float]] = {"with": [], "plain": []}
    async with contextlib.AsyncExitStack() as stack:
        sides = {
            "with": await stack.enter_async_context(contextlib.asynccontextmanager(case.with_it)()),
            "plain": await stack.enter_async_context(contextlib.asynccontextmanager(case.plain)()),
        }

        async def run(name: str, duration: float) -> tuple[float, float]:
            with sides[name].during():
                return await rate(sides[name].op, case.concurrency, duration)

        for name in sides:  # a warm-up: connections, signing keys, caches
            await run(name, seconds / 4)
        for number in range(rounds):
            for name in ("with", "plain") if number % 2 == 0 else ("plain", "with"):
                ops_per_second, cpu_us = await run(name, seconds)
                rates[name].append(ops_per_second)
                cpu[name].append(cpu_us)
    return outcome(case, rates, cpu)


# The S3 store on SeaweedFS


class ExecutorThreads:
    """The plain way: ``loop.run_in_executor`` on a ``ThreadPoolExecutor``."""

    def __init__(self, max_workers: int, *, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=name)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def shutdown(self) -> None:
        """Let the threads end."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class PlainHmac:
    """The plain way: ``hmac.new(key, digestmod=sha256)`` keyed once, copied per message."""

    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, message: bytes) -> bytes:
        """The MAC of ``message``."""
        mac = self._mac.copy()
        mac.update(message)
        return mac.digest()

    def hexdigest(self, message: bytes) -> str:
        """The MAC of ``message`` in hex."""
        return self.digest(message).hex()


def plain_sha256_hexdigest(data: bytes) -> str:
    """The plain way: hashlib in one call."""
    return hashlib.sha256(data).hexdigest()


def _noop(*_: object) -> None:
    return None


@dataclass
class S3Bench:
    """Builds stores on one server, each in a bucket of its own, and closes them."""

    server: SeaweedFSServer
    stack: contextlib.AsyncExitStack

    async def store(self, *patches: contextlib.AbstractContextManager[Any]) -> S3ImageStore:
        """A store built while ``patches`` are active, its bucket created."""
        with contextlib.ExitStack() as active:
            for patch in patches:
                active.enter_context(patch)
            store = S3ImageStore(f"ab-{uuid.uuid4().hex[:12]}", config=self.server.s3_config())
        self.stack.push_async_callback(store.aclose)
        await store.ensure_bucket()
        return store


async def put(store: S3ImageStore) -> Op:
    """PUT 256 KiB, over 64 keys."""

    async def op(count: int) -> object:
        return await store.put(f"ab/{count % 64}.bin", OBJECT, content_type=BINARY)

    return op


async def get(store: S3ImageStore) -> Op:
    """GET 256 KiB, from 64 keys."""
    for index in range(64):
        await store.put(f"ab/{index}.bin", OBJECT, content_type=BINARY)

    async def op(count: int) -> object:
        return await store.get(f"ab/{count % 64}.bin")

    return op


async def list_page(store: S3ImageStore) -> Op:
    """List one page of 1,000 keys."""
    for index in range(LISTED):
        await store.put(f"page/{index:04d}", b"x", content_type=BINARY)

    async def op(_: int) -> object:
        return [info async for info in store.list("page/")]

    return op


async def presign(store: S3ImageStore) -> Op:
    """Presign 1,000 GET URLs (so that the loop's own overhead stays small)."""

    async def op(count: int) -> object:
        for index in range(1000):
            await store.presign(f"s/{count}-{index}.jpg", expires_in=3600)
        return None

    return op


@contextlib.contextmanager
def busy_thread() -> Iterator[None]:
    """A Python thread spinning beside the loop, as boto3's workers do."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(100))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def plain_hmac() -> Iterator[None]:
    """The SigV4 signer on the plain ``hmac`` and ``hashlib`` calls."""
    with (
        mock.patch.object(sigv4, "HmacSha256", PlainHmac),
        mock.patch.object(sigv4, "sha256_hexdigest", plain_sha256_hexdigest),
    ):
        yield


@contextlib.contextmanager
def beside_busy_thread_with_plain_hmac() -> Iterator[None]:
    """Both of the above."""
    with busy_thread(), plain_hmac():
        yield


def s3_cases(bench: S3Bench) -> list[Case]:
    """The store's cases: threads, payload signing, timestamps, HMAC."""

    def side(build: Build, *built_under: Any, during: Patches = contextlib.nullcontext) -> Side:
        async def set_up() -> AsyncIterator[Ready]:
            yield Ready(await build(await bench.store(*built_under)), during)

        return set_up

    def on_executor(build: Build) -> Side:
        async def set_up() -> AsyncIterator[Ready]:
            store = await bench.store()
            store._threads.shutdown()
            store._threads = ExecutorThreads(store.config.max_concurrency, name="ab")  # type: ignore[assignment]
            yield Ready(await build(store))

        return set_up

    no_known_payload = (
        mock.patch.object(s3_store, "reuse_payload_hashes", _noop),
        mock.patch.object(s3_store, "send_small_payloads_at_once", _noop),
    )
    botocore_timestamps = mock.patch.object(s3_config, "parse_timestamps_directly", _noop)
    threads, payload = "adapters.shared.worker_threads", "adapters.s3.payload_signing"
    timestamps, macs = "adapters.s3.timestamps", "adapters.shared.hmac_sha256"
    cases = []
    for concurrency in (1, 16):
        cases += [
            Case("worker_threads", "S3 put 256 KiB", concurrency,
                 side(put), on_executor(put), threads),
            Case("worker_threads", "S3 get 256 KiB", concurrency,
                 side(get), on_executor(get), threads),
            Case("payload_signing", "S3 put 256 KiB", concurrency,
                 side(put), side(put, *no_known_payload), payload),
            Case("timestamps", "S3 get 256 KiB", concurrency,
                 side(get), side(get, botocore_timestamps), timestamps),
        ]  # fmt: skip
    return [
        *cases,
        Case("timestamps", "S3 list 1,000 keys", 1,
             side(list_page), side(list_page, botocore_timestamps), timestamps),
        Case("hmac_sha256", "S3 presign 1,000 GET URLs", 1,
             side(presign), side(presign, during=plain_hmac), macs),
        Case("hmac_sha256", "S3 presign 1,000 GET URLs beside a busy thread", 1,
             side(presign, during=busy_thread),
             side(presign, during=beside_busy_thread_with_plain_hmac), macs),
    ]  # fmt: skip


# The upload path on PostgreSQL


@contextlib.asynccontextmanager
async def postgres_service(bench: S3Bench) -> AsyncIterator[ImageService]:
    """The image service on two S3 stores and a fresh PostgreSQL database."""
    name = f"demeter_ab_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", pool_size=16, max_overflow=4
    )
    try:
        await create_schema(engine)
        service = ImageService(
            originals=await bench.store(),
            visualizations=await bench.store(),
            metadata=SqlAlchemyMetadataRepository(engine, owns_engine=True),
        )
        yield service
        await service.metadata.aclose()
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def upload_cases(bench: S3Bench) -> list[Case]:
    """The upload path's cases: batched asyncpg statements, buffered ids."""
    data = SAMPLE.read_bytes()
    request = UploadRequest(filename="leaf.jpg", content_type="image/jpeg", size=len(data))

    def side(*, batched: bool = True, during: Patches = contextlib.nullcontext) -> Side:
        async def set_up() -> AsyncIterator[Ready]:
            async with postgres_service(bench) as service:
                if not batched:  # the SQLAlchemy Core statements through the AsyncEngine
                    service.metadata._statements = None  # type: ignore[attr-defined]
                session, names = uuid.uuid4().hex, itertools.count()

                async def op(_: int) -> object:
                    named = attrs.evolve(request, filename=f"photo-{next(names)}.jpg")
                    return await service.upload_original(data, session, named)

                yield Ready(op, during)

        return set_up

    def uuid4_ids() -> contextlib.AbstractContextManager[Any]:
        return mock.patch("demeter_storage.service.uploads.new_id", uuid.uuid4)

    return [
        Case("batching + asyncpg_statements", "upload_original, PostgreSQL", 16,
             side(), side(batched=False), "adapters.sql.asyncpg_statements"),
        Case("batching + asyncpg_statements", "upload_original, PostgreSQL", 1,
             side(), side(batched=False), "adapters.sql.asyncpg_statements"),
        Case("ids", "upload_original, PostgreSQL", 16,
             side(), side(during=uuid4_ids), "domain.ids:_RandomBuffer"),
    ]  # fmt: skip


def present(where: str) -> bool:
    """Whether the optimisation at ``where`` (see :attr:`Case.module`) is still in the package."""
    module, _, name = where.partition(":")
    if importlib.util.find_spec(f"demeter_storage.{module}") is None:
        return False
    return not name or hasattr(importlib.import_module(f"demeter_storage.{module}"), name)


async def main(rounds: int, seconds: float) -> dict[str, Any]:
    """Every case whose optimisation is still in the package; a deleted one's last figures."""
    previous = json.loads(OUTPUT.read_text())["cases"] if OUTPUT.exists() else []
    last = {(c["optimisation"], c["workload"], c["concurrency"]): c for c in previous}
    measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work, running_seaweedfs(Path(work)) as server:
        async with contextlib.AsyncExitStack() as stack:
            bench = S3Bench(server, stack)
            for case in [*s3_cases(bench), *upload_cases(bench)]:
                key = (case.optimisation, case.workload, case.concurrency)
                if not present(case.module):
                    results.append({**last.get(key, {"optimisation": key[0]}), "deleted": True})
                    continue
                print(f"{case.optimisation}: {case.workload} x{case.concurrency}", file=sys.stderr)
                result = await measure(case, rounds, seconds)
                cpu = " vs ".join(
                    f"{statistics.median(side):.0f}"
                    for side in (result.cpu_us_with, result.cpu_us_plain)
                )
                print(
                    f"  {result.gain:+.1%} (spread {result.spread:.1%}); CPU/op {cpu} us",
                    file=sys.stderr,
                )
                setting = {"measured_at": measured_at, "rounds": rounds, "seconds": seconds}
                results.append(asdict(result) | setting)
    return {"cases": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    report = asyncio.run(main(args.rounds, args.seconds))
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUTPUT}", file=sys.stderr)
