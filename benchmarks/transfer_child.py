"""One large transfer in a fresh process, reported as JSON on stdout (run by ``large.py``).

``python transfer_child.py SPEC_JSON``, the secret key in ``DEMETER_BENCH_SECRET_KEY``
(never on a command line). Only the standard library is imported up front;
each contender imports its own client, so the peak RSS (``VmHWM``) reported is
what a fresh process using that client needs, imports included. A download
runs ``repeats`` times (one takes under a second) and reports the median.
Prints ``{"seconds": ..., "peak_rss_mib": ...}``.
"""

from __future__ import annotations

import asyncio
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


def peak_rss_mib() -> float:
    """This process's peak resident set size (``VmHWM``, Linux) in MiB."""
    found = re.search(r"^VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def boto3_transfer(spec: dict[str, Any]) -> float:
    """Path-based ``upload_file`` / ``download_file`` (parallel ranged GETs down)."""
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
        config=Config(max_pool_connections=threads, s3={"addressing_style": "path"}),
    )
    config = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=threads
    )
    start = time.perf_counter()
    if spec["direction"] == "up":
        client.upload_file(spec["file"], spec["bucket"], spec["key"], Config=config)
    else:
        client.download_file(spec["bucket"], spec["key"], spec["file"], Config=config)
    seconds = time.perf_counter() - start
    client.close()
    return seconds


async def store_transfer(spec: dict[str, Any], file: BinaryIO) -> float:
    """A store with its default ``S3Config``: ``put(file)``, or ``stream`` into the file."""
    import demeter_storage  # noqa: PLC0415

    config = demeter_storage.S3Config(
        endpoint_url=spec["endpoint"],
        region=REGION,
        addressing_style="path",
        access_key_id=spec["access_key"],
        secret_access_key=demeter_storage.Secret(os.environ[SECRET_ENV]),
    )
    store = getattr(demeter_storage, spec["store"])(spec["bucket"], config=config)
    start = time.perf_counter()
    if spec["direction"] == "up":
        await store.put(spec["key"], file, content_type="application/octet-stream")
    else:
        async for piece in store.stream(spec["key"], chunk_size=spec["part_mib"] * MiB):
            await asyncio.to_thread(file.write, piece)
    seconds = time.perf_counter() - start
    await store.aclose()
    return seconds


async def obstore_transfer(spec: dict[str, Any], file: BinaryIO) -> float:
    """obstore's ``put_async`` of the file's path, or ``get_async(...).stream`` into the file."""
    import obstore  # noqa: PLC0415
    from obstore.store import S3Store  # noqa: PLC0415

    store = S3Store(
        spec["bucket"],
        endpoint=spec["endpoint"],
        access_key_id=spec["access_key"],
        secret_access_key=os.environ[SECRET_ENV],
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "900s"},
    )
    part, threads = spec["part_mib"] * MiB, spec["threads"]
    start = time.perf_counter()
    if spec["direction"] == "up":
        path = Path(spec["file"])
        await obstore.put_async(store, spec["key"], path, chunk_size=part, max_concurrency=threads)
    else:
        async for piece in (await obstore.get_async(store, spec["key"])).stream(part):
            await asyncio.to_thread(file.write, piece)
    return time.perf_counter() - start


def transfer(spec: dict[str, Any]) -> float:
    """Seconds for one transfer (a download is checked for its size)."""
    if spec["client"] == "boto3":
        seconds = boto3_transfer(spec)
    else:
        with open(spec["file"], "rb" if spec["direction"] == "up" else "wb") as file:
            run = obstore_transfer if spec["client"] == "obstore" else store_transfer
            seconds = asyncio.run(run(spec, file))
    if spec["direction"] == "down" and os.path.getsize(spec["file"]) != spec["size"]:
        raise SystemExit(f"{spec['client']} downloaded {os.path.getsize(spec['file'])} bytes")
    return seconds


def main() -> None:
    spec = json.loads(sys.argv[1])
    seconds = statistics.median(transfer(spec) for _ in range(spec["repeats"]))
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
