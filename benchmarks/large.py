"""One large object up and down, each transfer in a fresh process that reports its peak RSS.

The parent starts SeaweedFS and writes a file of random bytes; every transfer
runs ``transfer_child.py`` with a JSON spec, so one transfer's memory never
hides in another's. Each round uploads with every contender in a shuffled
order, then downloads likewise (a download is checked against the source's
SHA-256). Raw boto3 and raw obstore move 8 MiB parts, 8 at once; the stores
use their default ``S3Config`` (8 MiB parts, 4 in flight).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import common
from common import MiB

from demeter_storage.testing.seaweedfs import SeaweedFSServer

KEY: Final = "bench/large-object.bin"
CONTENDERS: Final = {
    "raw boto3": {"client": "boto3", "bucket": "bench-large-boto3"},
    "`S3ImageStore`": {"client": "store", "store": "S3ImageStore", "bucket": "bench-large-store"},
    "raw obstore": {"client": "obstore", "bucket": "bench-large-obstore"},
    "`ObstoreImageStore`": {"client": "store", "store": "ObstoreImageStore", "bucket": "bench-x"},
}
UPLOAD_TARGET: Final = 250.0
RSS_TARGET: Final = 150.0


def spawn(server: SeaweedFSServer, name: str, direction: str, file: Path, size: int) -> Any:
    """One transfer in a fresh child process: what it printed."""
    spec = {
        **CONTENDERS[name],
        "direction": direction,
        "endpoint": server.endpoint_url,
        "access_key": server.access_key,
        "key": KEY,
        "file": str(file),
        "size": size,
        "part_mib": 8,
        "threads": 8,
        "repeats": 3 if direction == "down" else 1,
    }
    done = subprocess.run(
        [sys.executable, str(common.BENCH_DIR / "transfer_child.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "DEMETER_BENCH_SECRET_KEY": server.secret_key.reveal()},
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} {direction} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sha256(path: Path) -> str:
    """The file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def measure(
    server: SeaweedFSServer, work: Path, size: int, rounds: int, seed: int | None
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(MiB/s, peak RSS MiB) by (direction, contender), one pair per round."""
    source, target_file = work / "source.bin", work / "download.bin"
    with open(source, "wb") as file:
        for _ in range(size // MiB):
            file.write(os.urandom(MiB))
    expected = sha256(source)
    buckets = [spec["bucket"] for spec in CONTENDERS.values()]
    common.create_buckets(server, buckets)
    client = common.server_client(server)
    for bucket in buckets:  # SeaweedFS allocates a bucket's volumes on its first write
        client.put_object(Bucket=bucket, Key="warm", Body=b"warm")
    client.close()
    spawn(server, "raw boto3", "up", source, size)  # warm: the server's first large write
    shuffler = random.Random(seed)
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {
        (direction, name): [] for direction in ("up", "down") for name in CONTENDERS
    }
    for number in range(1, rounds + 1):
        for direction in ("up", "down"):
            for name in common.shuffled(list(CONTENDERS), shuffler):
                path = source if direction == "up" else target_file
                result = spawn(server, name, direction, path, size)
                if direction == "down" and sha256(target_file) != expected:
                    raise AssertionError(f"{name} downloaded other bytes")
                mib_s = size / MiB / result["seconds"]
                figures[(direction, name)].append((mib_s, result["peak_rss_mib"]))
                common.log(f"large {number}/{rounds} {direction:>4} {name:<22} {mib_s:7.1f} MiB/s")
    return figures


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure on a fresh server; the section's result."""
    rounds = rounds or (1 if quick else 3)
    size = (32 if quick else 256) * MiB
    with common.seaweedfs() as server, tempfile.TemporaryDirectory(prefix="demeter-large-") as work:
        figures = measure(server, Path(work), size, rounds, seed)
    speed = {key: [mib_s for mib_s, _ in pairs] for key, pairs in figures.items()}
    rss = {key: [peak for _, peak in pairs] for key, pairs in figures.items()}
    rows = [
        common.row(
            name,
            speed[(direction, name)],
            case=direction,
            versus={"raw boto3": speed[(direction, "raw boto3")]},
            extra={"peak RSS MiB": max(rss[(direction, name)])},
        )
        for direction, name in figures
    ]
    targets, mib = [], size // MiB
    for store in ("`S3ImageStore`", "`ObstoreImageStore`"):
        up, down = speed[("up", store)], speed[("down", store)]
        peak, versus = common.Summary.of(rss[("up", store)]), speed[("down", "raw boto3")]
        targets += [
            common.target(
                f"{store} {mib} MiB upload",
                ">=",
                UPLOAD_TARGET,
                "MiB/s",
                common.Summary.of(up),
            ),
            common.target(f"{store} {mib} MiB upload, peak RSS", "<=", RSS_TARGET, "MiB", peak),
            common.target(
                f"{store} {mib} MiB download vs raw boto3",
                ">=",
                0.95,
                "x",
                common.paired(down, versus),
            ),
        ]
    return {
        "title": "One large object up and down",
        "unit": "MiB/s",
        "parameters": {
            "rounds": rounds,
            "MiB": size // MiB,
            "downloads per child": 3,
        },
        "rows": rows,
        "targets": targets,
    }
