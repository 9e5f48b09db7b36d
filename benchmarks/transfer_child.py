"""One measured transfer in a fresh process, reported as JSON on stdout.

Run by the benchmarks, never by hand: ``python transfer_child.py SPEC_JSON``,
with the secret key in the ``DEMETER_BENCH_SECRET_KEY`` environment variable
(never on a command line). Only the standard library is imported up front;
each contender imports its own client inside its function, so the peak RSS
(``VmHWM``) a child reports is what a fresh process using that client needs,
imports included (``start_rss_mib`` is the peak once they are imported,
before the transfer). This file also runs under the s3fs virtual environment,
which has neither boto3 nor demeter-storage.

Kinds of SPEC:

- ``{"kind": "large", "contender": ..., "direction": "up"|"down", "file": ...,
  "repeats": n}``: move one object between a file and the bucket, ``n`` times
  (1 if not given), and report the median time;
- ``{"kind": "small", "contender": "s3fs", "direction": ..., "concurrency": c,
  "keys": [...], "payload_file": ...}``: one pass of small objects with s3fs
  (the other small-object contenders run inside the parent process).

Every child prints ``{"seconds", "peak_rss_mib", "start_rss_mib", ...}``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Final

SECRET_ENV: Final = "DEMETER_BENCH_SECRET_KEY"
REGION: Final = "us-east-1"
MiB: Final = 1024 * 1024
CONTENT_TYPE: Final = "application/octet-stream"


def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``) in MiB."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
    return int(match.group(1)) / 1024


# Large objects: one contender each.


def _boto3_large(spec: dict[str, Any]) -> float:
    import boto3  # noqa: PLC0415 - imported by the contender that needs it
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    part, threads = spec["part_mib"] * MiB, spec["threads"]
    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        region_name=REGION,
        aws_access_key_id=spec["access_key"],
        aws_secret_access_key=os.environ[SECRET_ENV],
        config=Config(
            max_pool_connections=threads,
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
        ),
    )
    # Path-based transfers read and write the file lazily in each worker thread
    # (upload_fileobj buffers whole parts): boto3's best here.
    transfer = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=threads
    )
    try:
        start = time.perf_counter()
        if spec["direction"] == "up":
            client.upload_file(spec["file"], spec["bucket"], spec["key"], Config=transfer)
        else:
            client.download_file(spec["bucket"], spec["key"], spec["file"], Config=transfer)
        return time.perf_counter() - start
    finally:
        client.close()


def _build_store(spec: dict[str, Any]) -> Any:
    from demeter_storage.adapters.resilience.store import ResilientImageStore  # noqa: PLC0415
    from demeter_storage.adapters.s3.config import S3Config  # noqa: PLC0415
    from demeter_storage.adapters.s3.store import S3ImageStore  # noqa: PLC0415
    from demeter_storage.domain.secrets import Secret  # noqa: PLC0415

    # The store's defaults otherwise (8 MiB parts, 4 in flight).
    config = S3Config(
        endpoint_url=spec["endpoint"],
        region=REGION,
        addressing_style="path",
        access_key_id=spec["access_key"],
        secret_access_key=Secret(os.environ[SECRET_ENV]),
    )
    contender = spec["contender"]
    if "ObstoreImageStore" in contender:
        from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore  # noqa: PLC0415

        store: Any = ObstoreImageStore(spec["bucket"], config=config)
    else:
        store = S3ImageStore(spec["bucket"], config=config)
    return ResilientImageStore(store) if contender.startswith("ResilientImageStore(") else store


async def _store_large(spec: dict[str, Any], file: BinaryIO) -> float:
    store = _build_store(spec)
    chunk = spec["chunk_mib"] * MiB
    try:
        start = time.perf_counter()
        if spec["direction"] == "up":
            await store.put(spec["key"], file, content_type=CONTENT_TYPE)
        else:
            async for piece in store.stream(spec["key"], chunk_size=chunk):
                await asyncio.to_thread(file.write, piece)
        return time.perf_counter() - start
    finally:
        await store.aclose()


def _obstore(spec: dict[str, Any]) -> Any:
    from obstore.store import S3Store  # noqa: PLC0415

    return S3Store(
        spec["bucket"],
        endpoint=spec["endpoint"],
        access_key_id=spec["access_key"],
        secret_access_key=os.environ[SECRET_ENV],
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "900s"},
    )


async def _obstore_large(spec: dict[str, Any], file: BinaryIO) -> float:
    import obstore  # noqa: PLC0415

    store = _obstore(spec)
    part, threads, chunk = spec["part_mib"] * MiB, spec["threads"], spec["chunk_mib"] * MiB
    start = time.perf_counter()
    if spec["direction"] == "up":
        # A path: obstore reads the file itself, part by part.
        await obstore.put_async(
            store, spec["key"], Path(spec["file"]), chunk_size=part, max_concurrency=threads
        )
    else:
        result = await obstore.get_async(store, spec["key"])
        async for piece in result.stream(min_chunk_size=chunk):
            await asyncio.to_thread(file.write, piece)
    return time.perf_counter() - start


def _s3fs(concurrency: int, spec: dict[str, Any]) -> Any:
    import s3fs  # noqa: PLC0415

    return s3fs.S3FileSystem(
        key=spec["access_key"],
        secret=os.environ[SECRET_ENV],
        endpoint_url=spec["endpoint"],
        client_kwargs={"region_name": REGION},
        config_kwargs={"s3": {"addressing_style": "path"}, "max_pool_connections": concurrency},
        asynchronous=True,
        skip_instance_cache=True,
    )


async def _close_s3fs(fs: Any) -> None:
    client = getattr(fs, "_s3", None)
    if client is not None:
        await client.close()


async def _s3fs_large(spec: dict[str, Any]) -> float:
    # s3fs's defaults otherwise: 50 MiB parts, 10 at once, both ways.
    fs = _s3fs(16, spec)
    await fs.set_session()
    remote = f"{spec['bucket']}/{spec['key']}"
    try:
        start = time.perf_counter()
        if spec["direction"] == "up":
            await fs._put_file(spec["file"], remote)
        else:
            await fs._get_file(remote, spec["file"])
        return time.perf_counter() - start
    finally:
        await _close_s3fs(fs)


# Small objects: one s3fs pass.


async def _s3fs_small(spec: dict[str, Any], payload: bytes) -> float:
    concurrency = spec["concurrency"]
    fs = _s3fs(concurrency, spec)
    await fs.set_session()
    limit = asyncio.Semaphore(concurrency)
    bucket = spec["bucket"]

    async def up(key: str) -> None:
        async with limit:
            await fs._pipe_file(f"{bucket}/{key}", payload)

    async def down(key: str) -> None:
        async with limit:
            if await fs._cat_file(f"{bucket}/{key}") != payload:
                raise AssertionError(f"s3fs read back wrong bytes for {key}")

    action = up if spec["direction"] == "up" else down
    try:
        start = time.perf_counter()
        await asyncio.gather(*(action(key) for key in spec["keys"]))
        return time.perf_counter() - start
    finally:
        await _close_s3fs(fs)


def _import_client(contender: str) -> None:
    """Import what ``contender`` needs before the transfer, so its cost shows apart."""
    if contender.startswith("raw boto3"):
        modules = ["boto3", "boto3.s3.transfer"]
    elif contender == "raw obstore":
        modules = ["obstore", "obstore.store"]
    elif contender == "s3fs":
        modules = ["s3fs"]
    elif "ObstoreImageStore" in contender:
        modules = [
            "demeter_storage.adapters.s3.obstore.store",
            "demeter_storage.adapters.resilience.store",
        ]
    else:
        modules = ["demeter_storage.adapters.s3.store", "demeter_storage.adapters.resilience.store"]
    for module in modules:
        importlib.import_module(module)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the transfer ``spec`` describes; return its figures."""
    contender, kind = spec["contender"], spec["kind"]
    _import_client(contender)
    start_rss = peak_rss_mib()
    if kind == "small":
        if contender != "s3fs":
            raise SystemExit(f"no small-object child for {contender!r}")
        payload = Path(spec["payload_file"]).read_bytes()
        seconds = asyncio.run(_s3fs_small(spec, payload))
    else:
        # A transfer under a second swings widely with the machine's moment: the
        # median of a few, all in this process, is steadier (and its peak RSS the same).
        seconds = statistics.median(_large(spec) for _ in range(spec.get("repeats", 1)))
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "start_rss_mib": start_rss}


def _large(spec: dict[str, Any]) -> float:
    """Seconds for one large transfer (a download is checked for its size)."""
    contender = spec["contender"]
    if contender.startswith("raw boto3"):
        seconds = _boto3_large(spec)
    elif contender == "s3fs":
        seconds = asyncio.run(_s3fs_large(spec))
    else:
        # Opened here, outside the loop: the put reads the file (in the store's threads),
        # the download's chunks are written to it from a worker thread.
        with open(spec["file"], "rb" if spec["direction"] == "up" else "wb") as file:
            transfer = _obstore_large if contender == "raw obstore" else _store_large
            seconds = asyncio.run(transfer(spec, file))
    if spec["direction"] == "down":
        size = os.path.getsize(spec["file"])
        if size != spec["size"]:
            raise SystemExit(f"{contender} downloaded {size} bytes of {spec['size']}")
    return seconds


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: transfer_child.py SPEC_JSON (run by the benchmarks)")
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
