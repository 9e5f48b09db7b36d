"""Uploads through the FastAPI router against the service called directly.

Same sizes, same concurrency, same local store: the router path is a real
HTTP upload (uvicorn on loopback, an httpx client streaming a multipart form
generated chunk by chunk); the direct path hands the service the same bytes
as an async iterable. Goals: the router's throughput is at least 0.8x the
direct one's, and a 200 MiB upload through it raises the peak RSS of a fresh
process (server and client) by at most 64 MiB
(``tests/fastapi/upload_memory_worker.py``).

``python benchmarks/run_all.py --only fastapi_upload`` measures it with the
other sections; ``python benchmarks/fastapi_upload.py [--quick] [--rounds N]
[--seed N] [--output FILE]`` writes ``benchmarks/results/fastapi_upload.json``
alone (without rendering the page).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import Summary, log, paired, row, shuffled, target  # noqa: E402

from demeter_storage import StorageSettings, UploadRequest, build_service  # noqa: E402
from tests.fastapi.upload_memory_worker import BOUNDARY, form, serve  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "fastapi_upload.json"
MIB = 1024 * 1024
SIZES_MIB = (1, 16, 64)
CONCURRENCY = (1, 4)
THROUGHPUT_GOAL = 0.8
RSS_GOAL_MIB = 64
RSS_SIZE_MIB = 200
DIRECT = "`ImageService.upload_original` directly"
ROUTER = "`images_router` (uvicorn on loopback, multipart, httpx client)"


def _file_chunks(size: int) -> Iterator[bytes]:
    """The file part's bytes of :func:`form`, without the multipart framing."""
    parts = list(form("x.jpg", 0))
    for chunk in form("x.jpg", size):
        if chunk not in (parts[0], parts[-1]):
            yield chunk


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _direct(root: Path, size: int, concurrency: int, tag: str) -> float:
    settings = StorageSettings(backend="local", storage_root=root, thumbnails=False)
    service = await build_service(settings)
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *[
                service.upload_original(
                    _aiter(_file_chunks(size)),
                    "bench",
                    UploadRequest(f"{tag}-{index}.jpg", "image/jpeg"),
                )
                for index in range(concurrency)
            ]
        )
        return time.perf_counter() - started
    finally:
        await service.aclose()


async def _through_router(url: str, size: int, concurrency: int, tag: str) -> float:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}

    async def one(client: httpx.AsyncClient, index: int) -> None:
        name = f"{tag}-{index}.jpg"
        length = sum(len(piece) for piece in form(name, 0)) + size
        answer = await client.post(  # with its length, as phones send files (not chunked)
            "/sessions/bench/originals",
            content=_aiter(form(name, size)),
            headers=headers | {"content-length": str(length)},
        )
        assert answer.status_code == 201, answer.text

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*[one(client, index) for index in range(concurrency)])
        return time.perf_counter() - started


def _rss(root: Path) -> dict[str, float]:
    worker = REPO / "tests" / "fastapi" / "upload_memory_worker.py"
    done = subprocess.run(
        [sys.executable, str(worker), str(RSS_SIZE_MIB), str(root)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        env={"PYTHONPATH": str(REPO / "src")} | dict(os.environ),
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure under ``$TMPDIR``; the section's result (MiB/s per size and concurrency)."""
    sizes = (1, 4) if quick else SIZES_MIB
    rounds = rounds or (1 if quick else 3)
    shuffler = random.Random(seed)
    rates: dict[tuple[int, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fastapi-") as scratch:
        server, url = serve(Path(scratch) / "router")
        timed = {
            DIRECT: lambda size, c, tag: _direct(Path(scratch) / "direct", size, c, tag),
            ROUTER: lambda size, c, tag: _through_router(url, size, c, tag),
        }
        try:
            # Warm both paths (imports, the first connection, SQLite's first writes).
            for upload in timed.values():
                asyncio.run(upload(MIB, 1, "warm"))
            for round_ in range(1, rounds + 1):
                for size_mib in sizes:
                    for c in CONCURRENCY:
                        tag = f"{round_}-{size_mib}-{c}"
                        for name in shuffled(list(timed), shuffler):
                            seconds = asyncio.run(timed[name](size_mib * MIB, c, tag))
                            rate = size_mib * c / seconds
                            rates.setdefault((size_mib, c, name), []).append(rate)
                            log(f"fastapi {round_}/{rounds} {size_mib} MiB x{c} {name} {rate:.1f}")
        finally:
            server.should_exit = True
        rss = _rss(Path(scratch) / "rss")
    rows = [
        row(name, rates[(size, c, name)], case=f"{size} MiB x{c}", versus=versus)
        for size in sizes
        for c in CONCURRENCY
        for versus in [{"direct": rates[(size, c, DIRECT)]}]
        for name in (DIRECT, ROUTER)
    ]
    ratios = {
        (size, c): paired(rates[(size, c, ROUTER)], rates[(size, c, DIRECT)])
        for size, c, name in rates
        if name == ROUTER
    }
    (size, c), worst = min(ratios.items(), key=lambda item: item[1].median)
    growth = Summary.of([rss["growth_mib"]])
    return {
        "title": "Uploads through the FastAPI router",
        "unit": "MiB/s",
        "parameters": {
            "rounds": rounds,
            "store": "local, thumbnails off",
            f"{RSS_SIZE_MIB} MiB upload through the router": f"{rss['mib_per_s']:.0f} MiB/s",
            "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "rows": rows,
        "targets": [
            target(
                f"router vs service directly, slowest case ({size} MiB x{c})",
                ">=",
                THROUGHPUT_GOAL,
                "x",
                worst,
            ),
            {
                **target(
                    f"peak RSS growth, {RSS_SIZE_MIB} MiB upload through the router",
                    "<=",
                    RSS_GOAL_MIB,
                    "MiB",
                    growth,
                ),
                "basis": "one fresh process, server and client",
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    result = run(quick=options.quick, rounds=options.rounds, seed=options.seed)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"section": "fastapi_upload", **result}, indent=1) + "\n"
    options.output.write_text(text, encoding="utf-8")
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    main()
