"""Small objects up and down: raw boto3 against S3ImageStore and ResilientImageStore.

Run: ``python benchmarks/s3_throughput.py [--rounds N] [--objects N] [--output FILE]``.
All contenders talk to one SeaweedFS server; each writes to its own bucket and
reads back what it wrote. In each round every contender runs every case once,
in a shuffled order, so drifts of the machine touch all of them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from common import (
    BASELINE,
    CONTENDERS,
    KiB,
    Stopwatch,
    Summary,
    create_buckets,
    log,
    markdown_table,
    number,
    ratio,
    seaweedfs,
    server_client,
    spread,
    write_section,
)

from demeter_storage.adapters.resilience import ResilientImageStore
from demeter_storage.adapters.s3 import S3ImageStore
from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import SeaweedFSServer

SECTION: Final = "s3-throughput"
BUCKETS: Final = dict(
    zip(CONTENDERS, ("bench-boto3", "bench-store", "bench-resilient"), strict=True)
)
CONTENT_TYPE: Final = "application/octet-stream"

Case = tuple[str, int]
"""(direction, concurrency): ``("up", 16)``."""


def object_keys(count: int) -> list[str]:
    """``bench/obj-0000.bin``, ``bench/obj-0001.bin``, ..."""
    return [f"bench/obj-{index:04d}.bin" for index in range(count)]


def _boto3_pass(
    server: SeaweedFSServer, bucket: str, keys: Sequence[str], payload: bytes, case: Case
) -> float:
    """Seconds for one pass of raw boto3: ``concurrency`` threads sharing one client."""
    direction, concurrency = case
    client = server_client(server, pool=concurrency)

    def up(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=payload)

    def down(key: str) -> None:
        if client.get_object(Bucket=bucket, Key=key)["Body"].read() != payload:
            raise AssertionError(f"raw boto3 read back wrong bytes for {key}")

    try:
        with ThreadPoolExecutor(concurrency) as pool, Stopwatch() as watch:
            list(pool.map(up if direction == "up" else down, keys))
    finally:
        client.close()
    return watch.seconds


def _build_store(server: SeaweedFSServer, contender: str, concurrency: int) -> ImageStore:
    store = S3ImageStore(BUCKETS[contender], config=server.s3_config(max_concurrency=concurrency))
    return ResilientImageStore(store) if contender == "ResilientImageStore" else store


async def _store_pass(
    server: SeaweedFSServer, contender: str, keys: Sequence[str], payload: bytes, case: Case
) -> float:
    """Seconds for one pass of an async store: ``gather`` bounded by a semaphore."""
    direction, concurrency = case
    store = _build_store(server, contender, concurrency)
    limit = asyncio.Semaphore(concurrency)

    async def up(key: str) -> None:
        async with limit:
            await store.put(key, payload, content_type=CONTENT_TYPE)

    async def down(key: str) -> None:
        async with limit:
            if await store.get(key) != payload:
                raise AssertionError(f"{contender} read back wrong bytes for {key}")

    action: Callable[[str], Awaitable[None]] = up if direction == "up" else down
    try:
        with Stopwatch() as watch:
            await asyncio.gather(*(action(key) for key in keys))
    finally:
        await store.aclose()
    return watch.seconds


async def one_pass(
    server: SeaweedFSServer, contender: str, keys: Sequence[str], payload: bytes, case: Case
) -> float:
    """Seconds for ``contender`` to move every key once in ``case``."""
    if contender == BASELINE:
        # Blocking on purpose: nothing else runs on the loop meanwhile.
        return _boto3_pass(server, BUCKETS[contender], keys, payload, case)
    return await _store_pass(server, contender, keys, payload, case)


async def measure(
    server: SeaweedFSServer,
    *,
    rounds: int,
    objects: int,
    size: int,
    concurrencies: Sequence[int],
    seed: int | None = None,
) -> dict[tuple[Case, str], list[float]]:
    """Objects per second of every contender in every case, one value per round."""
    keys = object_keys(objects)
    payload = os.urandom(size)
    shuffler = random.Random(seed)
    cases: list[Case] = [(d, c) for c in concurrencies for d in ("up", "down")]
    create_buckets(server, list(BUCKETS.values()))
    log(f"warm-up: every contender uploads its {objects} objects once")
    for contender in CONTENDERS:
        await one_pass(server, contender, keys, payload, ("up", max(concurrencies)))
    rates: dict[tuple[Case, str], list[float]] = {}
    for round_number in range(1, rounds + 1):
        for case in cases:
            order = list(CONTENDERS)
            shuffler.shuffle(order)
            for contender in order:
                seconds = await one_pass(server, contender, keys, payload, case)
                rates.setdefault((case, contender), []).append(objects / seconds)
                log(
                    f"round {round_number}/{rounds} {case[0]:>4} x{case[1]:<3} "
                    f"{contender:<20} {objects / seconds:9.1f} objects/s"
                )
    return rates


def report(
    rates: dict[tuple[Case, str], list[float]], *, rounds: int, objects: int, size: int
) -> str:
    """The markdown section: one row per case and contender."""
    rows: list[list[str]] = []
    cases = list(dict.fromkeys(case for case, _ in rates))
    for case in cases:
        baseline = Summary.of(rates[(case, BASELINE)]).median
        for contender in CONTENDERS:
            summary = Summary.of(rates[(case, contender)])
            rows.append(
                [
                    case[0],
                    str(case[1]),
                    contender,
                    number(summary.median),
                    spread(summary),
                    number(summary.median * size / KiB / KiB, 1),
                    ratio(summary.median, baseline),
                ]
            )
    headers = [
        "direction",
        "concurrency",
        "contender",
        "objects/s (median)",
        "min-max",
        "MiB/s",
        "vs raw boto3",
    ]
    table = markdown_table(headers, rows, right=4)
    return (
        f"## Small objects: {objects:,} x {size // KiB} KiB up and down\n\n"
        f"{table}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds. Raw boto3: "
        "`put_object` / `get_object()['Body'].read()` from a `ThreadPoolExecutor(c)` "
        "sharing one client with `max_pool_connections=c`. The stores: "
        "`S3Config(max_concurrency=c)` and `asyncio.gather` bounded by `Semaphore(c)`. "
        "Every download is compared with the bytes uploaded.\n"
    )


def run(
    *,
    rounds: int,
    objects: int,
    size_kib: int,
    concurrencies: Sequence[int],
    seed: int | None = None,
    server: SeaweedFSServer | None = None,
) -> str:
    """Measure (on ``server``, or a fresh one) and return the markdown section."""
    size = size_kib * KiB

    async def main(target: SeaweedFSServer) -> dict[tuple[Case, str], list[float]]:
        return await measure(
            target,
            rounds=rounds,
            objects=objects,
            size=size,
            concurrencies=concurrencies,
            seed=seed,
        )

    if server is not None:
        rates = asyncio.run(main(server))
    else:
        with seaweedfs() as fresh:
            rates = asyncio.run(main(fresh))
    return report(rates, rounds=rounds, objects=objects, size=size)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(f"--{prefix}objects", type=int, default=1000, help="objects per pass")
    parser.add_argument(f"--{prefix}size-kib", type=int, default=256, help="object size in KiB")
    parser.add_argument(
        f"--{prefix}concurrency", type=int, nargs="+", default=[1, 16], help="levels (1 16)"
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    key = prefix.replace("-", "_")
    return {
        "rounds": getattr(args, f"{key}rounds"),
        "objects": getattr(args, f"{key}objects"),
        "size_kib": getattr(args, f"{key}size_kib"),
        "concurrencies": getattr(args, f"{key}concurrency"),
        "seed": args.seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument("--output", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    section = run(**options(args))
    if args.output:
        write_section(args.output, SECTION, section)
        log(f"wrote {args.output}")
    print(section)


if __name__ == "__main__":
    main()
