"""The machine and software a benchmark run measured on, for the page's "Machine" table."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from common import MiB, markdown_table

from demeter_storage.testing.seaweedfs import weed_binary


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


def machine(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The machine and software the figures were measured on (plus ``extra`` rows)."""
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
        "obstore": _version("obstore"),
        "SQLAlchemy / aiosqlite / asyncpg": (
            f"{_version('sqlalchemy')} / {_version('aiosqlite')} / {_version('asyncpg')}"
        ),
        "demeter-storage": _version("demeter-storage"),
        "SeaweedFS": f"{weed_version()} (`weed mini`, loopback, authentication on)",
        **(extra or {}),
    }


def machine_markdown(extra: Mapping[str, str] | None = None) -> str:
    """:func:`machine` as a markdown table."""
    return markdown_table(["", ""], [[key, value] for key, value in machine(extra).items()])


def now_utc() -> str:
    """The current date and time, UTC, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
