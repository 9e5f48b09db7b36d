"""Each loopback optimisation against the plain library way, in interleaved rounds.

Run: ``python benchmarks/ab_optimisations.py [--rounds N] [--seconds S]``.
Writes ``benchmarks/results/ab_optimisations.json``. Every case measures one
optimisation on the workload it was built for (the S3 store on a local
SeaweedFS, the upload path on PostgreSQL), once with it and once the plain
way, alternating which goes first from round to round; each round's ratio
(with it / plain) compares two runs made back to back. An optimisation pays
when the median ratio moves the case by more than the ratios spread between
rounds (max - min). The optimisations that did not pay were deleted; the file keeps
the figures of the run that measured them (this module's version of commit
57a4699 has their cases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final
from unittest import mock

import asyncpg
import attrs

from demeter_storage.adapters.s3 import config as s3_config
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
Side = Callable[[], AsyncIterator[Op]]
"""Sets up one side of an A/B (with it, or plain) and yields its operation."""
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
            return await rate(sides[name], case.concurrency, duration)

        for name in sides:  # a warm-up: connections, signing keys, caches
            await run(name, seconds / 4)
        for number in range(rounds):
            for name in ("with", "plain") if number % 2 == 0 else ("plain", "with"):
                ops_per_second, cpu_us = await run(name, seconds)
                rates[name].append(ops_per_second)
                cpu[name].append(cpu_us)
    return outcome(case, rates, cpu)


# The S3 store on SeaweedFS


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


def s3_cases(bench: S3Bench) -> list[Case]:
    """The store's cases: S3's timestamps parsed directly, or by botocore (dateutil)."""

    def side(build: Build, *built_under: Any) -> Side:
        async def set_up() -> AsyncIterator[Op]:
            yield await build(await bench.store(*built_under))

        return set_up

    botocore_timestamps = mock.patch.object(s3_config, "parse_timestamps_directly", _noop)
    return [
        Case("timestamps", "S3 get 256 KiB", 1,
             side(get), side(get, botocore_timestamps)),
        Case("timestamps", "S3 get 256 KiB", 16,
             side(get), side(get, botocore_timestamps)),
        Case("timestamps", "S3 list 1,000 keys", 1,
             side(list_page), side(list_page, botocore_timestamps)),
    ]  # fmt: skip


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

    def side(*, batched: bool = True) -> Side:
        async def set_up() -> AsyncIterator[Op]:
            async with postgres_service(bench) as service:
                if not batched:  # the SQLAlchemy Core statements through the AsyncEngine
                    service.metadata._statements = None  # type: ignore[attr-defined]
                session, names = uuid.uuid4().hex, itertools.count()

                async def op(_: int) -> object:
                    named = attrs.evolve(request, filename=f"photo-{next(names)}.jpg")
                    return await service.upload_original(data, session, named)

                yield op

        return set_up

    return [
        Case("batching + asyncpg_statements", "upload_original, PostgreSQL", 16,
             side(), side(batched=False)),
        Case("batching + asyncpg_statements", "upload_original, PostgreSQL", 1,
             side(), side(batched=False)),
    ]  # fmt: skip


async def main(rounds: int, seconds: float) -> dict[str, Any]:
    """Every case of a kept optimisation; a deleted one's figures from its last run."""
    measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work, running_seaweedfs(Path(work)) as server:
        async with contextlib.AsyncExitStack() as stack:
            bench = S3Bench(server, stack)
            for case in [*s3_cases(bench), *upload_cases(bench)]:
                print(f"{case.optimisation}: {case.workload} x{case.concurrency}", file=sys.stderr)
                result = await measure(case, rounds, seconds)
                print(f"  {result.gain:+.1%} (spread {result.spread:.1%})", file=sys.stderr)
                setting = {"measured_at": measured_at, "rounds": rounds, "seconds": seconds}
                results.append(asdict(result) | setting)
    previous = json.loads(OUTPUT.read_text())["cases"] if OUTPUT.exists() else []
    kept = {case["optimisation"] for case in results}
    deleted = [case for case in previous if case["optimisation"] not in kept]
    return {"cases": [*deleted, *results]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    report = asyncio.run(main(args.rounds, args.seconds))
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUTPUT}", file=sys.stderr)
