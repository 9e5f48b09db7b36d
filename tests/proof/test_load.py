"""Load: N uploads of 64 KiB to 1 MiB at concurrency 64 through the image service.

The stack is the production one: SeaweedFS behind ``S3ImageStore`` wrapped in
``ResilientImageStore`` (built by ``bootstrap.build_stores``, as
``build_service`` builds it) and PostgreSQL metadata. The test checks that
nothing is lost (every upload succeeds, is listed and has a ready row), that
every download matches the SHA-256 computed here, that no connection pool
complains, and that memory stays flat (RSS growth between the first and the
last tenth of the run stays far below what a per-upload leak would add).

``DEMETER_LOAD_UPLOADS`` sets N (1,000 by default, the CI slice; ``nox -s load``
runs 10,000). The report is printed and, with ``DEMETER_LOAD_REPORT`` set,
written to that file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import resource
import statistics
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.bootstrap import build_stores
from demeter_storage.domain.records import ImageState
from demeter_storage.service.image_service import ImageService, ServiceConfig
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.settings.storage import StorageSettings
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer

pytestmark = [pytest.mark.seaweedfs, pytest.mark.postgres, pytest.mark.slow]

UPLOADS_ENV = "DEMETER_LOAD_UPLOADS"
REPORT_ENV = "DEMETER_LOAD_REPORT"
DEFAULT_UPLOADS = 1_000
CONCURRENCY = 64
KiB, MiB = 1024, 1024 * 1024
MIN_SIZE, MAX_SIZE = 64 * KiB, 1 * MiB
SESSIONS = 16
SEED = 20_261_124
RSS_GROWTH_LIMIT = 128 * MiB
"""RSS may grow this much between the first and the last tenth of a phase.

