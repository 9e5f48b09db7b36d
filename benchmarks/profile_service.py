"""Where ``ImageService.upload_original`` spends its time: stages, and a pyinstrument profile.

Run: ``python benchmarks/profile_service.py [--uploads N] [--concurrency C] [--html FILE]``
(pyinstrument must be installed; PostgreSQL as for ``service_overhead.py``).
It starts SeaweedFS, creates a PostgreSQL database of its own, builds the
service as ``build_service`` does (``ResilientImageStore(S3ImageStore)``,
thumbnails off) and uploads the sample JPEG under fresh keys, ``C`` at once:

1. the bare store's ``put`` and the service, one pass each, for the rates;
2. the service again with each upload's stages timed through the service's
   ``checkpoint`` hook and a timing wrapper around the metadata repository:
   checks, ``metadata.add``, ``store.put``, ``mark_ready``, the response's presign;
3. the service again under pyinstrument (the event loop's thread, wall clock:
   time the loop waits shows as ``select``).

Nothing is timed here for the page: this is a tool for finding costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, NamedTuple

from common import Stopwatch, log, seaweedfs
from service_overhead import (
    DEFAULT_POSTGRES_URL,
    POSTGRES_ENV,
    SAMPLE,
    drop_database,
    postgres_database,
    settings,
)
from sqlalchemy.ext.asyncio import create_async_engine

from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.bootstrap import build_metadata, build_stores
from demeter_storage.ports import MetadataRepository
from demeter_storage.service.image_service import ImageService, ServiceConfig
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.testing.seaweedfs import SeaweedFSServer

SHOW_ALL: Final = os.environ.get("PROFILE_SHOW_ALL") == "1"
STAGES: Final = ("checks", "metadata.add", "store.put", "mark_ready", "presign + response")
_last: contextvars.ContextVar[float] = contextvars.ContextVar("last")
_marks: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("marks")


class TimedMetadata:
    """A metadata repository that records how long each upload's ``add`` took."""

    def __init__(self, inner: MetadataRepository) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def add(self, record: Any) -> None:
        start = time.perf_counter()
        await self._inner.add(record)
        _marks.get()["metadata.add"] = time.perf_counter() - start


async def _checkpoint(name: str) -> None:
    """The service's hook: the seconds since the previous step, in this upload's task."""
    now = time.perf_counter()
    marks, elapsed = _marks.get(), now - _last.get()
    if name == "record_written":
        marks["checks"] = elapsed - marks["metadata.add"]
    elif name == "object_written":
        marks["store.put"] = elapsed
    elif name == "marked_ready":
        marks["mark_ready"] = elapsed
    _last.set(now)


async def _metadata(configured: Any, pool: dict[str, Any] | None) -> MetadataRepository:
    """The repository ``build_service`` builds, or one on an engine with ``pool`` options."""
    if pool is None:
        return await build_metadata(configured)
    engine = create_async_engine(configured.database_url, **pool)
    await create_schema(engine)
    return SqlAlchemyMetadataRepository(engine, owns_engine=True)


async def build(
    server: SeaweedFSServer, database_url: str, engine: str, pool: dict[str, Any] | None
) -> tuple[ImageService, Any]:
    """The service as ``build_service`` builds it (plus the hook), and a bare store."""
    configured = settings(
        server, "profile", database_url=database_url, create_schema=True, s3_engine=engine
    )
    originals, visualizations = build_stores(configured)
    for store in (originals, visualizations):
        await store.ensure_bucket()  # type: ignore[attr-defined]
    metadata = TimedMetadata(await _metadata(configured, pool))
    service = ImageService(
        originals=originals,
        visualizations=visualizations,
        metadata=metadata,  # type: ignore[arg-type]
        config=ServiceConfig(default_expiry_hours=configured.presigned_url_expiry_hours),
        checkpoint=_checkpoint,
    )
    bare, other = build_stores(settings(server, "profile-bare", s3_engine=engine))
    await bare.ensure_bucket()  # type: ignore[attr-defined]
    await other.aclose()
    return service, bare


class Pass(NamedTuple):
    """One pass: uploads per second, and CPU seconds per upload (all threads, the loop's)."""

    rate: float
    cpu: float
    loop_cpu: float


