"""Crash consistency: a real process SIGKILLed at each step of an upload and a delete.

The worker (``crash_worker.py``) stores two photos, then streams a third and
deletes one; it is killed at one named step. Afterwards, with time moved on,
``reconcile()`` runs in this process, and the invariants must hold: no object
without a ready row, no ready row without its objects (every ready photo
reads back with its SHA-256), no upload or delete left half-done, and no
partial or temporary file in the local store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from demeter_storage.adapters.sql.repository import create_engine
from demeter_storage.domain.objects import utc_now
from demeter_storage.domain.records import ImageState
from demeter_storage.testing import SeaweedFSServer
from tests.proof.crash_worker import STEPS, open_service, photos

REPO = Path(__file__).resolve().parents[2]
LATER = timedelta(hours=2)


def run_until_killed(config: dict[str, Any], step: str) -> dict[str, str]:
    """Start the worker, SIGKILL it when it reports ``step``; return the ids it printed."""
    ids: dict[str, str] = {}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.proof.crash_worker", json.dumps(config), step],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as worker:
        try:
            assert worker.stdout is not None
            for line in worker.stdout:
                if line.startswith("READY "):
                    ids = json.loads(line.removeprefix("READY "))
                elif line.strip() == f"AT {step}":
                    os.killpg(worker.pid, signal.SIGKILL)
                    break
            worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        errors = worker.stderr.read() if worker.stderr else ""
    assert worker.returncode == -signal.SIGKILL, f"never reached {step!r}: {errors[-2000:]}"
    assert set(ids) == {"keep.jpg", "victim.jpg"}
    return ids


LEFT_BEHIND = {
    # What each kill leaves for reconcile: (uploading rows, deleting rows).
    "record_written": (1, 0),
    "mid_put": (1, 0),
    "object_written": (1, 0),
    "thumbnail_written": (1, 0),
    "marked_ready": (0, 0),
    "marked_deleting": (0, 1),
    "objects_deleted": (0, 1),
    "rows_removed": (0, 0),
}


async def check_invariants(config: dict[str, Any], ids: dict[str, str], step: str) -> None:
    service = await open_service(config, clock=lambda: utc_now() + LATER)
    try:
        before = await service.audit()
        assert (before.uploading, before.deleting) == LEFT_BEHIND[step]
        report = await service.reconcile()
        assert report.clean, report.failed
        audit = await service.audit()
        assert audit.orphan_objects == ()
        assert audit.missing_objects == ()
        assert (audit.uploading, audit.deleting) == (0, 0)
        rows = [record async for record in service.metadata.records()]
        assert all(row.state is ImageState.READY for row in rows)
        data = photos()
        ready = {row.filename for row in rows}
        assert "keep.jpg" in ready  # stored before the crash: must survive it
        for row in rows:
            stored = await service.download_original(row.key)
            assert (
                hashlib.sha256(stored).hexdigest() == hashlib.sha256(data[row.filename]).hexdigest()
            )
            assert row.sha256 == hashlib.sha256(stored).hexdigest()
        if "victim.jpg" in ready:
            assert (
                str(next(r.image_id for r in rows if r.filename == "victim.jpg"))
                == ids["victim.jpg"]
            )
    finally:
        await service.aclose()


def leftover_files(root: Path) -> list[str]:
    """Temporary files, and sidecars without their object, under the local store's root."""
    found = []
    for path in root.rglob(".*"):
        if path.is_file() and path.name.startswith(".tmp-"):
            found.append(str(path.relative_to(root)))
        elif path.is_file() and path.name.endswith(".meta.json"):
            target = path.with_name(path.name[1:].removesuffix(".meta.json"))
            if not target.exists():
                found.append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_a_local_store_on_sqlite_survives_a_kill_at(step: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    config = {"kind": "local", "root": str(root), "database_url": f"sqlite+aiosqlite:///{root}.db"}
    ids = run_until_killed(config, step)
    if step == "mid_put":
        assert leftover_files(root), "the kill mid-write left no temporary file to clean"
    asyncio.run(check_invariants(config, ids, step))
    assert leftover_files(root) == []


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for the worker and this test, dropped afterwards."""
    schema = f"demeter_crash_{uuid.uuid4().hex[:12]}"

    async def execute(statement: str) -> None:
        admin = create_engine(postgres_url)
        async with admin.begin() as connection:
            await connection.execute(sa.text(statement))
        await admin.dispose()

    asyncio.run(execute(f'CREATE SCHEMA "{schema}"'))
    yield schema
    asyncio.run(execute(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def s3_buckets(seaweedfs_server: SeaweedFSServer) -> str:
    """A fresh pair of buckets; returns their suffix."""
    suffix = uuid.uuid4().hex[:8]
    config = {"kind": "s3", **_s3(seaweedfs_server), "suffix": suffix}

    async def create() -> None:
        service = await open_service({**config, "database_url": "sqlite+aiosqlite://"})
        for store in (service.originals, service.visualizations):
            await store.ensure_bucket()  # type: ignore[attr-defined]
        await service.aclose()

    asyncio.run(create())
    return suffix


def _s3(server: SeaweedFSServer) -> dict[str, str]:
    return {
        "endpoint": server.endpoint_url,
        "access_key": server.access_key,
        "secret_key": server.secret_key.reveal(),
    }


@pytest.mark.slow
@pytest.mark.seaweedfs
@pytest.mark.postgres
@pytest.mark.parametrize("step", STEPS)
def test_s3_on_postgres_survives_a_kill_at(
    step: str,
    seaweedfs_server: SeaweedFSServer,
    s3_buckets: str,
    postgres_url: str,
    postgres_schema: str,
) -> None:
    config = {
        "kind": "s3",
        **_s3(seaweedfs_server),
        "suffix": s3_buckets,
        "database_url": postgres_url,
        "schema": postgres_schema,
    }
    ids = run_until_killed(config, step)
    asyncio.run(check_invariants(config, ids, step))