A leak of even 1 % of each payload (~5 KiB an upload) would add 40 MiB over the
8,000 uploads between the tenths of the 10,000 run; keeping whole payloads
would add gigabytes. Warm-up (thread and connection pools) stays well under it.
"""
WATCHED_LOGGERS = ("urllib3", "botocore", "boto3", "sqlalchemy", "asyncpg", "demeter_storage")

# The smallest JPEG start the service accepts: SOI, then an APP0 (JFIF) segment.
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _uploads() -> int:
    raw = os.environ.get(UPLOADS_ENV, "").strip()
    return int(raw) if raw else DEFAULT_UPLOADS


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in KiB; 0 where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0), so the peak is this test's own; False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


class Payloads:
    """Unique, cheap payloads: a JPEG head, the index, then a slice of shared noise."""

    def __init__(self, count: int) -> None:
        rng = random.Random(SEED)
        self.sizes = [rng.randint(MIN_SIZE, MAX_SIZE) for _ in range(count)]
        self.offsets = [rng.randrange(MAX_SIZE) for _ in range(count)]
        self._noise = rng.randbytes(2 * MAX_SIZE)

    def key_parts(self, index: int) -> tuple[str, str]:
        return f"load-{index % SESSIONS:02d}", f"img-{index:06d}.jpg"

    def data(self, index: int) -> bytes:
        tag = index.to_bytes(8, "big")
        start = self.offsets[index]
        rest = self.sizes[index] - len(JPEG_HEAD) - len(tag)
        return JPEG_HEAD + tag + self._noise[start : start + rest]


class Phase:
    """Timing and RSS samples (one per finished operation) of one phase."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[int] = []
        self.bytes = 0
        self.started = self.ended = 0.0

    def record(self, size: int) -> None:
        self.bytes += size
        self.samples.append(_status_kib("VmRSS"))

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def rss_growth_kib(self) -> int:
        tenth = max(len(self.samples) // 10, 1)
        first = statistics.median(self.samples[:tenth])
        last = statistics.median(self.samples[-tenth:])
        return int(last - first)

    def summary(self) -> str:
        count = len(self.samples)
        return (
            f"{self.name}: {count} in {self.seconds:.1f} s = {count / self.seconds:.0f}/s, "
            f"{self.bytes / MiB / self.seconds:.1f} MiB/s; RSS growth first->last tenth "
            f"{self.rss_growth_kib() / 1024:+.1f} MiB"
        )


async def _run(
    count: int, operation: Callable[[int], Awaitable[int]], phase: Phase
) -> list[tuple[int, BaseException]]:
    """Run ``operation`` on 0..count-1, CONCURRENCY at a time; return the failures."""
    indices: Iterator[int] = iter(range(count))
    failures: list[tuple[int, BaseException]] = []

    async def worker() -> None:
        for index in indices:  # one shared iterator: each index is taken once
            try:
                phase.record(await operation(index))
            except Exception as exc:
                failures.append((index, exc))

    phase.started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    phase.ended = time.perf_counter()
    return failures


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _production_service(server: SeaweedFSServer, engine: Any) -> ImageService:
    suffix = uuid.uuid4().hex[:8]
    settings = StorageSettings(
        backend="s3",
        bucket_original=f"load-orig-{suffix}",
        bucket_visualization=f"load-viz-{suffix}",
        aws_region=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        s3_endpoint_url=server.endpoint_url,
        s3_addressing_style="path",
    )
    settings.check()
    originals, visualizations = build_stores(settings)
    for store in (originals, visualizations):
        await store.ensure_bucket()  # type: ignore[attr-defined]
    return ImageService(
        originals=originals,
        visualizations=visualizations,
        metadata=SqlAlchemyMetadataRepository(engine),
        config=ServiceConfig(),
        thumbnails=None,  # the payloads are not decodable pictures; this measures storage
    )


async def test_uploads_under_load_are_all_kept_verified_and_memory_stays_flat(
    seaweedfs_server: SeaweedFSServer, postgres_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    count = _uploads()
    payloads = Payloads(count)
    service = await _production_service(seaweedfs_server, postgres_engine)
    expected: dict[str, tuple[str, int]] = {}

    async def upload(index: int) -> int:
        data = payloads.data(index)
        sha256 = await asyncio.to_thread(_sha256, data)
        session, name = payloads.key_parts(index)
        request = UploadRequest(name, "image/jpeg", size=len(data))
        image = await service.upload_original(data, session, request)
        assert (image.s3_key, image.sha256, image.size) == (f"{session}/{name}", sha256, len(data))
        expected[image.s3_key] = (sha256, len(data))
        return len(data)

    async def download(index: int) -> int:
        session, name = payloads.key_parts(index)
        key = f"{session}/{name}"
        data = await service.download_original(key)  # checks the recorded SHA-256
        assert (await asyncio.to_thread(_sha256, data), len(data)) == expected[key]
        return len(data)

    caplog.set_level(logging.WARNING)
    peak_reset = _reset_peak_rss()
    rss_start = _status_kib("VmRSS")
    uploads, downloads = Phase("uploads"), Phase("downloads")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            upload_failures = await _run(count, upload, uploads)
            download_failures = await _run(count, download, downloads)
        listed = {info.key: info.size async for info in service.originals.list()}
        rows = [record async for record in service.metadata.records()]
        pages = 0
        for session in sorted({payloads.key_parts(i)[0] for i in range(min(count, SESSIONS))}):
            cursor: str | None = None
            while True:
                page = await service.list_session_images(session, limit=1000, cursor=cursor)
                pages += len(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
    finally:
        await service.aclose()

    peak_kib = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = "\n".join(
        [
            f"load: {count} uploads of {MIN_SIZE // KiB} KiB-{MAX_SIZE // MiB} MiB "
            f"(mean {statistics.mean(payloads.sizes) / KiB:.0f} KiB, "
            f"{sum(payloads.sizes) / MiB:.0f} MiB in all), concurrency {CONCURRENCY}, "
            "ImageService on SeaweedFS (boto3, ResilientImageStore) + PostgreSQL",
            uploads.summary(),
            downloads.summary(),
            f"total {uploads.seconds + downloads.seconds:.1f} s; RSS at start "
            f"{rss_start / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB"
            + ("" if peak_reset else " (peak of the whole process: VmHWM could not be reset)"),
            f"lost: {count - len(expected)}; listed {len(listed)}, ready rows "
            f"{sum(r.state is ImageState.READY for r in rows)}, session pages {pages}; "
            f"pool/driver warnings: {len(caplog.records)} logged, {len(caught)} raised",
        ]
    )
    print("\n" + report)
    if os.environ.get(REPORT_ENV):
        await asyncio.to_thread(Path(os.environ[REPORT_ENV]).write_text, report + "\n", "utf-8")

    assert not upload_failures, f"{len(upload_failures)} uploads failed: {upload_failures[:3]}"
    assert not download_failures, (
        f"{len(download_failures)} downloads failed: {download_failures[:3]}"
    )
    assert len(expected) == count
    assert listed == {key: size for key, (_, size) in expected.items()}
    assert len(rows) == count == pages
    for record in rows:
        assert record.state is ImageState.READY
        assert (record.sha256, record.size) == expected[record.key]
    noisy = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith(WATCHED_LOGGERS) or "pool" in r.getMessage().lower()
    ]
    assert not noisy, f"warnings were logged: {noisy[:5]}"
    assert not caught, f"warnings were raised: {[str(w.message) for w in caught[:5]]}"
    for phase in (uploads, downloads):
        assert phase.rss_growth_kib() * KiB < RSS_GROWTH_LIMIT, phase.summary()
