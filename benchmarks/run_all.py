"""Run the benchmarks, save each section's figures as JSON, and render the page.

Run: ``python benchmarks/run_all.py [--quick] [--only SECTION ...] [--rounds N]
[--seed N] [--results DIR] [--output FILE]``. Sections: presign, small, large,
service, local, fastapi_upload. Each writes ``DIR/SECTION.json`` (default
``benchmarks/results``); the run's machine and timings go to ``DIR/run.json``;
then ``render.py`` rewrites the tables of ``FILE`` (default ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from common import BENCH_DIR, REPO_ROOT, MiB, Stopwatch, log
from render import SECTIONS, render

from demeter_storage.testing.seaweedfs import weed_binary


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _stdout(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def machine() -> dict[str, str]:
    """The machine and the software versions the figures were measured with."""
    found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MiB / 1024
    weed = _stdout(weed_binary() or "weed", "version")
    return {
        "commit": _stdout("git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"),
        "CPU": f"{found.group(1) if found else 'unknown'}, {os.cpu_count()} cores",
        "RAM": f"{ram:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "boto3 / botocore": f"{_version('boto3')} / {_version('botocore')}",
        "obstore": _version("obstore"),
        "SQLAlchemy / asyncpg": f"{_version('sqlalchemy')} / {_version('asyncpg')}",
        "SeaweedFS": f"{weed.removeprefix('version ')} (`weed mini`, loopback, auth on)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; not results")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--rounds", type=int, help="rounds of every section")
    parser.add_argument("--seed", type=int, help="seed of the shuffled orders")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    timings: list[tuple[str, float, float, float]] = []
    for name in [section for section in SECTIONS if section in args.only]:
        before = os.getloadavg()[0]
        log(f"== {name}")
        with Stopwatch() as watch:
            result: dict[str, Any] = importlib.import_module(name).run(
                quick=args.quick, rounds=args.rounds, seed=args.seed
            )
        timings.append((name, watch.seconds / 60, before, os.getloadavg()[0]))
        path = args.results / f"{name}.json"
        path.write_text(json.dumps({"section": name, **result}, indent=1) + "\n")
        log(f"== {name} took {watch.seconds / 60:.1f} min; wrote {path}")
    arguments = sys.argv[1:] if argv is None else argv
    run = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "benchmarks/run_all.py", *arguments]),
        "machine": machine(),
        "sections": timings,
    }
    (args.results / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    render(args.output, args.results)
    log(f"rendered {args.output}")


if __name__ == "__main__":
    main()
