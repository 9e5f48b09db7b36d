"""One large object up and down, each transfer in a fresh process that reports its peak RSS.

Run: ``python benchmarks/large_object.py [--rounds N] [--size-mib N] [--output FILE]``.
The parent starts SeaweedFS, writes a file of random bytes, and for every
transfer runs this script again with ``--child SPEC``; the child moves the
object once and prints ``{"mib_s", "peak_rss_mib", ...}`` as JSON. The secret
key goes to the child in an environment variable, never on its command line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Final

from boto3.s3.transfer import TransferConfig
from common import (
    BASELINE,
    CONTENDERS,
    MiB,
    Stopwatch,
    Summary,
    create_buckets,
    log,
    markdown_table,
    number,
    peak_rss_mib,
    ratio,
    raw_client,
    seaweedfs,
    spread,
    write_section,
)

from demeter_storage.adapters.resilience import ResilientImageStore
from demeter_storage.adapters.s3 import S3ImageStore
from demeter_storage.adapters.s3_config import S3Config
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer

SECTION: Final = "large-object"
SECRET_ENV: Final = "DEMETER_BENCH_SECRET_KEY"
PART: Final = 8 * MiB
THREADS: Final = 8
CHUNK: Final = 8 * MiB
KEY: Final = "bench/large-object.bin"
BUCKETS: Final = dict(
    zip(
        CONTENDERS, ("bench-large-boto3", "bench-large-store", "bench-large-resilient"), strict=True
    )
)
Result = dict[str, float]

# The child: one transfer, measured from inside.


def _boto3_transfer(spec: dict[str, Any]) -> float:
    client = raw_client(spec["endpoint"], spec["access_key"], os.environ[SECRET_ENV], THREADS)
    # boto3's best here: path-based transfers read and write the file lazily in
    # each worker thread (upload_fileobj buffers whole parts), 8 MiB parts x 8.
    transfer = TransferConfig(
        multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=THREADS
    )
    try:
        with Stopwatch() as watch:
            if spec["direction"] == "up":
                client.upload_file(spec["file"], spec["bucket"], KEY, Config=transfer)
            else:
                client.download_file(spec["bucket"], KEY, spec["file"], Config=transfer)
    finally:
        client.close()
    return watch.seconds


async def _store_transfer(spec: dict[str, Any], file: BinaryIO) -> float:
    # The store's defaults: 8 MiB parts, 4 in flight.
    config = S3Config(
        endpoint_url=spec["endpoint"],
        region=REGION,
        addressing_style="path",
        access_key_id=spec["access_key"],
        secret_access_key=Secret(os.environ[SECRET_ENV]),
    )
    store: ImageStore = S3ImageStore(spec["bucket"], config=config)
    if spec["contender"] == "ResilientImageStore":
        store = ResilientImageStore(store)
    try:
        with Stopwatch() as watch:
            if spec["direction"] == "up":
                await store.put(KEY, file, content_type="application/octet-stream")
            else:
                async for chunk in store.stream(KEY, chunk_size=CHUNK):
                    file.write(chunk)
    finally:
        await store.aclose()
    return watch.seconds


def child(spec_json: str) -> None:
    """Run one transfer and print its figures as JSON (the ``--child`` mode)."""
    spec = json.loads(spec_json)
    start_rss = peak_rss_mib()  # every module is imported by now, whatever the contender
    if spec["contender"] == BASELINE:
        seconds = _boto3_transfer(spec)
    else:
        # Opened here, not in the coroutine: the put reads it, the stream writes it.
        with open(spec["file"], "rb" if spec["direction"] == "up" else "wb") as file:
            seconds = asyncio.run(_store_transfer(spec, file))
    if spec["direction"] == "down" and os.path.getsize(spec["file"]) != spec["size"]:
        raise SystemExit(f"downloaded {os.path.getsize(spec['file'])} bytes of {spec['size']}")
    result = {
        "seconds": seconds,
        "mib_s": spec["size"] / MiB / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "start_rss_mib": start_rss,
    }
    print(json.dumps(result))


# The parent: files, rounds, fresh processes, the report.


def spawn(server: SeaweedFSServer, contender: str, direction: str, file: Path, size: int) -> Result:
    """Run one transfer in a fresh child process and return what it reported."""
    spec = {
        "contender": contender,
        "direction": direction,
        "endpoint": server.endpoint_url,
        "access_key": server.access_key,
        "bucket": BUCKETS[contender],
        "file": str(file),
        "size": size,
    }
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, SECRET_ENV: server.secret_key.reveal()},
        timeout=1800,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{contender} {direction} failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result: Result = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        for offset in range(0, size, 8 * MiB):
            block = os.urandom(min(8 * MiB, size - offset))
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def measure(
    server: SeaweedFSServer, *, rounds: int, size_mib: int, seed: int | None = None
) -> dict[tuple[str, str], list[Result]]:
    """Every contender's figures, per (direction, contender), one per round."""
    size = size_mib * MiB
    shuffler = random.Random(seed)
    create_buckets(server, list(BUCKETS.values()))
    results: dict[tuple[str, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="demeter-bench-large-") as tmp:
        source, download = Path(tmp) / "source.bin", Path(tmp) / "download.bin"
        log(f"writing {size_mib} MiB of random bytes to {source}")
        expected = _random_file(source, size)
        log("warm-up: one unrecorded upload by raw boto3")
        spawn(server, BASELINE, "up", source, size)
        for round_number in range(1, rounds + 1):
            for direction in ("up", "down"):
                order = list(CONTENDERS)
                shuffler.shuffle(order)
                for contender in order:
                    target = source if direction == "up" else download
                    result = spawn(server, contender, direction, target, size)
                    if direction == "down":
                        if _sha256(download) != expected:
                            raise RuntimeError(f"{contender} downloaded different bytes")
                        download.unlink()
                    results.setdefault((direction, contender), []).append(result)
                    log(
                        f"round {round_number}/{rounds} {direction:>4} {contender:<20} "
                        f"{result['mib_s']:7.1f} MiB/s, peak RSS {result['peak_rss_mib']:.0f} MiB"
                    )
    return results


def _summary(results: list[Result], field: str) -> Summary:
    return Summary.of([result[field] for result in results])


def report(results: dict[tuple[str, str], list[Result]], *, rounds: int, size_mib: int) -> str:
    """The markdown section: one row per direction and contender."""
    rows: list[list[str]] = []
    for direction in ("up", "down"):
        mine = {c: results[(direction, c)] for c in CONTENDERS}
        speed, peak = _summary(mine[BASELINE], "mib_s"), _summary(mine[BASELINE], "peak_rss_mib")
        for contender in CONTENDERS:
            mib_s = _summary(mine[contender], "mib_s")
            rss = _summary(mine[contender], "peak_rss_mib")
            rows.append(
                [
                    direction,
                    contender,
                    number(mib_s.median),
                    spread(mib_s),
                    ratio(mib_s.median, speed.median),
                    number(rss.median),
                    number(rss.high),
                    ratio(rss.median, peak.median),
                    number(_summary(mine[contender], "start_rss_mib").median),
                ]
            )
    headers = [
        "direction",
        "contender",
        "MiB/s (median)",
        "min-max",
        "vs raw boto3",
        "peak RSS MiB (median)",
        "max",
        "RSS vs raw boto3",
        "RSS after imports",
    ]
    return (
        f"## One large object: {size_mib:,} MiB up and down\n\n"
        f"{markdown_table(headers, rows, right=7)}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds; each transfer "
        "runs in a fresh process, whose peak RSS is `VmHWM` from `/proc/self/status` "
        "(all clients are imported in every child: see the last column). Raw boto3 in its "
        "best configuration here: path-based `upload_file` / `download_file` (the file is "
        f"read and written lazily in each worker) with `TransferConfig(multipart_chunksize="
        f"{PART // MiB} MiB, max_concurrency={THREADS})`. The stores, with their default "
        "`S3Config` (8 MiB parts, 4 in flight): `put(open(file, 'rb'))` and "
        f"`stream(key, chunk_size={CHUNK // MiB} MiB)` written to a file; a multipart put "
        "also records the object's SHA-256 with a server-side copy, counted in its time. "
        "Every download is checked against the source's SHA-256.\n"
    )


def run(
    *,
    rounds: int,
    size_mib: int,
    seed: int | None = None,
    server: SeaweedFSServer | None = None,
) -> str:
    """Measure (on ``server``, or a fresh one) and return the markdown section."""
    if server is not None:
        results = measure(server, rounds=rounds, size_mib=size_mib, seed=seed)
    else:
        with seaweedfs() as fresh:
            results = measure(fresh, rounds=rounds, size_mib=size_mib, seed=seed)
    return report(results, rounds=rounds, size_mib=size_mib)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(f"--{prefix}size-mib", type=int, default=512, help="object size in MiB")


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    key = prefix.replace("-", "_")
    return {
        "rounds": getattr(args, f"{key}rounds"),
        "size_mib": getattr(args, f"{key}size_mib"),
        "seed": args.seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument("--output", type=Path, help="update this markdown file's section")
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    section = run(**options(args))
    if args.output:
        write_section(args.output, SECTION, section)
        log(f"wrote {args.output}")
    print(section)


if __name__ == "__main__":
    main()