async def _pass(action: Callable[[int], Awaitable[Any]], uploads: int, concurrency: int) -> Pass:
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limit:
            await action(index)

    cpu, loop_cpu = time.process_time(), time.thread_time()
    with Stopwatch() as watch:
        await asyncio.gather(*(one(index) for index in range(uploads)))
    return Pass(
        uploads / watch.seconds,
        (time.process_time() - cpu) / uploads,
        (time.thread_time() - loop_cpu) / uploads,
    )


async def profile(
    server: SeaweedFSServer,
    data: bytes,
    *,
    uploads: int,
    concurrency: int,
    engine: str,
    pool: dict[str, Any] | None,
    html: Path | None,
) -> None:
    """Print the rates, the stage breakdown and the profile."""
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)
    url, note = await postgres_database(admin_url)
    if url is None:
        raise SystemExit(note)
    log(note)
    service, bare = await build(server, url, engine, pool)
    stages: dict[str, list[float]] = defaultdict(list)

    def service_upload(session: str) -> Callable[[int], Awaitable[Any]]:
        async def upload(index: int) -> None:
            _marks.set({})
            _last.set(time.perf_counter())
            request = UploadRequest(f"photo-{index:05d}.jpg", "image/jpeg", size=len(data))
            await service.upload_original(data, session, request)
            marks = _marks.get()
            marks["presign + response"] = time.perf_counter() - _last.get()
            for stage in STAGES:
                stages[stage].append(marks[stage])

        return upload

    async def bare_put(index: int) -> None:
        await bare.put(f"bare/photo-{index:05d}.jpg", data, content_type="image/jpeg")

    try:
        await _pass(service_upload("warm-up"), uploads, concurrency)
        await _pass(bare_put, uploads, concurrency)
        put = await _pass(bare_put, uploads, concurrency)
        stages.clear()
        timed = await _pass(service_upload("timed"), uploads, concurrency)
        print(
            f"bare store put: {put.rate:,.0f}/s; upload_original: {timed.rate:,.0f}/s "
            f"({timed.rate / put.rate:.2f}x), {uploads} uploads, {concurrency} at once\n"
            f"this process's CPU per upload: bare put {put.cpu * 1000:.2f} ms "
            f"(event loop's thread {put.loop_cpu * 1000:.2f} ms), upload_original "
            f"{timed.cpu * 1000:.2f} ms (event loop's thread {timed.loop_cpu * 1000:.2f} ms)\n"
        )
        total = sum(statistics.fmean(values) for values in stages.values())
        print(f"{'stage':<20} {'mean ms':>8} {'median ms':>10} {'share':>6}")
        for stage in STAGES:
            values = stages[stage]
            mean = statistics.fmean(values)
            print(
                f"{stage:<20} {mean * 1000:8.2f} {statistics.median(values) * 1000:10.2f} "
                f"{mean / total:6.0%}"
            )
        from pyinstrument import Profiler  # noqa: PLC0415 - a development tool

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        profiled = (await _pass(service_upload("profiled"), uploads, concurrency)).rate
        profiler.stop()
        print(f"\nprofiled pass: {profiled:,.0f} uploads/s\n")
        print(profiler.output_text(unicode=True, color=False, show_all=SHOW_ALL))
        if html is not None:
            await asyncio.to_thread(html.write_text, profiler.output_html())
            log(f"wrote {html}")
    finally:
        await service.aclose()
        await bare.aclose()
        await drop_database(admin_url, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--uploads", type=int, default=1000, help="uploads per pass (1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="uploads at once (16)")
    parser.add_argument(
        "--engine", choices=["boto3", "obstore"], default="boto3", help="S3_ENGINE (boto3)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        help="experiment: an engine of this pool size (no overflow) instead of the package's",
    )
    parser.add_argument(
        "--no-pre-ping", action="store_true", help="experiment: that engine without pool_pre_ping"
    )
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    args = parser.parse_args()
    pool: dict[str, Any] | None = None
    if args.pool_size is not None or args.no_pre_ping:
        pool = {"pool_pre_ping": not args.no_pre_ping}
        if args.pool_size is not None:
            pool |= {"pool_size": args.pool_size, "max_overflow": 0}
    with (
        tempfile.TemporaryDirectory(prefix="demeter-profile-") as tmp,
        seaweedfs(Path(tmp)) as server,
    ):
        asyncio.run(
            profile(
                server,
                SAMPLE.read_bytes(),
                uploads=args.uploads,
                concurrency=args.concurrency,
                engine=args.engine,
                pool=pool,
                html=args.html,
            )
        )


if __name__ == "__main__":
    main()
