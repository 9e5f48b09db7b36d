"""Presigned GET URLs per second on one thread: the stores against boto3 and obstore.

Every contender's URL must first fetch an object from SeaweedFS (which checks
the signature), so only URLs that work are counted. Then, in each round, every
contender signs URLs for 1,000 distinct keys in turn for ``seconds``, in a
shuffled order. The stores are awaited one URL at a time through ``presign``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final
from unittest import mock

import boto3
import common

from demeter_storage import ImageStore, ResilientImageStore, S3ImageStore
from demeter_storage.testing.seaweedfs import REGION, SeaweedFSServer

BUCKET: Final = "bench-presign"
PROBE_KEY: Final = "session-0000/probe.jpg"
PROBE_BODY: Final = b"presign probe"
EXPIRES: Final = 3600
KEYS: Final = [f"session-{index // 100:04d}/photo-{index:05d}.jpg" for index in range(1000)]
BOTO3: Final = "boto3 `generate_presigned_url`, the store's client"
STORE: Final = "`S3ImageStore.presign`, built from `S3Config`"
DEFAULT_BOTO3: Final = 'boto3 `generate_presigned_url`, default `boto3.client("s3")`'
DEFAULT_STORE: Final = '`S3ImageStore.presign`, built from a default `boto3.client("s3")`'
RESILIENT: Final = "`ResilientImageStore(S3ImageStore).presign`"
OBSTORE_STORE: Final = "`ObstoreImageStore.presign` (as `S3_ENGINE=obstore` builds it)"
OBSTORE_SIGN: Final = "obstore `sign`"
STORES: Final = (STORE, DEFAULT_STORE, RESILIENT, OBSTORE_STORE)
URLS_TARGET: Final = 100_000.0
RATIO_TARGET: Final = 12.0

Sign = Callable[[str], Awaitable[str]]


def default_client(server: SeaweedFSServer) -> Any:
    """``boto3.client("s3")`` with nothing but the environment (as a host app may build it)."""
    environment = {
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key.reveal(),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": server.endpoint_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    with mock.patch.dict(os.environ, environment):
        return boto3.client("s3")


def boto3_signer(client: Any) -> Sign:
    async def sign(key: str) -> str:
        params = {"Bucket": BUCKET, "Key": key}
        return str(client.generate_presigned_url("get_object", Params=params, ExpiresIn=EXPIRES))

    return sign


def store_signer(store: ImageStore) -> Sign:
    async def sign(key: str) -> str:
        return (await store.presign(key, expires_in=EXPIRES)).url

    return sign


async def contenders(server: SeaweedFSServer) -> tuple[dict[str, Sign], list[ImageStore], Any]:
    """Every contender's signer, the stores and the default client (to close afterwards)."""
    import obstore  # noqa: PLC0415 - the optional `fast` extra

    store = S3ImageStore(BUCKET, config=server.s3_config())
    plain = default_client(server)
    stores = [
        store,
        S3ImageStore(BUCKET, client=plain),
        ResilientImageStore(S3ImageStore(BUCKET, config=server.s3_config())),
        await common.built_store(server, BUCKET, engine="obstore"),
    ]
    raw, expiry = common.raw_obstore(server, BUCKET), timedelta(seconds=EXPIRES)

    async def obstore_sign(key: str) -> str:
        return str(obstore.sign(raw, "GET", key, expiry))

    signers = {BOTO3: boto3_signer(store.client), DEFAULT_BOTO3: boto3_signer(plain)}
    signers |= {name: store_signer(each) for name, each in zip(STORES, stores, strict=True)}
    return {**signers, OBSTORE_SIGN: obstore_sign}, stores, plain


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


async def measure(
    server: SeaweedFSServer, rounds: int, seconds: float, seed: int | None
) -> dict[str, list[float]]:
    """URLs per second of every contender, one figure per round."""
    common.create_buckets(server, [BUCKET])
    client = common.server_client(server)
    client.put_object(Bucket=BUCKET, Key=PROBE_KEY, Body=PROBE_BODY)
    client.close()
    signers, stores, plain = await contenders(server)
    try:
        for name, sign in signers.items():  # the server checks every contender's signature
            if await asyncio.to_thread(fetch, await sign(PROBE_KEY)) != PROBE_BODY:
                raise AssertionError(f"{name}: the presigned URL returned other bytes")
        shuffler = random.Random(seed)
        rates: dict[str, list[float]] = {name: [] for name in signers}
        for number in range(1, rounds + 1):
            for name in common.shuffled(list(signers), shuffler):
                sign = signers[name]
                for key in KEYS:  # warm: caches, the signing key of the day
                    await sign(key)
                count, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < seconds:
                    for key in KEYS:
                        await sign(key)
                    count += len(KEYS)
                rates[name].append(count / elapsed)
                common.log(f"presign {number}/{rounds} {name:<66} {count / elapsed:8,.0f}/s")
    finally:
        for store in stores:
            await store.aclose()
        plain.close()
    return rates


def run(*, quick: bool, rounds: int | None, seed: int | None) -> dict[str, Any]:
    """Measure on a fresh server; the section's result."""
    rounds = rounds or (2 if quick else 5)
    seconds = 0.2 if quick else 1.0
    with common.seaweedfs() as server:
        rates = asyncio.run(measure(server, rounds, seconds, seed))
    targets = []
    for store, boto in ((STORE, BOTO3), (DEFAULT_STORE, DEFAULT_BOTO3)):
        urls = common.Summary.of(rates[store])
        targets.append(common.target(f"{store}: URLs/s", ">=", URLS_TARGET, "URLs/s", urls))
        ratio = common.paired(rates[store], rates[boto])
        targets.append(common.target(f"{store} vs {boto}", ">=", RATIO_TARGET, "x", ratio))
    versus = {"boto3": rates[BOTO3], "default boto3": rates[DEFAULT_BOTO3]}
    return {
        "title": "Presigned GET URLs per second, one thread",
        "unit": "URLs/s",
        "parameters": {"rounds": rounds, "seconds per round": seconds, "keys": len(KEYS)},
        "rows": [common.row(name, values, versus=versus) for name, values in rates.items()],
        "targets": targets,
    }
