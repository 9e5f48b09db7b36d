"""Small objects up and down: raw boto3 and raw obstore against the package's S3 stores.

Every contender writes to its own bucket and reads back what it wrote (each
read compared with the bytes uploaded). A pass moves every key once, up or
down, at one concurrency; it builds a fresh client or store outside the timed
part and closes it afterwards. In each round every contender runs every case
once, in a shuffled order. At concurrency 1 a pass takes seconds, so a round
moves the keys in slices, the contenders taking turns slice by slice, and a
contender's figure is all its keys over the sum of its slices' times: two
contenders compared in one round then ran within seconds of each other.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import common
from common import MiB

from demeter_storage import ImageStore, ResilientImageStore, S3ImageStore
from demeter_storage.testing.seaweedfs import SeaweedFSServer

RAW: Final = "raw boto3"
FROM_ASYNCIO: Final = "raw boto3 from asyncio (`run_in_executor`)"
RESILIENT: Final = "`ResilientImageStore(S3ImageStore)`"
RAW_OBSTORE: Final = "raw obstore"
OBSTORE: Final = "`ObstoreImageStore` as `S3_ENGINE=obstore` builds it"
NAMES: Final = (RAW, FROM_ASYNCIO, RESILIENT, RAW_OBSTORE, OBSTORE)
BUCKETS: Final = {name: f"bench-small-{index}" for index, name in enumerate(NAMES)}
CONCURRENCY: Final = (1, 16)
SLICES: Final = 4
"""Turns per round at concurrency 1 (a start's fixed cost would count four times at 16)."""
TARGETS: Final = [
    (RESILIENT, RAW, "up", 16, 0.95),
    (RESILIENT, RAW, "down", 16, 0.95),
    (RESILIENT, RAW, "up", 1, 0.90),
    (RESILIENT, RAW, "down", 1, 0.90),
    (OBSTORE, RAW_OBSTORE, "up", 16, 0.90),
    (OBSTORE, RAW_OBSTORE, "down", 16, 0.90),
]
"""(contender, baseline, direction, concurrency, goal): the issue's ratio targets."""


def checked(name: str, payload: bytes, data: Any) -> None:
    """Raise unless a download returned ``payload``."""
    if data != payload:
        raise AssertionError(f"{name} read back wrong bytes")


async def boto3_pass(
    server: SeaweedFSServer, name: str, payload: bytes, up: bool, c: int, keys: Sequence[str]
) -> float:
    """Raw boto3 on ``c`` threads sharing one client; or awaited through ``run_in_executor``."""
    client, bucket = common.server_client(server, pool=c), BUCKETS[name]

    def call(key: str) -> None:
        if up:
            client.put_object(Bucket=bucket, Key=key, Body=payload)
        else:
            checked(name, payload, client.get_object(Bucket=bucket, Key=key)["Body"].read())

    try:
        with ThreadPoolExecutor(c) as pool:
            if name == RAW:  # blocks the loop on purpose: nothing else runs on it
                with common.Stopwatch() as watch:
                    list(pool.map(call, keys))
                return watch.seconds
            loop = asyncio.get_running_loop()
            return await common.bounded(keys, c, lambda key: loop.run_in_executor(pool, call, key))
    finally:
        client.close()


async def one_pass(
    server: SeaweedFSServer, name: str, payload: bytes, case: tuple[str, int], keys: Sequence[str]
) -> float:
    """Seconds for ``name`` to move ``keys`` once in ``case`` (direction, concurrency)."""
    up, c = case[0] == "up", case[1]
    if name in (RAW, FROM_ASYNCIO):
        return await boto3_pass(server, name, payload, up, c, keys)
    store: ImageStore | None = None
    if name == RAW_OBSTORE:
        import obstore  # noqa: PLC0415 - the optional `fast` extra

        raw = common.raw_obstore(server, BUCKETS[name])

        async def put(key: str) -> Any:
            return await obstore.put_async(raw, key, payload)

        async def get(key: str) -> Any:
            return await (await obstore.get_async(raw, key)).bytes_async()

    else:
        config = server.s3_config(max_concurrency=c)
        store = (
            ResilientImageStore(S3ImageStore(BUCKETS[name], config=config))
            if name == RESILIENT
            else await common.built_store(server, BUCKETS[name], engine="obstore", concurrency=c)
        )

        async def put(key: str) -> Any:
            return await store.put(key, payload, content_type="application/octet-stream")

        async def get(key: str) -> Any:
            return await store.get(key)

    async def down(key: str) -> None:
        checked(name, payload, await get(key))

    try:
        return await common.bounded(keys, c, put if up else down)
    finally:
        if store is not None:
            await store.aclose()


async def measure(
    server: SeaweedFSServer, objects: int, size: int, rounds: int, seed: int | None
) -> dict[tuple[str, int, str], list[float]]:
    """Objects per second by (direction, concurrency, contender), one figure per round."""
    payload = os.urandom(size)
    keys = [f"bench/obj-{index:04d}.bin" for index in range(objects)]
    common.create_buckets(server, list(BUCKETS.values()))
    common.log(f"warm-up: every contender uploads its {objects} objects once")
    for name in BUCKETS:
        await one_pass(server, name, payload, ("up", 16), keys)
    shuffler = random.Random(seed)
    sliced = [keys[start::SLICES] for start in range(SLICES)] if objects >= 400 else [keys]
    rates: dict[tuple[str, int, str], list[float]] = {}
    for number in range(1, rounds + 1):
        for c in CONCURRENCY:
            for direction in ("up", "down"):
                seconds = dict.fromkeys(BUCKETS, 0.0)
                for part in sliced if c == 1 else [keys]:
                    for name in common.shuffled(list(BUCKETS), shuffler):
                        seconds[name] += await one_pass(server, name, payload, (direction, c), part)
                for name, spent in seconds.items():
                    rates.setdefault((direction, c, name), []).append(objects / spent)
                    common.log(
                        f"small {number}/{rounds} {direction} x{c} {name} {objects / spent:.0f}/s"
                    )
    return rates


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure on a fresh server; the section's result."""
    rounds = rounds or (1 if quick else 5)
    objects, size = (40 if quick else 1000), 256 * 1024
    with common.seaweedfs() as server:
        rates = asyncio.run(measure(server, objects, size, rounds, seed))
    rows = []
    for direction, c, name in rates:
        versus = {"raw boto3": rates[(direction, c, RAW)]}
        if name in (RAW_OBSTORE, OBSTORE):
            versus["raw obstore"] = rates[(direction, c, RAW_OBSTORE)]
        values = rates[(direction, c, name)]
        mib_s = common.Summary.of(values).median * size / MiB
        rows.append(
            common.row(
                name, values, case=f"{direction} x{c}", versus=versus, extra={"MiB/s": mib_s}
            )
        )
    targets = [
        common.target(
            f"{name} vs {base}, {direction}, {c} concurrent",
            ">=",
            goal,
            "x",
            common.paired(rates[(direction, c, name)], rates[(direction, c, base)]),
        )
        for name, base, direction, c, goal in TARGETS
    ]
    return {
        "title": "Small objects up and down",
        "unit": "objects/s",
        "parameters": {"rounds": rounds, "objects": objects, "KiB each": size // 1024},
        "rows": rows,
        "targets": targets,
    }
