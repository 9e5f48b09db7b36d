"""``ImageService.upload_original`` against the bare store's ``put``, with SQLite and PostgreSQL.

Run: ``python benchmarks/service_overhead.py [--rounds N] [--uploads N] [--output FILE]``.
The service is built the way applications build it, by ``build_service`` from
``StorageSettings`` (S3 backend on SeaweedFS, so the originals' store is a
``ResilientImageStore(S3ImageStore)``; thumbnails off); the bare store is built
by the same composition root (``build_stores``) with the same settings. Each
upload is a real small JPEG under a fresh key. PostgreSQL gets a database of
its own, dropped at the end; SQLite is the embedded default (WAL, full fsync)
under a temporary directory. When obstore is installed, the bare store and the
PostgreSQL service are measured again on the obstore engine (``S3_ENGINE=obstore``),
each compared with the bare store of its own engine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common import (
    REPO_ROOT,
    KiB,
    Section,
    Stopwatch,
    Summary,
    Target,
    log,
    markdown_table,
    number,
    obstore_installed,
    option,
    paired_ratios,
    ratio,
    seaweedfs,
    spread,
    standalone,
)

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.bootstrap import build_service, build_stores
from demeter_storage.ports import ImageStore
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.settings.storage import StorageSettings
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer

Rates = dict[tuple[int, str], list[float]]
"""One value per round, by (concurrency, contender)."""

SECTION: Final = "service-overhead"
SAMPLE: Final = REPO_ROOT / "docs" / "assets" / "sample-leaf.jpg"
POSTGRES_ENV: Final = "DEMETER_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BARE: Final = "bare store `put`"
SQLITE: Final = "`upload_original`, SQLite"
IN_MEMORY: Final = "`upload_original`, in-memory metadata"
POSTGRES: Final = "`upload_original`, PostgreSQL"
BARE_OBSTORE: Final = "bare store `put`, obstore engine"
POSTGRES_OBSTORE: Final = "`upload_original`, PostgreSQL, obstore engine"
BASELINES: Final = {POSTGRES_OBSTORE: BARE_OBSTORE, BARE_OBSTORE: BARE_OBSTORE}
"""The bare store each contender is compared with (the default engine's unless listed)."""
TARGET_RATIO: Final = 0.80
TARGET_CONCURRENCY: Final = 16
DEFAULTS: Final = {"rounds": 5, "uploads": 400, "concurrency": [1, 16]}
QUICK: Final = {"rounds": 1, "uploads": 40, "concurrency": [1, 16]}

Upload = Callable[[str, str], Awaitable[None]]
"""Uploads the sample under (session id, filename)."""


@dataclass
class Stacks:
    """The contenders (each an upload function) and what must be closed afterwards."""

    uploads: dict[str, Upload] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    async def aclose(self) -> None:
        """Close every service and store, newest first."""
        for close in reversed(self.closers):
            await close()


def settings(server: SeaweedFSServer, name: str, **overrides: Any) -> StorageSettings:
    """Settings for an S3 stack on ``server`` with buckets named after ``name``."""
    values: dict[str, Any] = {
        "backend": "s3",
        "s3_endpoint_url": server.endpoint_url,
        "aws_region": REGION,
        "s3_addressing_style": "path",
        "aws_access_key_id": server.access_key,
        "aws_secret_access_key": server.secret_key,
        "bucket_original": f"bench-{name}-original",
        "bucket_visualization": f"bench-{name}-viz",
        "s3_create_buckets": True,
        "thumbnails": False,
    }
    values.update(overrides)
    result = StorageSettings(**values)
    result.check()
    return result


def _service_upload(service: ImageService, data: bytes) -> Upload:
    async def upload(session_id: str, filename: str) -> None:
        request = UploadRequest(filename=filename, content_type="image/jpeg", size=len(data))
        response = await service.upload_original(data, session_id, request)
        if response.size != len(data):
            raise AssertionError(f"stored {response.size} bytes of {len(data)}")

    return upload


def _store_upload(store: ImageStore, data: bytes) -> Upload:
    async def upload(session_id: str, filename: str) -> None:
        info = await store.put(f"{session_id}/{filename}", data, content_type="image/jpeg")
        if info.size != len(data):
            raise AssertionError(f"stored {info.size} bytes of {len(data)}")

    return upload


async def postgres_database(admin_url: str) -> tuple[str | None, str]:
    """Create a fresh database; return its URL (None if PostgreSQL is unreachable) and a note."""
    try:
        import asyncpg  # noqa: PLC0415 - the optional postgres extra
    except ImportError:
        return None, "PostgreSQL left out: asyncpg is not installed (the `postgres` extra)"
    name = f"demeter_bench_{uuid.uuid4().hex[:12]}"
    try:
        connection = await asyncpg.connect(admin_url.replace("+asyncpg", ""), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return None, f"PostgreSQL left out: {admin_url} is unreachable ({exc})"
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}", f"PostgreSQL {version}: a fresh database `{name}`, dropped afterwards"


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg  # noqa: PLC0415 - the optional postgres extra

    name = url.rpartition("/")[2]
    connection = await asyncpg.connect(admin_url.replace("+asyncpg", ""), timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def build_stacks(
    server: SeaweedFSServer, work_dir: Path, data: bytes, postgres_url: str | None
) -> Stacks:
    """The bare store, and the service on SQLite and (if given) PostgreSQL."""
    stacks = Stacks()
    bare, _ = build_stores(settings(server, "bare"))
    stacks.closers.append(bare.aclose)
    await bare.ensure_bucket()  # type: ignore[attr-defined]  # passed through to S3ImageStore
    stacks.uploads[BARE] = _store_upload(bare, data)
    stacks.uploads[IN_MEMORY] = await _in_memory_metadata(stacks, server, data)
    sqlite = await build_service(settings(server, "sqlite", storage_root=work_dir / "sqlite-root"))
    stacks.closers.append(sqlite.aclose)
    stacks.uploads[SQLITE] = _service_upload(sqlite, data)
    if postgres_url is not None:
        postgres = await build_service(
            settings(server, "postgres", database_url=postgres_url, create_schema=True)
        )
        stacks.closers.append(postgres.aclose)
        stacks.uploads[POSTGRES] = _service_upload(postgres, data)
    if obstore_installed():
        await _add_obstore_engine(stacks, server, data, postgres_url)
    else:
        stacks.notes.append("obstore engine left out: obstore is not installed")
    return stacks


async def _in_memory_metadata(stacks: Stacks, server: SeaweedFSServer, data: bytes) -> Upload:
    """The service on the same stores, its records in memory: what the database costs, apart."""
    originals, visualizations = build_stores(settings(server, "memory"))
    for store in (originals, visualizations):
        await store.ensure_bucket()  # type: ignore[attr-defined]
    service = ImageService(
        originals=originals, visualizations=visualizations, metadata=InMemoryMetadataRepository()
    )
    stacks.closers.append(service.aclose)
    return _service_upload(service, data)


async def _add_obstore_engine(
    stacks: Stacks, server: SeaweedFSServer, data: bytes, postgres_url: str | None
) -> None:
    """The bare store and the PostgreSQL service again, on the obstore engine."""
    bare, other = build_stores(settings(server, "bare-obstore", s3_engine="obstore"))
    await other.aclose()
    stacks.closers.append(bare.aclose)
    await bare.ensure_bucket()  # type: ignore[attr-defined]  # passed through to the adapter
    stacks.uploads[BARE_OBSTORE] = _store_upload(bare, data)
    if postgres_url is not None:
        service = await build_service(
            settings(
                server,
                "postgres-obstore",
                database_url=postgres_url,
                create_schema=True,
                s3_engine="obstore",
            )
        )
        stacks.closers.append(service.aclose)
        stacks.uploads[POSTGRES_OBSTORE] = _service_upload(service, data)


async def _pass(
    upload: Upload, session_id: str, uploads: int, concurrency: int
) -> tuple[float, float]:
    """Seconds for ``uploads`` uploads under a fresh session, ``concurrency`` at once,
    and the CPU seconds this process spent on them (all its threads)."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limit:
            await upload(session_id, f"photo-{index:05d}.jpg")

    cpu = time.process_time()
    with Stopwatch() as watch:
        await asyncio.gather(*(one(index) for index in range(uploads)))
    return watch.seconds, time.process_time() - cpu


async def measure(
    server: SeaweedFSServer,
    work_dir: Path,
    *,
    data: bytes,
    rounds: int,
    uploads: int,
    concurrencies: Sequence[int],
    postgres_admin_url: str,
    seed: int | None,
) -> tuple[Rates, Rates, list[str], list[str]]:
    """Uploads per second of every contender at every concurrency, one value per round,
    and this process's CPU milliseconds per upload likewise."""
    postgres_url, postgres_note = await postgres_database(postgres_admin_url)
    notes = [postgres_note]
    stacks: Stacks | None = None
    try:
        stacks = await build_stacks(server, work_dir, data, postgres_url)
        notes += stacks.notes
        contenders = list(stacks.uploads)
        shuffler = random.Random(seed)
        log(f"warm-up: every contender uploads {uploads} images once")
        for name in contenders:
            await _pass(stacks.uploads[name], "warm-up", uploads, max(concurrencies))
        rates: Rates = {}
        cpu_ms: Rates = {}
        for round_number in range(1, rounds + 1):
            for concurrency in concurrencies:
                order = list(contenders)
                shuffler.shuffle(order)
                for name in order:
                    session = f"r{round_number}-c{concurrency}"
                    seconds, cpu = await _pass(stacks.uploads[name], session, uploads, concurrency)
                    rates.setdefault((concurrency, name), []).append(uploads / seconds)
                    cpu_ms.setdefault((concurrency, name), []).append(1000 * cpu / uploads)
                    log(
                        f"round {round_number}/{rounds} x{concurrency:<3} {name:<32} "
                        f"{uploads / seconds:8.1f} uploads/s"
                    )
        return rates, cpu_ms, contenders, notes
    finally:
        if stacks is not None:
            await stacks.aclose()
        if postgres_url is not None:
            await drop_database(postgres_admin_url, postgres_url)


def report(
    rates: Rates,
    cpu_ms: Rates,
    contenders: list[str],
    notes: list[str],
    *,
    rounds: int,
    uploads: int,
    size: int,
) -> str:
    """The markdown section: one row per concurrency and contender."""
    rows: list[list[str]] = []
    for concurrency in dict.fromkeys(c for c, _ in rates):
        for name in contenders:
            baseline = Summary.of(rates[(concurrency, BASELINES.get(name, BARE))]).median
            summary = Summary.of(rates[(concurrency, name)])
            rows.append(
                [
                    str(concurrency),
                    name,
                    number(summary.median),
                    spread(summary),
                    f"{1000 / summary.median * concurrency:.1f}",
                    f"{Summary.of(cpu_ms[(concurrency, name)]).median:.2f}",
                    ratio(summary.median, baseline),
                ]
            )
    headers = [
        "concurrency",
        "contender",
        "uploads/s (median)",
        "min-max",
        "ms per upload",
        "CPU ms per upload",
        "vs bare store",
    ]
    notes_text = "".join(f"- {note}\n" for note in notes)
    return (
        f"## Service overhead: `upload_original` of {uploads:,} small JPEGs "
        f"({size / KiB:.1f} KiB)\n\n"
        f"{markdown_table(headers, rows, right=5)}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds; every upload "
        "under a fresh key, `asyncio.gather` bounded by `Semaphore(c)`. Both the service and "
        "the bare store come from the package's composition root with the same settings "
        "(`build_service` / `build_stores`, S3 backend: `ResilientImageStore(S3ImageStore)`, "
        "`S3_MAX_CONCURRENCY` 16, thumbnails off), but for the in-memory metadata row "
        "(below). An upload through the service checks the "
        "JPEG's bytes, writes the record (`uploading`), puts the object, marks the record "
        "`ready` and presigns a URL for the response; the bare store only puts the object. "
        '"ms per upload" is the latency one upload sees at that concurrency '
        '(concurrency / rate); "CPU ms per upload" is this process\'s CPU time (every '
        "thread: the event loop's and boto3's) divided by the uploads; the database and "
        "SeaweedFS servers are not counted. The obstore-engine rows (`S3_ENGINE=obstore`: "
        "`ResilientImageStore(ObstoreImageStore)`) are compared with the obstore engine's "
        "bare store. The in-memory metadata row is the same service on stores built the "
        "same way, its records kept in memory (`InMemoryMetadataRepository`, as host apps' "
        "tests use): "
        "the gap between it and a database row is what that database's two writes cost.\n\n"
        f"{notes_text}"
    )


def targets(rates: Rates, cpu_ms: Rates) -> list[Target]:
    """``upload_original`` at 16 concurrent >= 80% of the bare store, with PostgreSQL."""
    name = f"`upload_original` with PostgreSQL, {TARGET_CONCURRENCY} concurrent, vs bare `put`"
    goal = f">= {TARGET_RATIO:.2f}x"
    if (TARGET_CONCURRENCY, POSTGRES) not in rates:
        return [Target(name, goal, "not measured (PostgreSQL or concurrency 16 missing)", None)]
    service = Summary.of(rates[(TARGET_CONCURRENCY, POSTGRES)]).median
    bare = Summary.of(rates[(TARGET_CONCURRENCY, BARE)]).median
    paired = paired_ratios(rates[(TARGET_CONCURRENCY, POSTGRES)], rates[(TARGET_CONCURRENCY, BARE)])
    measured = (
        f"{paired.median:.2f}x (rounds {spread(paired, 2)}; of medians {service / bare:.2f}x: "
        f"{service:.0f} vs {bare:.0f} uploads/s)"
    )
    service_cpu = Summary.of(cpu_ms[(TARGET_CONCURRENCY, POSTGRES)]).median
    bare_cpu = Summary.of(cpu_ms[(TARGET_CONCURRENCY, BARE)]).median
    limit = (
        "the client process is the bottleneck: Python runs one thread at a time, so the "
        f"bare put already keeps it about one core busy ({bare_cpu:.2f} ms of CPU per put x "
        f"{bare:.0f}/s), and every upload through the service costs {service_cpu:.2f} ms"
        f"{_apart_from_the_database(rates, cpu_ms, bare_cpu, service_cpu)}. The record is "
        "written twice (`uploading`, then `ready`), which an upload needs never to orphan an "
        "object or a row; concurrent uploads share the writes (batched statements). On the "
        "obstore engine, whose I/O runs outside Python, see the section's obstore rows; "
        "`benchmarks/profile_service.py` breaks the time down"
    )
    return [Target(name, goal, measured, paired.median >= TARGET_RATIO, limit)]


def _apart_from_the_database(rates: Rates, cpu_ms: Rates, bare: float, service: float) -> str:
    """How the in-memory metadata row splits the service's extra CPU, if it was measured."""
    key = (TARGET_CONCURRENCY, IN_MEMORY)
    if key not in rates:
        return ""
    paired = paired_ratios(rates[key], rates[(TARGET_CONCURRENCY, BARE)])
    in_memory = Summary.of(cpu_ms[key]).median
    if in_memory < bare:
        # The medians come from different passes: the bare put's spread can exceed
        # what the service's own steps cost.
        return (
            f"; the same service with its records in memory ran at {paired.median:.2f}x and "
            f"{in_memory:.2f} ms, below the bare put's median (the spread between passes is "
            "larger than the service's own steps), so the "
            f"{service - bare:.2f} ms more than the bare put are PostgreSQL's two writes "
            f"({service - in_memory:.2f} ms above the in-memory row)"
        )
    return (
        f"; the same service with its records in memory ran at {paired.median:.2f}x and "
        f"{in_memory:.2f} ms, so of the {service - bare:.2f} ms more than the bare put, the "
        f"service's own steps (checks, URL, records in memory) took {in_memory - bare:.2f} ms and "
        f"PostgreSQL's two writes {service - in_memory:.2f} ms"
    )


def run(
    *,
    rounds: int,
    uploads: int,
    concurrencies: Sequence[int],
    image: Path = SAMPLE,
    postgres_url: str | None = None,
    seed: int | None = None,
    server: SeaweedFSServer | None = None,
) -> Section:
    """Measure (on ``server``, or a fresh one) and return the markdown section."""
    data = image.read_bytes()
    admin_url = postgres_url or os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)

    def measured(target: SeaweedFSServer, work_dir: Path) -> Section:
        rates, cpu_ms, contenders, notes = asyncio.run(
            measure(
                target,
                work_dir,
                data=data,
                rounds=rounds,
                uploads=uploads,
                concurrencies=concurrencies,
                postgres_admin_url=admin_url,
                seed=seed,
            )
        )
        notes.append(f"The image: `{_shown(image)}`, {len(data):,} bytes.")
        markdown = report(
            rates, cpu_ms, contenders, notes, rounds=rounds, uploads=uploads, size=len(data)
        )
        return Section(SECTION, markdown, targets(rates, cpu_ms))

    with tempfile.TemporaryDirectory(prefix="demeter-bench-service-") as tmp:
        if server is not None:
            return measured(server, Path(tmp))
        with seaweedfs() as fresh:
            return measured(fresh, Path(tmp))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument(
        f"--{prefix}uploads", type=int, help="uploads per pass (default 400, quick 40)"
    )
    parser.add_argument(f"--{prefix}concurrency", type=int, nargs="+", help="levels (default 1 16)")
    parser.add_argument(f"--{prefix}image", type=Path, help="the JPEG to upload (sample-leaf)")
    parser.add_argument(
        f"--{prefix}postgres-url",
        help=f"an existing database to create the bench database from (${POSTGRES_ENV}, "
        f"default {DEFAULT_POSTGRES_URL})",
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    return {
        "rounds": option(args, prefix, "rounds", DEFAULTS["rounds"], QUICK["rounds"]),
        "uploads": option(args, prefix, "uploads", DEFAULTS["uploads"], QUICK["uploads"]),
        "concurrencies": option(
            args, prefix, "concurrency", DEFAULTS["concurrency"], QUICK["concurrency"]
        ),
        "image": option(args, prefix, "image", SAMPLE, SAMPLE),
        "postgres_url": option(args, prefix, "postgres_url", None, None),
        "seed": args.seed,
    }


if __name__ == "__main__":
    standalone(sys.modules[__name__])
