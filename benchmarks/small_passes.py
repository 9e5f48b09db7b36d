"""The small-object contenders: who takes part, and one timed pass of each.

Used by ``s3_throughput.py``, which interleaves the passes and reports them.
A pass moves every key once, up (``put``) or down (``get``, compared with the
bytes uploaded), at one concurrency, and returns the seconds it took. Each
pass builds a fresh client or store outside the timed part and closes it
afterwards.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from common import (
    BASELINE,
    OBSTORE_STORES,
    RAW_FROM_ASYNCIO,
    RAW_OBSTORE,
    RESILIENT,
    RESILIENT_OBSTORE,
    S3_STORE,
    S3FS,
    STORES,
    Stopwatch,
    build_store,
    obstore_installed,
    raw_obstore,
    run_child,
    server_client,
    usable_obstore_adapter,
)
from peers import s3fs_python

from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import SeaweedFSServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKETS: Final = {
    BASELINE: "bench-boto3",
    RAW_FROM_ASYNCIO: "bench-boto3-asyncio",
    S3_STORE: "bench-store",
    RESILIENT: "bench-resilient",
    RAW_OBSTORE: "bench-obstore",
    OBSTORE_STORES[0]: "bench-obstore-store",
    RESILIENT_OBSTORE: "bench-obstore-resilient",
    S3FS: "bench-s3fs",
}
CONTENT_TYPE: Final = "application/octet-stream"

Case = tuple[str, int]
"""(direction, concurrency): ``("up", 16)``."""


@dataclass
class Setup:
    """What one run measures: the contenders, their keys and payload, and notes."""

    server: SeaweedFSServer
    contenders: list[str]
    keys: list[str]
    payload: bytes
    payload_file: Path
    s3fs_python: str | None = None
    obstore_adapter: type[ImageStore] | None = None
    notes: list[str] = field(default_factory=list)


def object_keys(count: int) -> list[str]:
    """``bench/obj-0000.bin``, ``bench/obj-0001.bin``, ..."""
    return [f"bench/obj-{index:04d}.bin" for index in range(count)]


def prepare(
    server: SeaweedFSServer, *, objects: int, size: int, work_dir: Path, use_s3fs: bool
) -> Setup:
    """Choose the contenders that are available here; note the ones that are not."""
    payload = os.urandom(size)
    payload_file = work_dir / "payload.bin"
    payload_file.write_bytes(payload)
    setup = Setup(
        server, [BASELINE, RAW_FROM_ASYNCIO, *STORES], object_keys(objects), payload, payload_file
    )
    if obstore_installed():
        setup.contenders.append(RAW_OBSTORE)
    else:
        setup.notes.append("raw obstore left out: obstore is not installed")
    setup.obstore_adapter, note = usable_obstore_adapter(server)
    setup.notes.append(note)
    if setup.obstore_adapter is not None:
        setup.contenders += OBSTORE_STORES
    setup.s3fs_python = s3fs_python(use_s3fs, setup.notes)
    if setup.s3fs_python is not None:
        setup.contenders.append(S3FS)
    return setup


def _boto3_calls(
    setup: Setup, contender: str, client: S3Client
) -> dict[str, Callable[[str], None]]:
    """Raw boto3's ``up`` and ``down`` of one key, into ``contender``'s bucket."""
    bucket, payload = BUCKETS[contender], setup.payload

    def up(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=payload)

    def down(key: str) -> None:
        if client.get_object(Bucket=bucket, Key=key)["Body"].read() != payload:
            raise AssertionError(f"{contender} read back wrong bytes for {key}")

    return {"up": up, "down": down}


def _boto3_pass(setup: Setup, case: Case, keys: Sequence[str]) -> float:
    """Seconds for one pass of raw boto3: ``concurrency`` threads sharing one client."""
    direction, concurrency = case
    client = server_client(setup.server, pool=concurrency)
    call = _boto3_calls(setup, BASELINE, client)[direction]
    try:
        with ThreadPoolExecutor(concurrency) as pool, Stopwatch() as watch:
            list(pool.map(call, keys))
    finally:
        client.close()
    return watch.seconds


async def _boto3_from_asyncio_pass(setup: Setup, case: Case, keys: Sequence[str]) -> float:
    """Seconds for raw boto3 called from coroutines: each call ``run_in_executor``."""
    direction, concurrency = case
    client = server_client(setup.server, pool=concurrency)
    call = _boto3_calls(setup, RAW_FROM_ASYNCIO, client)[direction]
    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(concurrency) as pool:

            async def action(key: str) -> None:
                await loop.run_in_executor(pool, call, key)

            return await _bounded(keys, concurrency, action)
    finally:
        client.close()


async def _bounded(
    keys: Sequence[str], concurrency: int, action: Callable[[str], Awaitable[None]]
) -> float:
    """Seconds to run ``action`` on every key, at most ``concurrency`` at once."""
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limit:
            await action(key)

    with Stopwatch() as watch:
        await asyncio.gather(*(one(key) for key in keys))
    return watch.seconds


async def _store_pass(setup: Setup, contender: str, case: Case, keys: Sequence[str]) -> float:
    """Seconds for one pass of one of the package's stores: ``gather`` bounded by a semaphore."""
    direction, concurrency = case
    config = setup.server.s3_config(max_concurrency=concurrency)
    store = build_store(contender, BUCKETS[contender], config, setup.obstore_adapter)
    payload = setup.payload

    async def up(key: str) -> None:
        await store.put(key, payload, content_type=CONTENT_TYPE)

    async def down(key: str) -> None:
        if await store.get(key) != payload:
            raise AssertionError(f"{contender} read back wrong bytes for {key}")

    try:
        return await _bounded(keys, concurrency, up if direction == "up" else down)
    finally:
        await store.aclose()


