"""Shared helpers for the benchmarks: the S3 server, timing, statistics, markdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config

from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import (
    REGION,
    SeaweedFSServer,
    start_seaweedfs,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB: Final = 1024
MiB: Final = 1024 * 1024
BASELINE: Final = "raw boto3"
"""Every S3 contender's median is also given as a ratio to this one's."""
RAW_FROM_ASYNCIO: Final = "raw boto3 from asyncio (`run_in_executor`)"
"""A reference: raw boto3 as an asyncio caller must call it, each call hopping to a thread."""
S3_STORE: Final = "S3ImageStore"
RESILIENT: Final = "ResilientImageStore(S3ImageStore)"
STORES: Final = (S3_STORE, RESILIENT)
"""The package's own boto3 stores, always measured."""
OBSTORE_ADAPTER: Final = "ObstoreImageStore"
RESILIENT_OBSTORE: Final = "ResilientImageStore(ObstoreImageStore)"
OBSTORE_STORES: Final = (OBSTORE_ADAPTER, RESILIENT_OBSTORE)
"""The package's obstore stores, measured when the obstore engine imports."""
RAW_OBSTORE: Final = "raw obstore"
S3FS: Final = "s3fs"
BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
CHILD: Final = BENCH_DIR / "transfer_child.py"
SECRET_ENV: Final = "DEMETER_BENCH_SECRET_KEY"
"""The secret key goes to child processes in this variable, never on a command line."""


# Results: every benchmark returns a Section; the page gathers their targets.


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, as measured (``met`` is None when not measured)."""

    name: str
    goal: str
    measured: str
    met: bool | None
    limit: str | None = None
    """For a missed target: what limits it, from the same run's figures."""


@dataclass
class Section:
    """A benchmark's markdown section and the targets it measured."""

    name: str
    markdown: str
    targets: list[Target] = field(default_factory=list)


def option(args: argparse.Namespace, prefix: str, name: str, normal: Any, quick: Any) -> Any:
    """An option's value: as given, else its ``--quick`` default, else its normal default."""
    value = getattr(args, prefix.replace("-", "_") + name, None)
    if value is not None:
        return value
    return quick if getattr(args, "quick", False) else normal


# Optional contenders


def obstore_installed() -> bool:
    """Whether the obstore package can be imported."""
    return importlib.util.find_spec("obstore") is not None


def obstore_adapter() -> tuple[type[ImageStore] | None, str]:
    """The package's ``ObstoreImageStore`` if it exists, and a note on it either way."""
    try:
        module = importlib.import_module("demeter_storage.adapters.s3.obstore.store")
    except Exception as exc:  # absent, or obstore missing, or the module is half-written
        return None, (
            f"`{OBSTORE_ADAPTER}` is absent: `import demeter_storage.adapters.s3.obstore.store` "
            f"failed ({type(exc).__name__}: {exc})"
        )
    adapter = getattr(module, OBSTORE_ADAPTER, None)
    if not isinstance(adapter, type):
        return None, f"`demeter_storage.adapters.s3.obstore.store` has no `{OBSTORE_ADAPTER}` class"
    return adapter, f"`{OBSTORE_ADAPTER}` is present (`demeter_storage.adapters.s3.obstore.store`)"


def build_obstore_adapter(adapter: type[ImageStore], bucket: str, config: S3Config) -> ImageStore:
    """An ``ObstoreImageStore``, built like ``S3ImageStore``: ``(bucket, config=...)``."""
    factory: Any = adapter
    store: ImageStore = factory(bucket, config=config)
    return store


def build_store(
    contender: str, bucket: str, config: S3Config, obstore: type[ImageStore] | None = None
) -> ImageStore:
    """One of the package's stores by contender name (:data:`STORES`, :data:`OBSTORE_STORES`)."""
    if contender in OBSTORE_STORES:
        if obstore is None:
            raise ValueError(f"{contender} needs the ObstoreImageStore class")
        inner = build_obstore_adapter(obstore, bucket, config)
    else:
        inner = S3ImageStore(bucket, config=config)
    return ResilientImageStore(inner) if contender.startswith("ResilientImageStore(") else inner


def usable_obstore_adapter(server: SeaweedFSServer) -> tuple[type[ImageStore] | None, str]:
    """:func:`obstore_adapter`, checked by building one for ``server`` (and closing it)."""
    adapter, note = obstore_adapter()
    if adapter is None:
        return None, note
    try:
        store = build_obstore_adapter(adapter, "bench-probe", server.s3_config())
        # On a thread of its own: the caller may be inside a running loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, store.aclose()).result()
    except Exception as exc:
        return None, (
            f"`{OBSTORE_ADAPTER}` is present but could not be built as "
            f"`ObstoreImageStore(bucket, config=S3Config(...))`: {type(exc).__name__}: {exc}"
        )
    return adapter, note


