"""Shared helpers for the benchmarks: the S3 server, timing, statistics, markdown."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config

from demeter_storage.testing.seaweedfs import (
    REGION,
    SeaweedFSServer,
    start_seaweedfs,
    weed_binary,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB: Final = 1024
MiB: Final = 1024 * 1024
CONTENDERS: Final = ("raw boto3", "S3ImageStore", "ResilientImageStore")
BASELINE: Final = CONTENDERS[0]
"""Every contender's median is also given as a ratio to this one's."""


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


def number(value: float, digits: int = 0) -> str:
    """``1,234`` or ``1,234.5``: thousands separated."""
    return f"{value:,.{digits}f}"


def spread(summary: Summary, digits: int = 0) -> str:
    """``low-high`` of a summary."""
    return f"{number(summary.low, digits)}-{number(summary.high, digits)}"


def ratio(value: float, baseline: float) -> str:
    """``0.93x``: ``value`` relative to ``baseline``."""
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``) in MiB."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
    return int(match.group(1)) / 1024


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


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def weed_version() -> str:
    """SeaweedFS's version as ``weed version`` prints it."""
    binary = weed_binary()
    if binary is None:
        return "not installed"
    result = subprocess.run(
        [binary, "version"], capture_output=True, text=True, timeout=30, check=False
    )
    first = result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"
    return first.removeprefix("version ").strip()


def machine() -> dict[str, str]:
    """The machine and software the figures were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else cpu
    ram = "unknown"
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.M)
        ram = f"{int(found.group(1)) / MiB:.1f} GiB" if found else ram
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "boto3 / botocore": f"{_version('boto3')} / {_version('botocore')}",
        "demeter-storage": _version("demeter-storage"),
        "SeaweedFS": f"{weed_version()} (`weed mini`, loopback, authentication on)",
    }


def machine_markdown() -> str:
    """:func:`machine` as a markdown table."""
    return markdown_table(["", ""], [[key, value] for key, value in machine().items()])


def now_utc() -> str:
    """The current date and time, UTC, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(path: Path, name: str, markdown: str) -> None:
    """Put ``markdown`` into ``path`` between markers named ``name``.

    An existing section of that name is replaced; otherwise it is appended.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{block}" if text.strip() else block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
