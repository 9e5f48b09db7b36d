"""Presigned GET URLs per second, single-threaded: the stores against boto3, botocore and obstore.

Run: ``python benchmarks/presign.py [--rounds N] [--seconds S] [--output FILE]``.
Signing is local computation, but every contender's URL is first checked
against a real SeaweedFS server (a GET through the URL must return the object),
so only URLs that work are counted. Then, in each round, every contender signs
URLs for a rotating set of 1,000 keys for ``--seconds``, in a shuffled order.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from common import (
    OBSTORE_ADAPTER,
    Section,
    Summary,
    Target,
    build_obstore_adapter,
    create_buckets,
    log,
    markdown_table,
    number,
    obstore_installed,
    option,
    ratio,
    raw_obstore,
    seaweedfs,
    server_client,
    spread,
    standalone,
    usable_obstore_adapter,
)

from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.ports import ImageStore
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer

SECTION: Final = "presign"
BUCKET: Final = "bench-presign"
PROBE_KEY: Final = "session-0000/probe.jpg"
PROBE_BODY: Final = b"presign probe"
EXPIRES: Final = 3600
BATCH: Final = 1000
"""URLs signed between two looks at the clock; obstore's batch call signs this many at once."""
TARGET: Final = 100_000.0
BOTO3: Final = "boto3 `generate_presigned_url`"
SIGV4_QUERY_AUTH: Final = "botocore `S3SigV4QueryAuth`"
OBSTORE_SIGN: Final = "obstore `sign`"
OBSTORE_BATCH: Final = f"obstore `sign`, {BATCH:,} paths a call"
STORE: Final = "`S3ImageStore.presign`"
RESILIENT: Final = "`ResilientImageStore.presign`"
ADAPTER: Final = f"`{OBSTORE_ADAPTER}.presign`"
DEFAULTS: Final = {"rounds": 7, "seconds": 1.0}
QUICK: Final = {"rounds": 2, "seconds": 0.2}

Signer = Callable[[str], Awaitable[str]]
"""Signs a GET URL for one key (sync signers are wrapped, but timed without the wrapper)."""
Batch = Callable[[list[str]], Awaitable[None]]
"""Signs a GET URL for every key given."""


def keys() -> list[str]:
    """1,000 distinct keys, as a session's photos are named."""
    return [f"session-{index // 100:04d}/photo-{index:05d}.jpg" for index in range(BATCH)]


def _sync_batch(sign: Callable[[str], str]) -> Batch:
    async def batch(names: list[str]) -> None:
        for name in names:
            sign(name)

    return batch


def _store_batch(store: ImageStore) -> Batch:
    async def batch(names: list[str]) -> None:
        for name in names:
            await store.presign(name, expires_in=EXPIRES)

    return batch


@dataclass
class Contenders:
    """Each contender's one-URL signer (for the check) and batch signer; notes; the stores."""

    signers: dict[str, tuple[Signer, Batch]]
    notes: list[str]
    stores: list[ImageStore]
    client: Any

    async def aclose(self) -> None:
        """Close the stores and the boto3 client."""
        for store in self.stores:
            await store.aclose()
        self.client.close()


def contenders(server: SeaweedFSServer) -> Contenders:
    """Every contender available here, ready to sign."""
    notes: list[str] = []
    client = server_client(server)
    found: dict[str, tuple[Signer, Batch]] = {}

    def boto3_sign(key: str) -> str:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=EXPIRES
        )

    credentials = Credentials(server.access_key, server.secret_key.reveal())
    auth = S3SigV4QueryAuth(credentials, "s3", REGION, expires=EXPIRES)
    base = f"{server.endpoint_url}/{BUCKET}/"

    def query_auth_sign(key: str) -> str:
        request = AWSRequest(method="GET", url=base + quote(key, safe="/~"))
        auth.add_auth(request)
        return str(request.url)

    for name, sign in ((BOTO3, boto3_sign), (SIGV4_QUERY_AUTH, query_auth_sign)):
        found[name] = (_awaitable(sign), _sync_batch(sign))

    if obstore_installed():
        import obstore  # noqa: PLC0415 - optional

        ob_store = raw_obstore(server, BUCKET)
        expiry = timedelta(seconds=EXPIRES)

        def obstore_sign(key: str) -> str:
            return str(obstore.sign(ob_store, "GET", key, expiry))

        async def obstore_batch(names: list[str]) -> None:
            obstore.sign(ob_store, "GET", names, expiry)

        found[OBSTORE_SIGN] = (_awaitable(obstore_sign), _sync_batch(obstore_sign))
        found[OBSTORE_BATCH] = (_awaitable(obstore_sign), obstore_batch)
    else:
        notes.append("obstore left out: it is not installed")

    store = S3ImageStore(BUCKET, config=server.s3_config())
    resilient = ResilientImageStore(S3ImageStore(BUCKET, config=server.s3_config()))
    stores: list[tuple[str, ImageStore]] = [(STORE, store), (RESILIENT, resilient)]
    adapter, note = usable_obstore_adapter(server)
    notes.append(note)
    if adapter is not None:
        stores.append((ADAPTER, build_obstore_adapter(adapter, BUCKET, server.s3_config())))
    for name, each in stores:
        found[name] = (_store_signer(each), _store_batch(each))
    return Contenders(found, notes, [each for _, each in stores], client)


