"""``LocalImageStore`` against raw file writes (with fsync) and reads, on the same disk.

No server. Writers put every object under fresh keys in one directory (removed
afterwards, untimed); readers read back a set written once before the rounds.
Raw contenders run on a ``ThreadPoolExecutor(c)``; the store is awaited through
``asyncio.gather`` bounded by ``Semaphore(c)`` (it does its file work in threads).
Files go under ``$TMPDIR``.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from common import MiB, Stopwatch, Summary, bounded, log, row, shuffled

from demeter_storage import LocalImageStore

RAW: Final = "raw write + fsync"
RAW_ATOMIC: Final = "raw atomic write (temporary file, fsync, rename, directory fsync)"
STORE: Final = "`LocalImageStore.put`"
FAST_STORE: Final = "`LocalImageStore.put`, `durable=False`"
RAW_READ: Final = "raw read"
STORE_READ: Final = "`LocalImageStore.get`"
CASES: Final = {"write": (RAW, RAW_ATOMIC, STORE, FAST_STORE), "read": (RAW_READ, STORE_READ)}
CONCURRENCY: Final = (1, 16)


def raw_write(path: str, data: bytes) -> None:
    """``open``, ``write``, ``fsync``, ``close``."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def raw_atomic_write(path: str, data: bytes) -> None:
    """What a crash-safe write needs at least: a temporary file, rename, directory fsync."""
    directory, name = os.path.split(path)
    raw_write(os.path.join(directory, f".tmp-{name}"), data)
    os.rename(os.path.join(directory, f".tmp-{name}"), path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)


async def one_pass(where: Path, name: str, keys: Sequence[str], payload: bytes, c: int) -> float:
    """Seconds for ``name`` to write or read every key once, ``c`` at once."""
    if name in (RAW, RAW_ATOMIC, RAW_READ):
        (where / "bench").mkdir(parents=True, exist_ok=True)
        writer = raw_write if name == RAW else raw_atomic_write

        def action(path: str) -> Any:
            if name != RAW_READ:
                return writer(path, payload)
            if Path(path).read_bytes() != payload:
                raise AssertionError(f"raw read got other bytes from {path}")
            return None

        with ThreadPoolExecutor(c) as pool, Stopwatch() as watch:
            list(pool.map(action, [str(where / key) for key in keys]))
        return watch.seconds
    store = LocalImageStore(where, name="bench", durable=name != FAST_STORE)

    async def one(key: str) -> None:
        if name != STORE_READ:
            await store.put(key, payload, content_type="application/octet-stream")
        elif await store.get(key) != payload:
            raise AssertionError(f"LocalImageStore read other bytes for {key}")

    seconds = await bounded(keys, c, one)
    await store.aclose()
    return seconds


async def measure(
    root: Path, objects: int, size: int, rounds: int, seed: int | None
) -> dict[tuple[str, int, str], list[float]]:
    """Objects per second by (operation, concurrency, contender), one figure per round."""
    keys = [f"bench/obj-{index:04d}.bin" for index in range(objects)]
    payload = os.urandom(size)
    reads = {RAW_READ: root / "read-raw", STORE_READ: root / "read-store"}
    await one_pass(reads[RAW_READ], RAW, keys, payload, 16)  # what the readers read
    await one_pass(reads[STORE_READ], STORE, keys, payload, 16)
    rates: dict[tuple[str, int, str], list[float]] = {
        (op, c, name): [] for c in CONCURRENCY for op, names in CASES.items() for name in names
    }
    shuffler = random.Random(seed)
    for number in range(1, rounds + 1):
        for c in CONCURRENCY:
            for op, names in CASES.items():
                for name in shuffled(names, shuffler):
                    where = reads.get(name, root / f"write-{names.index(name)}")
                    seconds = await one_pass(where, name, keys, payload, c)
                    if op == "write":
                        shutil.rmtree(where)  # untimed: keep the disk from filling up
                    rates[(op, c, name)].append(objects / seconds)
                    log(f"local {number}/{rounds} {op} x{c} {name:<60} {objects / seconds:.0f}/s")
    return rates


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure under ``$TMPDIR``; the section's result."""
    rounds = rounds or (1 if quick else 5)
    objects, size = (50 if quick else 1000), 256 * 1024
    with tempfile.TemporaryDirectory(prefix="demeter-local-") as root:
        rates = asyncio.run(measure(Path(root), objects, size, rounds, seed))
    baseline = {"write": RAW, "read": RAW_READ}
    rows = [
        row(
            name,
            values,
            case=f"{op} x{c}",
            versus={"raw": rates[(op, c, baseline[op])]},
            extra={"MiB/s": Summary.of(values).median * size / MiB},
        )
        for (op, c, name), values in rates.items()
    ]
    return {
        "title": "The local store against raw file writes",
        "unit": "objects/s",
        "parameters": {"rounds": rounds, "objects": objects, "KiB each": size // 1024},
        "rows": rows,
        "targets": [],
    }