async def _obstore_pass(setup: Setup, case: Case, keys: Sequence[str]) -> float:
    """Seconds for one pass of raw obstore's async API."""
    import obstore  # noqa: PLC0415 - optional

    direction, concurrency = case
    store = raw_obstore(setup.server, BUCKETS[RAW_OBSTORE])
    payload = setup.payload

    async def up(key: str) -> None:
        await obstore.put_async(store, key, payload)

    async def down(key: str) -> None:
        data = await (await obstore.get_async(store, key)).bytes_async()
        if data != payload:
            raise AssertionError(f"raw obstore read back wrong bytes for {key}")

    return await _bounded(keys, concurrency, up if direction == "up" else down)


def _s3fs_pass(setup: Setup, case: Case, keys: Sequence[str]) -> float:
    """Seconds for one s3fs pass, timed inside its child process."""
    assert setup.s3fs_python is not None
    spec = {
        "kind": "small",
        "contender": S3FS,
        "direction": case[0],
        "concurrency": case[1],
        "endpoint": setup.server.endpoint_url,
        "access_key": setup.server.access_key,
        "bucket": BUCKETS[S3FS],
        "keys": list(keys),
        "payload_file": str(setup.payload_file),
    }
    result = run_child(spec, setup.server.secret_key.reveal(), python=setup.s3fs_python)
    return float(result["seconds"])


async def one_pass(
    setup: Setup, contender: str, case: Case, keys: Sequence[str] | None = None
) -> float:
    """Seconds for ``contender`` to move ``keys`` (every key by default) once in ``case``."""
    keys = setup.keys if keys is None else keys
    # raw boto3 and s3fs block the loop on purpose: nothing else runs on it meanwhile,
    # and a thread hop would only add to their time.
    if contender == BASELINE:
        return _boto3_pass(setup, case, keys)
    if contender == RAW_FROM_ASYNCIO:
        return await _boto3_from_asyncio_pass(setup, case, keys)
    if contender == S3FS:
        return _s3fs_pass(setup, case, keys)
    if contender == RAW_OBSTORE:
        return await _obstore_pass(setup, case, keys)
    return await _store_pass(setup, contender, case, keys)
