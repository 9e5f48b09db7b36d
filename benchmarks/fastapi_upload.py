"""Uploads through the FastAPI router against the service called directly.

Same sizes, same concurrency, same local store: the router path is a real
HTTP upload (uvicorn on loopback, an httpx client streaming a multipart form
generated chunk by chunk); the direct path hands the service the same bytes
as an async iterable. Goals: the router's throughput is at least 0.8x the
direct one's, and a 200 MiB upload through it raises the peak RSS of a fresh
process (server and client) by at most 64 MiB
(``tests/fastapi/upload_memory_worker.py``).

``python benchmarks/fastapi_upload.py [--quick] [--rounds N] [--output FILE]``
writes ``benchmarks/results/fastapi_upload.json``; :func:`run` returns the
same dict for ``run_all.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demeter_storage import StorageSettings, UploadRequest, build_service  # noqa: E402
from tests.fastapi.upload_memory_worker import BOUNDARY, form, serve  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "fastapi_upload.json"
MIB = 1024 * 1024
SIZES_MIB = (1, 16, 64)
CONCURRENCY = (1, 4)
THROUGHPUT_GOAL = 0.8
RSS_GOAL_MIB = 64
RSS_SIZE_MIB = 200


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
        env={"PYTHONPATH": str(REPO / "src")} | dict(__import__("os").environ),
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run(quick: bool = False, rounds: int = 3) -> dict[str, Any]:
    """Measure; return the figures (MiB/s medians per size and concurrency, ratios, RSS)."""
    sizes = (1, 4) if quick else SIZES_MIB
    rounds = 1 if quick else rounds
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fastapi-") as scratch:
        server, url = serve(Path(scratch) / "router")
        try:
            # Warm both paths (imports, the first connection, SQLite's first writes).
            asyncio.run(_direct(Path(scratch) / "direct", MIB, 1, "warm"))
            asyncio.run(_through_router(url, MIB, 1, "warm"))
            for size_mib in sizes:
                for concurrency in CONCURRENCY:
                    direct, router, ratios = [], [], []
                    for round_ in range(rounds):
                        tag = f"{size_mib}-{concurrency}-{round_}"
                        volume = size_mib * concurrency
                        direct_s = asyncio.run(
                            _direct(Path(scratch) / "direct", size_mib * MIB, concurrency, tag)
                        )
                        router_s = asyncio.run(
                            _through_router(url, size_mib * MIB, concurrency, tag)
                        )
                        direct.append(volume / direct_s)
                        router.append(volume / router_s)
                        ratios.append(direct_s / router_s)
                    rows.append(
                        {
                            "size_mib": size_mib,
                            "concurrency": concurrency,
                            "direct_mib_s": statistics.median(direct),
                            "router_mib_s": statistics.median(router),
                            "ratio": statistics.median(ratios),
                            "ratio_min": min(ratios),
                            "ratio_max": max(ratios),
                        }
                    )
                    print(rows[-1], flush=True)
        finally:
            server.should_exit = True
        rss = _rss(Path(scratch) / "rss")
    worst = min(row["ratio"] for row in rows)
    return {
        "what": "upload through images_router (uvicorn, multipart) vs ImageService directly, "
        "local store, thumbnails off",
        "rounds": rounds,
        "rows": rows,
        "throughput_goal": THROUGHPUT_GOAL,
        "worst_ratio": worst,
        "throughput_met": worst >= THROUGHPUT_GOAL,
        "rss": rss,
        "rss_goal_mib": RSS_GOAL_MIB,
        "rss_met": rss["growth_mib"] <= RSS_GOAL_MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    figures = run(quick=options.quick, rounds=options.rounds)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in figures.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
