"""What the benchmarks share: the S3 server, clients, stores, timing, statistics, JSON results."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config

from demeter_storage import ImageStore, StorageSettings, build_stores
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer, start_seaweedfs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB: Final = 1024 * 1024
BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent

Action = Callable[[str], Awaitable[Any]]


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def seaweedfs() -> Iterator[SeaweedFSServer]:
    """A fresh SeaweedFS server (data in a temporary directory) for the ``with`` block."""
    root = Path(tempfile.mkdtemp(prefix="demeter-bench-"))
    server = start_seaweedfs(root / "seaweedfs")
    log(f"SeaweedFS up at {server.endpoint_url}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def server_client(server: SeaweedFSServer, pool: int = 10) -> S3Client:
    """A plain boto3 client for ``server``: ``pool`` connections, one attempt, path style."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key.reveal(),
        config=Config(
            max_pool_connections=pool,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


def create_buckets(server: SeaweedFSServer, buckets: Sequence[str]) -> None:
    """Create each bucket (existing ones are fine)."""
    client = server_client(server)
    try:
        for bucket in buckets:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)
    finally:
        client.close()


def raw_obstore(server: SeaweedFSServer, bucket: str) -> Any:
    """An ``obstore.store.S3Store`` for ``bucket`` on ``server`` (plain HTTP, path style)."""
    from obstore.store import S3Store  # noqa: PLC0415 - the optional `fast` extra

    return S3Store(
        bucket,
        endpoint=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key.reveal(),
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "900s"},
    )


def settings(server: SeaweedFSServer, bucket: str, **overrides: Any) -> StorageSettings:
    """Settings of an S3 stack on ``server`` whose originals go to ``bucket``."""
    values: dict[str, Any] = {
        "backend": "s3",
        "s3_endpoint_url": server.endpoint_url,
        "aws_region": REGION,
        "s3_addressing_style": "path",
        "aws_access_key_id": server.access_key,
        "aws_secret_access_key": server.secret_key,
        "bucket_original": bucket,
        "bucket_visualization": f"{bucket}-viz",
        "thumbnails": False,
        **overrides,
    }
    return StorageSettings(**values)


async def built_store(
    server: SeaweedFSServer, bucket: str, *, engine: str, concurrency: int = 16
) -> ImageStore:
    """The originals' store as the composition root builds it for ``S3_ENGINE=engine``."""
    originals, visualizations = build_stores(
        settings(server, bucket, s3_engine=engine, s3_max_concurrency=concurrency)
    )
    await visualizations.aclose()
    return originals


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds``."""

    seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.seconds = -time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter()


@dataclass(frozen=True)
class Summary:
    """Median, minimum and maximum of one figure over rounds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values))


def paired(values: Sequence[float], baselines: Sequence[float]) -> Summary:
    """Each round's ``value / baseline``, summarised.

    Rounds interleave the contenders, so one round's two figures share the
    machine's state: their ratio leaves out the drift between rounds.
    """
    return Summary.of([value / base for value, base in zip(values, baselines, strict=True)])


async def bounded(keys: Sequence[str], concurrency: int, action: Action) -> float:
    """Seconds to run ``action`` on every key, at most ``concurrency`` at once."""
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limit:
            await action(key)

    with Stopwatch() as watch:
        await asyncio.gather(*(one(key) for key in keys))
    return watch.seconds


def shuffled(names: Sequence[str], shuffler: random.Random) -> list[str]:
    """``names`` in a fresh random order (each round runs the contenders so)."""
    return shuffler.sample(list(names), len(names))


def row(
    contender: str,
    values: Sequence[float],
    *,
    case: str = "",
    versus: Mapping[str, Sequence[float]] | None = None,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One table row: the median and spread of ``values``, and its ratio to each baseline."""
    summary = Summary.of(values)
    return {
        "case": case,
        "contender": contender,
        "median": summary.median,
        "low": summary.low,
        "high": summary.high,
        "ratios": {
            name: summary.median / Summary.of(base).median for name, base in (versus or {}).items()
        },
        "extra": extra or {},
    }


def target(name: str, op: str, goal: float, unit: str, figure: Summary | None) -> dict[str, Any]:
    """One target: what was measured (None when it could not be) against ``op goal``.

    A ratio (unit ``x``) is the median of per-round ratios (see :func:`paired`).
    """
    measured = {"value": figure.median, "low": figure.low, "high": figure.high} if figure else {}
    return {
        "name": name,
        "op": op,
        "goal": goal,
        "unit": unit,
        "value": None,
        **measured,
        "basis": "median of per-round ratios" if unit == "x" else "median of rounds",
    }
