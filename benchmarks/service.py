"""``ImageService.upload_original`` against the bare store's ``put``, with SQLite and PostgreSQL.

The service is built as applications build it, by ``build_service`` from
``StorageSettings`` (S3 on SeaweedFS, thumbnails off); the bare store by
``build_stores`` from the same settings. Each upload is a small real JPEG
under a fresh key. PostgreSQL (``DEMETER_BENCH_POSTGRES_URL``, default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) gets a fresh database,
dropped at the end; SQLite is the embedded default under a temporary directory.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import common

from demeter_storage import (
    ImageService,
    StorageSettings,
    UploadRequest,
    build_service,
    build_stores,
)
from demeter_storage.testing.seaweedfs import SeaweedFSServer

SAMPLE: Final = common.REPO_ROOT / "docs" / "assets" / "sample-leaf.jpg"
ADMIN_URL: Final = os.environ.get(
    "DEMETER_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BARE: Final = "bare store `put`"
SQLITE: Final = "`upload_original`, SQLite"
POSTGRES: Final = "`upload_original`, PostgreSQL"
CONCURRENCY: Final = (1, 16)

Upload = Callable[[str, str], Awaitable[None]]
"""Uploads the sample as (session id, file name)."""


async def admin(statement: str) -> str | None:
    """Run ``statement`` on the admin database: None, or why PostgreSQL is unreachable."""
    import asyncpg  # noqa: PLC0415 - the optional `postgres` extra

    try:
        connection = await asyncpg.connect(ADMIN_URL.replace("+asyncpg", ""), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{ADMIN_URL} is unreachable: {exc}"
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
    return None


async def service_upload(service: ImageService, data: bytes, session: str, name: str) -> None:
    """``upload_original`` of ``data`` as ``name`` in ``session``."""
    request = UploadRequest(filename=name, content_type="image/jpeg", size=len(data))
    await service.upload_original(data, session, request)


async def timed_pass(upload: Upload, session: str, uploads: int, c: int) -> tuple[float, float]:
    """Seconds for ``uploads`` uploads, ``c`` at once, and this process's CPU seconds."""
    cpu = time.process_time()
    names = [f"photo-{index:05d}.jpg" for index in range(uploads)]
    seconds = await common.bounded(names, c, lambda name: upload(session, name))
    return seconds, time.process_time() - cpu


async def measure(
    server: SeaweedFSServer, work: Path, uploads: int, rounds: int, seed: int | None
) -> tuple[dict[tuple[int, str], list[tuple[float, float]]], dict[str, str]]:
    """(uploads/s, CPU ms per upload) by (concurrency, contender), one pair a round; absentees."""
    data = SAMPLE.read_bytes()
    common.create_buckets(
        server, [f"bench-{n}{v}" for n in ("bare", "sqlite", "pg") for v in ("", "-viz")]
    )
    bare, other = build_stores(common.settings(server, "bench-bare", s3_max_concurrency=16))
    closers: list[Callable[[], Awaitable[None]]] = [bare.aclose, other.aclose]

    async def put(session: str, name: str) -> None:
        await bare.put(f"{session}/{name}", data, content_type="image/jpeg")

    contenders: dict[str, Upload] = {BARE: put}
    stacks: dict[str, StorageSettings] = {
        SQLITE: common.settings(server, "bench-sqlite", storage_root=work / "sqlite")
    }
    database = f"demeter_bench_{uuid.uuid4().hex[:12]}"
    problem = await admin(f'CREATE DATABASE "{database}"')
    absent = {POSTGRES: problem} if problem else {}
    if not problem:
        url = f"{ADMIN_URL.rpartition('/')[0]}/{database}"
        stacks[POSTGRES] = common.settings(server, "bench-pg", database_url=url, create_schema=True)
    for label, stack in stacks.items():
        service = await build_service(stack)
        closers.append(service.aclose)
        contenders[label] = functools.partial(service_upload, service, data)
    try:
        common.log(f"warm-up: every contender uploads {uploads} images once")
        for upload in contenders.values():
            await timed_pass(upload, "warm-up", uploads, 16)
        shuffler = random.Random(seed)
        figures: dict[tuple[int, str], list[tuple[float, float]]] = {
            (c, name): [] for c in CONCURRENCY for name in contenders
        }
        for number in range(1, rounds + 1):
            for c in CONCURRENCY:
                for name in common.shuffled(list(contenders), shuffler):
                    seconds, cpu = await timed_pass(contenders[name], f"r{number}-{c}", uploads, c)
                    figures[(c, name)].append((uploads / seconds, cpu * 1000 / uploads))
                    common.log(
                        f"service {number}/{rounds} x{c} {name:<30} {uploads / seconds:.1f}/s"
                    )
    finally:
        for close in reversed(closers):
            await close()
        if not problem:
            await admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return figures, absent


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure on a fresh server; the section's result."""
    rounds = rounds or (1 if quick else 5)
    uploads = 40 if quick else 400
    with (
        common.seaweedfs() as server,
        tempfile.TemporaryDirectory(prefix="demeter-service-") as work,
    ):
        figures, absent = asyncio.run(measure(server, Path(work), uploads, rounds, seed))
    rates = {key: [rate for rate, _ in pairs] for key, pairs in figures.items()}
    cpu = {key: common.Summary.of([ms for _, ms in pairs]).median for key, pairs in figures.items()}
    rows = [
        common.row(
            name,
            rates[(c, name)],
            case=f"x{c}",
            versus={"bare store": rates[(c, BARE)]},
            extra={"CPU ms per upload": cpu[(c, name)]},
        )
        for c, name in figures
    ]
    judged = common.paired(rates[(16, POSTGRES)], rates[(16, BARE)]) if not absent else None
    return {
        "title": "`upload_original` against the bare store",
        "unit": "uploads/s",
        "parameters": {"rounds": rounds, "uploads": uploads, "JPEG bytes": SAMPLE.stat().st_size},
        "rows": rows,
        "targets": [
            common.target(f"{POSTGRES}, 16 concurrent, vs {BARE}", ">=", 0.80, "x", judged)
        ],
        "absent": absent,
    }
