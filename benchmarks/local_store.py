"""``LocalImageStore`` against raw file writes (with fsync) and reads, on the same disk.

Run: ``python benchmarks/local_store.py [--rounds N] [--objects N] [--output FILE]``.
No server: every contender writes ``--objects`` files of ``--size-kib`` under a
temporary directory (fresh keys each pass, removed afterwards, untimed) and
reads back a set it wrote once before the rounds.

Contenders, writing:

- raw write + fsync (the baseline): ``open``, ``write``, ``fsync``, ``close``;
- raw atomic write: a temporary file, ``fsync``, ``rename`` over the name and an
  ``fsync`` of the directory (what a crash-safe write needs at least);
- ``LocalImageStore.put`` (durable, the default) and with ``durable=False``.

Reading: raw ``open().read()`` against ``LocalImageStore.get``. The raw
contenders run on a ``ThreadPoolExecutor(c)``; the store is awaited through
``asyncio.gather`` bounded by ``Semaphore(c)`` (it runs its file work in
threads itself).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from common import (
    KiB,
    Section,
    Stopwatch,
    Summary,
    log,
    markdown_table,
    number,
    option,
    ratio,
    spread,
    standalone,
)

from demeter_storage.adapters.local.store import LocalImageStore

SECTION: Final = "local-store"
RAW: Final = "raw write + fsync"
RAW_ATOMIC: Final = "raw atomic write (temp, fsync, rename, dir fsync)"
STORE: Final = "`LocalImageStore.put`"
STORE_NOT_DURABLE: Final = "`LocalImageStore.put`, `durable=False`"
RAW_READ: Final = "raw read"
STORE_READ: Final = "`LocalImageStore.get`"
WRITERS: Final = (RAW, RAW_ATOMIC, STORE, STORE_NOT_DURABLE)
READERS: Final = (RAW_READ, STORE_READ)
CONTENT_TYPE: Final = "application/octet-stream"
DEFAULTS: Final = {"rounds": 5, "objects": 1000, "size_kib": 256, "concurrency": [1, 16]}
QUICK: Final = {"rounds": 1, "objects": 50, "size_kib": 256, "concurrency": [1, 16]}

Case = tuple[str, int]


def _raw_write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _raw_atomic_write(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".tmp-{name}")
    _raw_write(temp, data)
    os.rename(temp, path)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _raw_read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _threaded(action: Callable[[str], Any], paths: Sequence[str], concurrency: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool, Stopwatch() as watch:
        list(pool.map(action, paths))
    return watch.seconds


async def _gathered(
    store: LocalImageStore, keys: Sequence[str], payload: bytes, case: Case
) -> float:
    direction, concurrency = case
    limit = asyncio.Semaphore(concurrency)

    async def up(key: str) -> None:
        async with limit:
            await store.put(key, payload, content_type=CONTENT_TYPE)

    async def down(key: str) -> None:
        async with limit:
            if await store.get(key) != payload:
                raise AssertionError(f"LocalImageStore read back wrong bytes for {key}")

    action = up if direction == "up" else down
    with Stopwatch() as watch:
        await asyncio.gather(*(action(key) for key in keys))
    return watch.seconds


def object_keys(count: int) -> list[str]:
    """``bench/obj-0000.bin``, ... (one directory, as a session's photos are)."""
    return [f"bench/obj-{index:04d}.bin" for index in range(count)]


async def one_pass(
    root: Path, contender: str, keys: Sequence[str], payload: bytes, case: Case, pass_id: int
) -> float:
    """Seconds for ``contender`` to write (fresh keys) or read every key once."""
    direction, concurrency = case
    slug = str(WRITERS.index(contender) if contender in WRITERS else READERS.index(contender))
    where = root / (f"pass-{pass_id}-{slug}" if direction == "up" else f"read-{slug}")
    if contender in (RAW, RAW_ATOMIC, RAW_READ):
        (where / "bench").mkdir(parents=True, exist_ok=True)
        paths = [str(where / key) for key in keys]
        if contender == RAW_READ:

            def read(path: str) -> None:
                if _raw_read(path) != payload:
                    raise AssertionError(f"raw read got wrong bytes from {path}")

            seconds = _threaded(read, paths, concurrency)
        else:
            writer = _raw_write if contender == RAW else _raw_atomic_write
            seconds = _threaded(lambda path: writer(path, payload), paths, concurrency)
    else:
        store = LocalImageStore(where, name="bench", durable=contender != STORE_NOT_DURABLE)
        seconds = await _gathered(store, keys, payload, case)
        await store.aclose()
    if direction == "up":
        shutil.rmtree(where)  # untimed: keep the disk from filling up
    return seconds


async def measure(
    root: Path,
    *,
    rounds: int,
    objects: int,
    size: int,
    concurrencies: Sequence[int],
    seed: int | None,
) -> dict[tuple[Case, str], list[float]]:
    """Objects per second of every contender in every case, one value per round."""
    keys = object_keys(objects)
    payload = os.urandom(size)
    log(f"writing the {objects} objects every reader reads")
    raw_target = root / f"read-{READERS.index(RAW_READ)}"
    (raw_target / "bench").mkdir(parents=True)
    for key in keys:
        _raw_write(str(raw_target / key), payload)
    store = LocalImageStore(root / f"read-{READERS.index(STORE_READ)}", name="bench")
    await _gathered(store, keys, payload, ("up", max(concurrencies)))
    shuffler = random.Random(seed)
    rates: dict[tuple[Case, str], list[float]] = {}
    pass_id = 0
    for round_number in range(1, rounds + 1):
        for concurrency in concurrencies:
            for direction, contenders in (("up", WRITERS), ("down", READERS)):
                case = (direction, concurrency)
                order = list(contenders)
                shuffler.shuffle(order)
                for contender in order:
                    pass_id += 1
                    seconds = await one_pass(root, contender, keys, payload, case, pass_id)
                    rates.setdefault((case, contender), []).append(objects / seconds)
                    log(
                        f"round {round_number}/{rounds} {direction:>4} x{concurrency:<3} "
                        f"{contender:<50} {objects / seconds:9.1f} objects/s"
                    )
    return rates


def report(
    rates: dict[tuple[Case, str], list[float]],
    *,
    rounds: int,
    objects: int,
    size: int,
    where: str,
) -> str:
    """The markdown section: one row per case and contender."""
    rows: list[list[str]] = []
    for case in dict.fromkeys(case for case, _ in rates):
        contenders = WRITERS if case[0] == "up" else READERS
        baseline = Summary.of(rates[(case, contenders[0])]).median
        for contender in contenders:
            summary = Summary.of(rates[(case, contender)])
            rows.append(
                [
                    "write" if case[0] == "up" else "read",
                    str(case[1]),
                    contender,
                    number(summary.median),
                    spread(summary),
                    number(summary.median * size / KiB / KiB, 1),
                    ratio(summary.median, baseline),
                ]
            )
    headers = [
        "operation",
        "concurrency",
        "contender",
        "objects/s (median)",
        "min-max",
        "MiB/s",
        "vs first row (raw)",
    ]
    return (
        f"## Local store: {objects:,} x {size // KiB} KiB written and read\n\n"
        f"{markdown_table(headers, rows, right=4)}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds, on {where}. "
        "Writes go to fresh keys in one directory. A durable `LocalImageStore.put` writes "
        "a temporary file (fsync), writes and renames a metadata sidecar (fsync), renames "
        "the data over the object, then fsyncs the directory, each step in one of the store's "
        "threads (`WorkerThreads`); `durable=False` skips the fsyncs. Reads by the store walk "
        "the path without following links and check the file (`O_NOFOLLOW`, `fstat`). "
        "Every read is compared with the bytes written.\n"
    )


def _filesystem(path: Path) -> str:
    """``ext4 on /dev/vda`` for the file system holding ``path``, if /proc/mounts says."""
    best = ("", "unknown file system")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind, *_ = line.split()
            if str(path).startswith(mount) and len(mount) > len(best[0]):
                best = (mount, f"{kind} on {device}")
    except OSError:
        pass
    return f"`{path}` ({best[1]})"


def run(
    *,
    rounds: int,
    objects: int,
    size_kib: int,
    concurrencies: Sequence[int],
    work_dir: Path | None = None,
    seed: int | None = None,
) -> Section:
    """Measure in a temporary directory (under ``work_dir``) and return the markdown section."""
    size = size_kib * KiB
    with tempfile.TemporaryDirectory(prefix="demeter-bench-local-", dir=work_dir) as tmp:
        root = Path(tmp)
        rates = asyncio.run(
            measure(
                root,
                rounds=rounds,
                objects=objects,
                size=size,
                concurrencies=concurrencies,
                seed=seed,
            )
        )
        where = _filesystem(root.parent)
    markdown = report(rates, rounds=rounds, objects=objects, size=size, where=where)
    return Section(SECTION, markdown)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument(
        f"--{prefix}objects", type=int, help="objects per pass (default 1000, quick 50)"
    )
    parser.add_argument(f"--{prefix}size-kib", type=int, help="object size in KiB (256)")
    parser.add_argument(f"--{prefix}concurrency", type=int, nargs="+", help="levels (default 1 16)")
    parser.add_argument(f"--{prefix}dir", type=Path, help="where to write (default: $TMPDIR)")


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    return {
        "rounds": option(args, prefix, "rounds", DEFAULTS["rounds"], QUICK["rounds"]),
        "objects": option(args, prefix, "objects", DEFAULTS["objects"], QUICK["objects"]),
        "size_kib": option(args, prefix, "size_kib", DEFAULTS["size_kib"], QUICK["size_kib"]),
        "concurrencies": option(
            args, prefix, "concurrency", DEFAULTS["concurrency"], QUICK["concurrency"]
        ),
        "work_dir": option(args, prefix, "dir", None, None),
        "seed": args.seed,
    }


if __name__ == "__main__":
    standalone(sys.modules[__name__])
