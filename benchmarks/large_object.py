"""One large object up and down, each transfer in a fresh process that reports its peak RSS.

Run: ``python benchmarks/large_object.py [--rounds N] [--size-mib N] [--output FILE]``.
The parent starts SeaweedFS, writes a file of random bytes, and for every
transfer runs ``transfer_child.py`` with a JSON spec; the child imports only
its own client, moves the object once and prints ``{"seconds", "peak_rss_mib",
...}``. The secret key goes to the child in an environment variable, never on
its command line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common import (
    BASELINE,
    OBSTORE_ADAPTER,
    OBSTORE_STORES,
    RAW_OBSTORE,
    S3_STORE,
    S3FS,
    STORES,
    MiB,
    Section,
    Summary,
    Target,
    create_buckets,
    log,
    markdown_table,
    number,
    obstore_installed,
    option,
    ratio,
    run_child,
    seaweedfs,
    server_client,
    spread,
    standalone,
    usable_obstore_adapter,
)
from peers import s3fs_python

from demeter_storage.testing.seaweedfs import SeaweedFSServer

SECTION: Final = "large-object"
KEY: Final = "bench/large-object.bin"
CHUNK_MIB: Final = 8
DOWNLOAD_REPEATS: Final = 3
"""Downloads per child process (each round's figure is their median): one takes under a second."""
"""The chunk size of the streamed downloads (stores and raw obstore)."""
BOTO3_CONFIGS: Final = {
    BASELINE: (8, 8),
    "raw boto3, 16 MiB x 8": (16, 8),
    "raw boto3, 32 MiB x 8": (32, 8),
    "raw boto3, 16 MiB x 16": (16, 16),
}
"""boto3's configurations, (part MiB, threads): the first is the ratios' baseline;
the download target compares with the fastest of them in the same run."""
OBSTORE_CONFIG: Final = (8, 8)
UPLOAD_TARGET_MIB_S: Final = 250.0
RSS_TARGET_MIB: Final = 150.0
DOWNLOAD_TARGET_RATIO: Final = 0.95
DEFAULTS: Final = {"rounds": 5, "size_mib": 512}
QUICK: Final = {"rounds": 1, "size_mib": 32}
Result = dict[str, float]


def _bucket(contender: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in contender.lower()).strip("-")
    return f"bench-large-{'-'.join(part for part in slug.split('-') if part)}"[:63]


@dataclass
class Setup:
    """The contenders of one run and the notes on the ones left out."""

    server: SeaweedFSServer
    contenders: list[str]
    s3fs_python: str | None = None
    notes: list[str] = field(default_factory=list)


def prepare(server: SeaweedFSServer, *, use_s3fs: bool) -> Setup:
    """Choose the contenders that are available here; note the ones that are not."""
    setup = Setup(server, [*BOTO3_CONFIGS, *STORES])
    if obstore_installed():
        setup.contenders.append(RAW_OBSTORE)
    else:
        setup.notes.append("raw obstore left out: obstore is not installed")
    adapter, note = usable_obstore_adapter(server)
    setup.notes.append(note)
    if adapter is not None:
        setup.contenders += OBSTORE_STORES
    setup.s3fs_python = s3fs_python(use_s3fs, setup.notes)
    if setup.s3fs_python is not None:
        setup.contenders.append(S3FS)
    return setup


def spawn(setup: Setup, contender: str, direction: str, file: Path, size: int) -> Result:
    """Run one transfer in a fresh child process and return what it reported."""
    part_mib, threads = BOTO3_CONFIGS.get(contender, OBSTORE_CONFIG)
    repeats = DOWNLOAD_REPEATS if direction == "down" else 1
    spec = {
        "kind": "large",
        "contender": contender,
        "direction": direction,
        "endpoint": setup.server.endpoint_url,
        "access_key": setup.server.access_key,
        "bucket": _bucket(contender),
        "key": KEY,
        "file": str(file),
        "size": size,
        "part_mib": part_mib,
        "threads": threads,
        "chunk_mib": CHUNK_MIB,
        "repeats": repeats,
    }
    python = setup.s3fs_python if contender == S3FS else None
    server_cpu = _server_cpu_seconds(setup.server)
    result = run_child(spec, setup.server.secret_key.reveal(), python=python)
    result["mib_s"] = size / MiB / result["seconds"]
    # The whole child's run (imports, each download's repeats): per MiB moved.
    moved_mib = size / MiB * repeats
    result["server_ms_per_mib"] = (
        (_server_cpu_seconds(setup.server) - server_cpu) * 1000 / moved_mib
    )
    return result


def _server_cpu_seconds(server: SeaweedFSServer) -> float:
    """CPU time (user and system, all threads) the SeaweedFS process has used so far."""
    if server.process is None:
        return float("nan")
    with open(f"/proc/{server.process.pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # utime and stime are the 14th and 15th fields; the first two (pid, comm) are cut off.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        for offset in range(0, size, 8 * MiB):
            block = os.urandom(min(8 * MiB, size - offset))
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


def _fill_buckets(setup: Setup) -> None:
    """Put a small object in every contender's bucket.

    SeaweedFS allocates a bucket's volumes on its first write: without this, the
    first upload of each contender would pay for it.
    """
    client = server_client(setup.server)
    try:
        for contender in setup.contenders:
            client.put_object(Bucket=_bucket(contender), Key="bench/warm-up", Body=b"warm")
    finally:
        client.close()


def _sha256(path: Path) -> str:
    with path.open("rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def measure(
    setup: Setup, *, rounds: int, size_mib: int, seed: int | None = None
) -> dict[tuple[str, str], list[Result]]:
    """Every contender's figures, per (direction, contender), one per round."""
    size = size_mib * MiB
    shuffler = random.Random(seed)
    create_buckets(setup.server, [_bucket(c) for c in setup.contenders])
    results: dict[tuple[str, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="demeter-bench-large-") as tmp:
        source, download = Path(tmp) / "source.bin", Path(tmp) / "download.bin"
        log(f"writing {size_mib} MiB of random bytes to {source}")
        expected = _random_file(source, size)
        log("warm-up: a small object in every bucket, then one unrecorded upload by raw boto3")
        _fill_buckets(setup)
        spawn(setup, BASELINE, "up", source, size)
        for round_number in range(1, rounds + 1):
            for direction in ("up", "down"):
                order = list(setup.contenders)
                shuffler.shuffle(order)
                for contender in order:
                    target = source if direction == "up" else download
                    result = spawn(setup, contender, direction, target, size)
                    if direction == "down":
                        if _sha256(download) != expected:
                            raise RuntimeError(f"{contender} downloaded different bytes")
                        download.unlink()
                    results.setdefault((direction, contender), []).append(result)
                    log(
                        f"round {round_number}/{rounds} {direction:>4} {contender:<40} "
                        f"{result['mib_s']:7.1f} MiB/s, peak RSS {result['peak_rss_mib']:.0f} MiB"
                    )
    return results


def _config_label(contender: str) -> str:
    part, threads = BOTO3_CONFIGS[contender]
    return f"{part} MiB x {threads}"


def _summary(results: list[Result], name: str) -> Summary:
    return Summary.of([result[name] for result in results])


def targets(
    setup: Setup, results: dict[tuple[str, str], list[Result]], size_mib: int
) -> list[Target]:
    """Upload speed and memory, and download speed against boto3's best configuration."""
    best_name = max(BOTO3_CONFIGS, key=lambda c: _summary(results[("down", c)], "mib_s").median)
    best = _summary(results[("down", best_name)], "mib_s").median
    best_label = f"{best_name}, {_config_label(best_name)}" if best_name == BASELINE else best_name
    fastest = max(setup.contenders, key=lambda c: _summary(results[("up", c)], "mib_s").median)
    fastest_up = _summary(results[("up", fastest)], "mib_s")
    upload_limit = (
        f"the fastest upload of any client in this run: {fastest}, {fastest_up.median:.0f} "
        f"MiB/s (max {fastest_up.high:.0f}); the server, SeaweedFS on the same cores as the "
        f"client, bounds them all{_server_ceiling(results)}; the stores' server-side copy "
        "that records the SHA-256 is metadata-only on SeaweedFS, counted in their time"
    )
    raw_down = ""
    if RAW_OBSTORE in setup.contenders:
        raw_mib_s = _summary(results[("down", RAW_OBSTORE)], "mib_s").median
        raw_down = f"; raw obstore's own streamed GET: {raw_mib_s:.0f} MiB/s"
    download_limit = (
        "the store reads ranged parts, four at once after the first, as boto3's "
        f"`download_file` does; on loopback one stream is about as fast{raw_down}, and the "
        "spread across rounds is wide"
    )
    found: list[Target] = []
    for store in (S3_STORE, OBSTORE_ADAPTER):
        if store not in setup.contenders:
            continue
        up = _summary(results[("up", store)], "mib_s")
        rss = _summary(results[("up", store)], "peak_rss_mib")
        down = _summary(results[("down", store)], "mib_s").median
        found += [
            Target(
                name=f"`{store}` {size_mib:,} MiB upload speed",
                goal=f">= {UPLOAD_TARGET_MIB_S:.0f} MiB/s",
                measured=f"{up.median:.0f} MiB/s (min-max {spread(up)})",
                met=up.median >= UPLOAD_TARGET_MIB_S,
                limit=upload_limit,
            ),
            Target(
                name=f"`{store}` {size_mib:,} MiB upload peak RSS (fresh process)",
                goal=f"<= {RSS_TARGET_MIB:.0f} MiB",
                measured=f"{rss.median:.0f} MiB (max {rss.high:.0f})",
                met=rss.high <= RSS_TARGET_MIB,
            ),
            Target(
                name=f"`{store}` {size_mib:,} MiB download vs boto3's best configuration",
                goal=f">= {DOWNLOAD_TARGET_RATIO:.2f}x",
                measured=f"{down / best:.2f}x ({down:.0f} vs {best:.0f} MiB/s, {best_label})",
                met=down / best >= DOWNLOAD_TARGET_RATIO,
                limit=download_limit,
            ),
        ]
    return found


def _ms_per_mib(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"  # NaN: not our server process


def _server_ceiling(results: dict[tuple[str, str], list[Result]]) -> str:
    """What the server's own CPU per MiB uploaded allows on this machine's cores."""
    per_mib = Summary.of(
        [
            r["server_ms_per_mib"]
            for (direction, _), runs in results.items()
            if direction == "up"
            for r in runs
        ]
    ).median
    if per_mib != per_mib:  # NaN: the server is not a process of ours
        return ""
    cores = len(os.sched_getaffinity(0))
    return (
        f": it used about {per_mib:.1f} ms of CPU per MiB uploaded (median of every upload, "
        "its background work included), so even with the machine's "
        f"{cores} cores to itself and a client costing nothing it could take in about "
        f"{cores * 1000 / per_mib:.0f} MiB/s; `benchmarks/profile_seaweedfs.py` profiles "
        "the server: 40-55% of its CPU went to MD5 in this project's runs"
    )


def report(
    setup: Setup, results: dict[tuple[str, str], list[Result]], *, rounds: int, size_mib: int
) -> str:
    """The markdown section: one row per direction and contender."""
    rows: list[list[str]] = []
    for direction in ("up", "down"):
        mine = {c: results[(direction, c)] for c in setup.contenders}
        speed, peak = _summary(mine[BASELINE], "mib_s"), _summary(mine[BASELINE], "peak_rss_mib")
        for contender in setup.contenders:
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
                    _ms_per_mib(_summary(mine[contender], "server_ms_per_mib").median),
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
        "SeaweedFS CPU ms per MiB",
    ]
    boto3_configs = ", ".join(
        f"{name}: {part} MiB parts x {threads} threads"
        for name, (part, threads) in BOTO3_CONFIGS.items()
    )
    notes = "".join(f"- {note}\n" for note in setup.notes)
    return (
        f"## One large object: {size_mib:,} MiB up and down\n\n"
        f"{markdown_table(headers, rows, right=8)}\n\n"
        f"Median over {rounds} interleaved round(s), min-max across rounds. Each transfer "
        "runs in a fresh process that imports only its own client, so its peak RSS "
        "(`VmHWM` from `/proc/self/status`) is what a process doing that transfer needs, "
        "imports included (the last column: the peak once the client is imported, before the "
        f"transfer). A download takes under a second, so its process downloads "
        f"{DOWNLOAD_REPEATS} times and a round's figure is their median. Raw boto3: "
        "path-based `upload_file` / `download_file` (the file is read and written lazily "
        f"in each worker, parallel ranged GETs down) with `TransferConfig` ({boto3_configs}). "
        "The stores, with their default `S3Config` (8 MiB parts, 4 in flight): "
        f"`put(open(file, 'rb'))` and `stream(key, chunk_size={CHUNK_MIB} MiB)` written to "
        "a file from a worker thread (ranged parts of 8 MiB, the first streamed and 4 more "
        "at once, each conditional on the first's ETag); a multipart put also records the "
        "object's "
        "SHA-256 with a server-side copy, counted in its time. Raw obstore: "
        f"`put_async(store, key, Path)` ({OBSTORE_CONFIG[0]} MiB parts, {OBSTORE_CONFIG[1]} "
        f"at once) and `get_async(...).stream({CHUNK_MIB} MiB)` written to a file the same "
        "way. s3fs, with its defaults (50 MiB parts, 10 at once, both ways): `_put_file` / "
        "`_get_file`. Before the rounds every bucket gets a small object (SeaweedFS "
        "allocates a bucket's volumes on its first write) and raw boto3 makes one "
        "unrecorded upload. Every download is checked against the source's SHA-256. The "
        "last column is the CPU time the SeaweedFS process (all its threads) used during "
        "the transfer's process, per MiB moved: the server's share of the work.\n\n"
        f"{notes}"
    )


def run(
    *,
    rounds: int,
    size_mib: int,
    seed: int | None = None,
    use_s3fs: bool = True,
    server: SeaweedFSServer | None = None,
) -> Section:
    """Measure (on ``server``, or a fresh one) and return the markdown section."""

    def measured(target: SeaweedFSServer) -> Section:
        setup = prepare(target, use_s3fs=use_s3fs)
        results = measure(setup, rounds=rounds, size_mib=size_mib, seed=seed)
        return Section(
            SECTION,
            report(setup, results, rounds=rounds, size_mib=size_mib),
            targets(setup, results, size_mib),
        )

    if server is not None:
        return measured(server)
    with seaweedfs() as fresh:
        return measured(fresh)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 5, quick 1)")
    parser.add_argument(
        f"--{prefix}size-mib", type=int, help="object size in MiB (default 512, quick 32)"
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    return {
        "rounds": option(args, prefix, "rounds", DEFAULTS["rounds"], QUICK["rounds"]),
        "size_mib": option(args, prefix, "size_mib", DEFAULTS["size_mib"], QUICK["size_mib"]),
        "seed": args.seed,
        "use_s3fs": not args.skip_s3fs,
    }


if __name__ == "__main__":
    standalone(sys.modules[__name__], s3fs=True)