def raw_obstore(server: SeaweedFSServer, bucket: str) -> Any:
    """An ``obstore.store.S3Store`` for ``bucket`` on ``server`` (plain HTTP, path style)."""
    from obstore.store import S3Store  # noqa: PLC0415 - optional

    return S3Store(
        bucket,
        endpoint=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key.reveal(),
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "900s"},
    )


def run_child(
    spec: Mapping[str, Any], secret: str, *, python: str | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run :data:`CHILD` with ``spec`` in a fresh process; return the JSON it printed."""
    completed = subprocess.run(
        [python or sys.executable, str(CHILD), json.dumps(dict(spec))],
        capture_output=True,
        text=True,
        env={**os.environ, SECRET_ENV: secret},
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{spec.get('contender')} {spec.get('direction')} failed "
            f"({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# The server


@contextlib.contextmanager
def seaweedfs(work_dir: Path | None = None) -> Iterator[SeaweedFSServer]:
    """Run a fresh SeaweedFS server (data in a temp dir) for the ``with`` block."""
    root = Path(tempfile.mkdtemp(prefix="demeter-bench-", dir=work_dir))
    server: SeaweedFSServer | None = None
    try:
        server = start_seaweedfs(root / "seaweedfs")
        log(f"SeaweedFS up at {server.endpoint_url} (pid {server.process and server.process.pid})")
        yield server
    finally:
        if server is not None:
            with Stopwatch() as watch:
                server.stop()
            log(f"SeaweedFS stopped ({watch.seconds:.1f} s)")
        shutil.rmtree(root, ignore_errors=True)


def raw_client(endpoint_url: str, access_key: str, secret_key: str, pool: int = 10) -> S3Client:
    """A plain boto3 client: ``pool`` connections, one attempt, path addressing."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            max_pool_connections=pool,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )


def server_client(server: SeaweedFSServer, pool: int = 10) -> S3Client:
    """:func:`raw_client` for ``server``'s read-write identity."""
    return raw_client(server.endpoint_url, server.access_key, server.secret_key.reveal(), pool)


def create_buckets(server: SeaweedFSServer, buckets: Sequence[str]) -> None:
    """Create each bucket (already existing ones are fine)."""
    client = server_client(server)
    try:
        for bucket in buckets:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)
    finally:
        client.close()


# Timing and statistics


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds`` (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@dataclass(frozen=True)
class Summary:
    """Median, minimum and maximum of one measurement over rounds."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))


def paired_ratios(values: Sequence[float], baselines: Sequence[float]) -> Summary:
    """Each round's ratio of ``values`` to ``baselines`` (measured in that same round).

    Rounds interleave the contenders, so a round's two figures share the
    machine's state: their ratio leaves out the drift between rounds that a
    ratio of two medians keeps.
    """
    if len(values) != len(baselines):
        raise ValueError(f"{len(values)} rounds against {len(baselines)}: cannot pair them")
    return Summary.of([value / baseline for value, baseline in zip(values, baselines, strict=True)])


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def number(value: float, digits: int = 0) -> str:
    """``1,234`` or ``1,234.5``: thousands separated."""
    return f"{value:,.{digits}f}"


def spread(summary: Summary, digits: int = 0) -> str:
    """``low-high`` of a summary."""
    return f"{number(summary.low, digits)}-{number(summary.high, digits)}"


def ratio(value: float, baseline: float) -> str:
    """``0.93x``: ``value`` relative to ``baseline``."""
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def log(message: str) -> None:
    """Progress on stderr (stdout is for results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Markdown


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> str:
    """A markdown table; the last ``right`` columns are right-aligned (numbers)."""
    aligns = ["---"] * (len(headers) - right) + ["---:"] * right
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def standalone(module: ModuleType, *, s3fs: bool = False) -> None:
    """Run one benchmark module from the command line: print (and save) its section."""
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").splitlines()[0])
    module.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, small sizes")
    if s3fs:
        parser.add_argument("--skip-s3fs", action="store_true", help="leave s3fs out")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument("--output", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    section: Section = module.run(**module.options(args))
    if args.output:
        write_section(args.output, section.name, section.markdown)
        log(f"wrote {args.output}")
    print(section.markdown)


def section_markers(name: str) -> tuple[str, str]:
    """The HTML comments around section ``name`` of a page (invisible once rendered)."""
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def marked_section(name: str, markdown: str) -> str:
    """``markdown`` between its section's markers, so that a later run can replace it."""
    start, end = section_markers(name)
    return f"{start}\n\n{markdown.strip()}\n\n{end}\n"


def write_section(path: Path, name: str, markdown: str) -> None:
    """Put ``markdown`` into ``path`` between markers named ``name``.

    An existing section of that name is replaced; otherwise it is appended.
    """
    start, end = section_markers(name)
    block = marked_section(name, markdown)
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{block}" if text.strip() else block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
