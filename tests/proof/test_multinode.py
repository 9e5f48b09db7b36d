"""Multi-node: the S3 adapter on a real SeaweedFS cluster, and reads that survive a dead server.

The cluster (``tests.support.seaweedfs_cluster``) is a master, two
volume servers with replication ``001``, a filer and an S3 gateway that checks
signatures, all on loopback. The S3 contract suite runs on one cluster; each
kill test gets a cluster of its own, since a cluster with one volume server
left cannot place new ``001`` volumes (so new buckets could not be written).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from demeter_storage import ImageStore
from demeter_storage.adapters.s3.config import MiB
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.errors import StorageError
from demeter_storage.testing import ImageStoreContract
from demeter_storage.testing.fixtures import started_or_skipped
from tests.support.seaweedfs_cluster import (
    VOLUME_SERVERS,
    SeaweedFSCluster,
    start_seaweedfs_cluster,
)

pytestmark = [pytest.mark.seaweedfs, pytest.mark.slow]

# Small parts keep the contract's 64 MiB streamed put well under its 32 MiB bound.
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB, "multipart_concurrency": 2}
OBJECTS = 24
READ_WINDOW = 30.0
"""Seconds the gateway gets to route reads around the dead volume server."""
_bucket_numbers = itertools.count(1)


def run_cluster(data_dir: Path) -> Iterator[SeaweedFSCluster]:
    """Start a cluster (skipping or failing the test if it cannot), yield it, stop it."""
    yield from started_or_skipped(
        lambda: start_seaweedfs_cluster(data_dir), "the SeaweedFS cluster"
    )


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFSCluster]:
    """One cluster for the whole contract suite (each test gets a fresh bucket)."""
    yield from run_cluster(tmp_path_factory.mktemp("seaweedfs-cluster"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SeaweedFSCluster]:
    """A cluster for one test alone (for tests that break it)."""
    yield from run_cluster(tmp_path / "cluster")


class TestS3StoreOnSeaweedFSClusterContract(ImageStoreContract):
    @pytest.fixture
    async def store(self, shared_cluster: SeaweedFSCluster) -> AsyncIterator[ImageStore]:
        store = S3ImageStore(
            f"cluster-contract-{next(_bucket_numbers)}",
            config=shared_cluster.s3_config(**SMALL_PARTS),
        )
        await store.ensure_bucket()
        yield store
        await store.aclose()


def photo(index: int) -> bytes:
    """Random (incompressible) bytes, 1 KiB to about 64 KiB."""
    return os.urandom(1024 + index * 2689)


def assert_replicated_to_both(
    cluster: SeaweedFSCluster, bucket: str, photos: dict[str, bytes]
) -> None:
    """Every chunk of every object is on both volume servers, byte for byte."""
    both = sorted(cluster.volume_url(role).removeprefix("http://") for role in VOLUME_SERVERS)
    assert cluster.data_nodes() == both
    for key, data in photos.items():
        file_ids = cluster.file_ids(bucket, key)
        assert file_ids, f"{key} has no chunk on a volume server (stored inline?)"
        pieces: dict[str, list[bytes]] = {role: [] for role in VOLUME_SERVERS}
        for file_id in file_ids:
            assert cluster.volume_locations(file_id.split(",")[0]) == both
            for role in VOLUME_SERVERS:
                # Volume servers run with -readMode=local: each answers from its own copy.
                pieces[role].append(cluster.read_from_volume_server(role, file_id))
        for role in VOLUME_SERVERS:
            assert b"".join(pieces[role]) == data, f"{key} differs on {role}"


async def read_all_until_whole(
    store: ImageStore, photos: dict[str, bytes], window: float
) -> tuple[float, int]:
    """Read every object until each has come back whole; return (seconds, failed reads)."""
    started = time.monotonic()
    pending = dict(photos)
    failures = 0
    while True:
        for key in list(pending):
            try:
                data = await store.get(key)
            except StorageError:
                failures += 1
                continue
            assert data == pending.pop(key), f"{key} came back different"
        elapsed = time.monotonic() - started
        if not pending:
            return elapsed, failures
        assert elapsed < window, f"still unreadable after {window} s: {sorted(pending)}"
        await asyncio.sleep(0.1)  # a retry window for the gateway, not synchronisation


@pytest.mark.parametrize("victim", VOLUME_SERVERS)
async def test_reads_survive_a_killed_volume_server(
    cluster: SeaweedFSCluster, victim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    survivor = next(role for role in VOLUME_SERVERS if role != victim)
    photos = {f"field-7/photo-{index:02}.jpg": photo(index) for index in range(OBJECTS)}
    async with S3ImageStore("survive-a-kill", config=cluster.s3_config()) as store:
        await store.ensure_bucket()
        for key, data in photos.items():
            await store.put(key, data, content_type="image/jpeg")
        # Nothing is read through the gateway before the kill: no cache can help it.
        assert_replicated_to_both(cluster, "survive-a-kill", photos)

        assert cluster.kill_node(victim) == -signal.SIGKILL
        seconds, failures = await read_all_until_whole(store, photos, READ_WINDOW)

        # Once the master has dropped the dead server, reads still come back whole.
        alone = [cluster.volume_url(survivor).removeprefix("http://")]
        deadline = time.monotonic() + READ_WINDOW
        while cluster.data_nodes() != alone:
            assert time.monotonic() < deadline, "the master never noticed the dead server"
            await asyncio.sleep(0.1)
        for key, data in photos.items():
            assert await store.get(key) == data
    with capsys.disabled():
        print(
            f"\n{victim} killed: all {OBJECTS} objects read back whole "
            f"{seconds:.2f} s later, after {failures} failed reads"
        )
