"""An outage: the S3 server is killed in the middle of 1,000 mixed operations.

A real SeaweedFS server of its own, PostgreSQL metadata, and the circuit
shared through Redis, as ``build_service`` composes them. The test counts the
HTTP requests botocore sends, so "fails fast and sends nothing" is measured,
not assumed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from demeter_storage import StorageError, StorageUnavailable
from demeter_storage.adapters.resilience.breaker import CircuitBreaker
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import build_s3_client
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.testing import ManualClock, no_sleep
from demeter_storage.testing.seaweedfs import SeaweedFSServer, start_seaweedfs
from tests.service.conftest import jpeg

OPERATIONS = 1000
KILL_AT = 400
THRESHOLD = 5
RESET_SECONDS = 60.0


@attrs.define
class Outcome:
    index: int
    action: str
    key: str
    requests: int
    error: BaseException | None = None


class Requests:
    """Counts the HTTP requests a boto3 client sends."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, **_: Any) -> None:
        self.sent += 1


@pytest.fixture
def server(tmp_path: Path) -> Any:
    weed = start_seaweedfs(tmp_path / "weed")
    yield weed
    weed.stop()


def build(
    server: SeaweedFSServer, engine: Any, redis_url: str, clock: ManualClock, circuit: str
) -> tuple[ImageService, Requests, CircuitBreaker]:
    config = server.s3_config(connect_timeout=1.0, read_timeout=5.0)
    client = build_s3_client(config)
    requests = Requests()
    client.meta.events.register("before-send.s3", requests)
    breaker = CircuitBreaker(
        circuit, threshold=THRESHOLD, reset_timeout=RESET_SECONDS, redis_url=redis_url, clock=clock
    )
    stores = [
        ResilientImageStore(
            S3ImageStore(bucket, client=client, config=config, clock=clock.now),
            breaker=breaker,
            retry_attempts=3,
            sleep=no_sleep,
        )
        for bucket in (f"{circuit}-orig", f"{circuit}-viz")
    ]
    service = ImageService(
        originals=stores[0],
        visualizations=stores[1],
        metadata=SqlAlchemyMetadataRepository(engine),
        clock=clock.now,
    )
    return service, requests, breaker


async def run_operations(
    service: ImageService, requests: Requests, server: SeaweedFSServer
) -> tuple[list[Outcome], dict[str, tuple[uuid.UUID, bytes]]]:
    """1,000 uploads, downloads and deletes; the server dies before operation KILL_AT."""
    rng = random.Random(11)
    photos = [jpeg(64, 48, (n * 20, 120, 60)) for n in range(8)]
    stored: dict[str, tuple[uuid.UUID, bytes]] = {}
    outcomes = []
    for index in range(OPERATIONS):
        if index == KILL_AT:
            await asyncio.to_thread(server.kill)
        action = rng.choice(["upload"] * 5 + ["download"] * 3 + ["delete"] * 2)
        if action != "upload" and not stored:
            action = "upload"
        key = f"s/{index}.jpg" if action == "upload" else rng.choice(sorted(stored))
        before = requests.sent
        outcome = Outcome(index, action, key, 0)
        try:
            if action == "upload":
                photo = photos[index % len(photos)]
                image = await service.upload_original(
                    photo, "s", UploadRequest(f"{index}.jpg", "image/jpeg")
                )
                stored[key] = (image.image_id, photo)
            elif action == "download":
                assert await service.download_original(key) == stored[key][1]
            else:
                image_id, _ = stored.pop(key)
                assert await service.delete_image(image_id)
        except StorageError as exc:
            outcome.error = exc
        outcome.requests = requests.sent - before
        outcomes.append(outcome)
    return outcomes, stored


def second_process_sees(redis_url: str, circuit: str) -> str:
    script = textwrap.dedent(
        f"""
        import asyncio
        from demeter_storage.adapters.resilience.breaker import CircuitBreaker

        async def main():
            breaker = CircuitBreaker({circuit!r}, redis_url={redis_url!r})
            status = await breaker.status()
            print(status.state, status.shared)
            await breaker.aclose()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


@pytest.mark.slow
@pytest.mark.seaweedfs
@pytest.mark.postgres
@pytest.mark.redis
async def test_an_outage_fails_fast_then_heals_without_losing_anything(
    server: SeaweedFSServer, postgres_engine: Any, redis_url: str
) -> None:
    circuit = f"outage-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(datetime.now(UTC))
    service, requests, breaker = build(server, postgres_engine, redis_url, clock, circuit)
    for store in (service.originals, service.visualizations):
        await store.inner.ensure_bucket()  # type: ignore[attr-defined]
    try:
        outcomes, stored = await run_operations(service, requests, server)

        before, after = outcomes[:KILL_AT], outcomes[KILL_AT:]
        assert all(o.error is None for o in before)
        assert all(o.error is not None for o in after), "nothing can succeed with the server dead"
        # At most THRESHOLD operations reach the dead server; every later one fails
        # fast with StorageUnavailable and sends nothing.
        reached = [o for o in after if o.requests]
        assert 1 <= len(reached) <= THRESHOLD
        assert reached == after[: len(reached)]
        fast = after[len(reached) :]
        assert len(fast) > 500
        assert all(isinstance(o.error, StorageUnavailable) and o.requests == 0 for o in fast)
        assert all("circuit is open" in str(o.error) for o in fast)
        assert second_process_sees(redis_url, circuit) == "open True"

        await asyncio.to_thread(server.restart)
        with pytest.raises(StorageUnavailable, match="circuit is open"):
            await service.originals.head(next(iter(stored)))  # still open, nothing sent
        clock.advance(RESET_SECONDS + 1)
        sent = requests.sent
        key = next(iter(stored))
        assert await service.download_original(key) == stored[key][1]  # the probe
        assert requests.sent > sent
        assert (await breaker.status()).state == "closed"

        report = await service.reconcile(now=clock.now() + timedelta(hours=2))
        assert report.clean, report.failed
        audit = await service.audit()
        assert (audit.orphan_objects, audit.missing_objects) == ((), ())
        assert (audit.uploading, audit.deleting) == (0, 0)
        # Every upload that returned success (and was not deleted) reads back whole.
        for key, (image_id, photo) in stored.items():
            assert await service.download_original(key) == photo
            assert (await service.get_image(image_id)).sha256 == hashlib.sha256(photo).hexdigest()
        # Every failed upload left no object and no row; every failed delete finished.
        gone = {o.key for o in after if o.action in ("upload", "delete")} - set(stored)
        listed = {info.key async for info in service.originals.list()}
        assert not gone & listed
        for o in after:
            if o.action == "upload":
                assert await service.metadata.get_by_key(service.originals.name, o.key) is None
        rows = [r async for r in service.metadata.records()]
        assert {r.key for r in rows} == set(stored)
    finally:
        await service.aclose()
        await breaker.aclose()