def _awaitable(sign: Callable[[str], str]) -> Signer:
    async def signer(key: str) -> str:
        return sign(key)

    return signer


def _store_signer(store: ImageStore) -> Signer:
    async def signer(key: str) -> str:
        return (await store.presign(key, expires_in=EXPIRES)).url

    return signer


def check(name: str, url: str) -> None:
    """Fetch the probe object through ``url``: the server must accept the signature."""
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        body = response.read()
    if body != PROBE_BODY:
        raise AssertionError(f"{name}: the presigned URL returned other bytes")


async def measure(
    server: SeaweedFSServer, *, rounds: int, seconds: float, seed: int | None
) -> tuple[dict[str, list[float]], list[str], list[str]]:
    """URLs per second of every contender, one value per round; the order; notes."""
    create_buckets(server, [BUCKET])
    client = server_client(server)
    client.put_object(Bucket=BUCKET, Key=PROBE_KEY, Body=PROBE_BODY)
    client.close()
    found = contenders(server)
    try:
        for name, (signer, _) in found.signers.items():
            url = await signer(PROBE_KEY)
            if not url.startswith(server.endpoint_url):
                raise AssertionError(f"{name}: unexpected URL {url}")
            check(name, url)
        log(f"every contender's URL fetched the probe object from {server.endpoint_url}")
        names = keys()
        shuffler = random.Random(seed)
        rates: dict[str, list[float]] = {}
        for round_number in range(1, rounds + 1):
            order = list(found.signers)
            shuffler.shuffle(order)
            for name in order:
                batch = found.signers[name][1]
                await batch(names)  # warm: caches, the signing key of the day
                count, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < seconds:
                    await batch(names)
                    count += len(names)
                rates.setdefault(name, []).append(count / elapsed)
                log(f"round {round_number}/{rounds} {name:<42} {count / elapsed:10,.0f} URLs/s")
    finally:
        await found.aclose()
    return rates, list(found.signers), found.notes


def report(
    rates: dict[str, list[float]],
    order: list[str],
    notes: list[str],
    *,
    rounds: int,
    seconds: float,
) -> str:
    """The markdown section: one row per contender."""
    baseline = Summary.of(rates[BOTO3]).median
    rows = []
    for name in order:
        summary = Summary.of(rates[name])
        rows.append(
            [
                name,
                number(summary.median),
                spread(summary),
                f"{1e6 / summary.median:.1f}",
                ratio(summary.median, baseline),
            ]
        )
    headers = ["contender", "URLs/s (median)", "min-max", "µs per URL", "vs raw boto3"]
    notes_text = "".join(f"- {note}\n" for note in notes)
    return (
        "## Presigned GET URLs per second (one thread)\n\n"
        f"{markdown_table(headers, rows, right=4)}\n\n"
        f"Median over {rounds} interleaved round(s) of {seconds:g} s each, min-max across "
        f"rounds; one thread, {BATCH:,} distinct keys signed in turn, {EXPIRES} s expiry. "
        "The stores are awaited one URL at a time, through the public `presign` (key and "
        "expiry checks included); boto3 and botocore sign with a client's credentials, "
        "botocore's `S3SigV4QueryAuth.add_auth` on a ready `AWSRequest`. Before timing, "
        "every contender's URL fetched an object from the SeaweedFS server (signatures "
        "checked), so every URL counted here works.\n\n"
        f"{notes_text}"
    )


def targets(rates: dict[str, list[float]]) -> list[Target]:
    """The presigning target: >= 100,000 GET URLs/s from ``S3ImageStore.presign``."""
    summary = Summary.of(rates[STORE])
    return [
        Target(
            name="Presigned GET URLs/s, one thread, `S3ImageStore.presign`",
            goal=f">= {number(TARGET)}/s",
            measured=f"{number(summary.median)}/s (min-max {spread(summary)})",
            met=summary.median >= TARGET,
        )
    ]


def run(
    *,
    rounds: int,
    seconds: float,
    seed: int | None = None,
    server: SeaweedFSServer | None = None,
) -> Section:
    """Measure (on ``server``, or a fresh one) and return the markdown section."""

    def measured(target: SeaweedFSServer) -> Section:
        rates, order, notes = asyncio.run(
            measure(target, rounds=rounds, seconds=seconds, seed=seed)
        )
        markdown = report(rates, order, notes, rounds=rounds, seconds=seconds)
        return Section(SECTION, markdown, targets(rates))

    if server is not None:
        return measured(server)
    with seaweedfs() as fresh:
        return measured(fresh)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """This benchmark's options (``prefix`` disambiguates them in run_all)."""
    parser.add_argument(f"--{prefix}rounds", type=int, help="rounds (default 7, quick 2)")
    parser.add_argument(
        f"--{prefix}seconds", type=float, help="seconds per contender and round (1, quick 0.2)"
    )


def options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of :func:`run` from parsed ``args``."""
    return {
        "rounds": option(args, prefix, "rounds", DEFAULTS["rounds"], QUICK["rounds"]),
        "seconds": option(args, prefix, "seconds", DEFAULTS["seconds"], QUICK["seconds"]),
        "seed": args.seed,
    }


if __name__ == "__main__":
    standalone(sys.modules[__name__])
