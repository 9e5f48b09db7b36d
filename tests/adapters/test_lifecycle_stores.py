"""Lifecycle on every store: applied and read back; enforced by sweep() off S3."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from demeter_storage import (
    ConfigurationError,
    ImageStore,
    InMemoryImageStore,
    LocalImageStore,
    ValidationError,
)
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.testing import ManualClock, SeaweedFSServer
from tests.adapters.s3.faults import Requests

POLICY = LifecyclePolicy(
    rules=[
        LifecycleRule(id="viz", prefix="s1/", expire_after_days=30),
        LifecycleRule(id="abort", abort_incomplete_uploads_after_days=1),
        LifecycleRule(
            id="other-bucket", bucket="somewhere-else", prefix="archive/", expire_after_days=5
        ),
    ]
)
APPLIED = LifecyclePolicy(rules=[r for r in POLICY.rules if r.bucket is None])


@pytest.fixture(params=["memory", "local"])
def local_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _store(kind: str, root: Path, clock: ManualClock) -> ImageStore:
    if kind == "memory":
        return InMemoryImageStore("viz", clock=clock.now)
    return LocalImageStore(root / "viz", clock=clock.now, durable=False)


async def test_sweep_removes_what_has_expired(local_kind: str, tmp_path: Path) -> None:
    clock = ManualClock()
    store = _store(local_kind, tmp_path, clock)
    await store.apply_lifecycle(POLICY)
    assert await store.get_lifecycle() == APPLIED
    await store.put("s1/old.png", b"old", content_type="image/png")
    await store.put("s2/old.png", b"kept: other prefix", content_type="image/png")
    clock.advance(timedelta(days=20).total_seconds())
    await store.put("s1/new.png", b"new", content_type="image/png")
    clock.advance(timedelta(days=10).total_seconds())
    assert await store.sweep(clock.now() - timedelta(days=1)) == []
    would = await store.sweep(clock.now(), dry_run=True)
    assert [info.key for info in would] == ["s1/old.png"]
    assert await store.exists("s1/old.png")
    removed = await store.sweep(clock.now())
    assert [info.key for info in removed] == ["s1/old.png"]
    assert [i.key async for i in store.list()] == ["s1/new.png", "s2/old.png"]
    clock.advance(timedelta(days=20).total_seconds())
    assert [info.key for info in await store.sweep(clock.now())] == ["s1/new.png"]


async def test_without_expiry_rules_sweep_removes_nothing(local_kind: str, tmp_path: Path) -> None:
    clock = ManualClock()
    store = _store(local_kind, tmp_path, clock)
    await store.put("s1/a.png", b"a", content_type="image/png")
    clock.advance(10**8)
    assert await store.sweep(clock.now()) == []
    await store.apply_lifecycle(
        LifecyclePolicy(rules=[LifecycleRule(id="a", abort_incomplete_uploads_after_days=1)])
    )
    assert await store.sweep(clock.now()) == []
    assert await store.exists("s1/a.png")


async def test_s3_only_rules_are_ignored_with_a_warning(
    local_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(local_kind, tmp_path, ManualClock())
    archive = LifecyclePolicy(
        rules=[
            LifecycleRule(
                id="archive", transition_after_days=30, transition_storage_class="GLACIER"
            )
        ]
    )
    with caplog.at_level(logging.WARNING):
        await store.apply_lifecycle(archive)
    assert "only on S3" in caplog.text
    assert await store.get_lifecycle() == archive


async def test_the_local_policy_is_shared_by_every_process_on_the_root(tmp_path: Path) -> None:
    await LocalImageStore(tmp_path / "viz").apply_lifecycle(POLICY)
    assert await LocalImageStore(tmp_path / "viz").get_lifecycle() == APPLIED
    (tmp_path / "viz" / ".demeter" / "lifecycle.json").write_text("{broken")
    with pytest.raises(ConfigurationError, match="apply the lifecycle policy again"):
        await LocalImageStore(tmp_path / "viz").get_lifecycle()


async def test_the_local_sweep_reclaims_abandoned_temporary_files(tmp_path: Path) -> None:
    clock = ManualClock()
    store = LocalImageStore(tmp_path / "viz", clock=clock.now)
    await store.apply_lifecycle(POLICY)
    await store.put("s9/a.png", b"a", content_type="image/png")
    leftover = tmp_path / "viz" / "s9" / ".tmp-crashed-write"
    leftover.write_bytes(b"partial")
    old = (clock.now() - timedelta(days=2)).timestamp()
    os.utime(leftover, (old, old))
    assert await store.sweep(clock.now(), dry_run=True) == []
    assert leftover.exists()
    await store.sweep(clock.now())
    assert not leftover.exists()
    assert await store.exists("s9/a.png")


async def test_arguments_are_checked(tmp_path: Path) -> None:
    store = InMemoryImageStore()
    with pytest.raises(TypeError):
        await store.apply_lifecycle({"rules": []})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timezone"):
        await store.sweep(datetime(2026, 1, 1))


# S3: the bucket's own configuration


@pytest.fixture
def moto_s3() -> Iterator[S3ImageStore]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="lifecycle")
        yield S3ImageStore("lifecycle", config=S3Config(region="us-east-1"))


@pytest.fixture
async def seaweed_s3(seaweedfs_server: SeaweedFSServer) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore(f"lc-{uuid.uuid4().hex[:10]}", config=seaweedfs_server.s3_config())
    await store.ensure_bucket()
    yield store
    await store.aclose()


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_store(request: pytest.FixtureRequest) -> S3ImageStore:
    fixture = "moto_s3" if request.param == "moto" else "seaweed_s3"
    store: S3ImageStore = request.getfixturevalue(fixture)
    return store


FOREIGN = {
    "ID": "ops-archive-logs",
    "Status": "Enabled",
    "Filter": {"Prefix": "logs/"},
    "Expiration": {"Days": 400},
}


def _bucket_rules(store: S3ImageStore) -> list[dict[str, object]]:
    return store.client.get_bucket_lifecycle_configuration(Bucket=store.name)["Rules"]


async def test_s3_writes_the_policy_into_the_bucket_once(s3_store: S3ImageStore) -> None:
    requests = Requests(s3_store.client)
    await s3_store.apply_lifecycle(POLICY)
    rules = {rule["ID"]: rule for rule in _bucket_rules(s3_store)}
    assert set(rules) == {"demeter:viz", "demeter:abort"}
    assert rules["demeter:viz"]["Expiration"] == {"Days": 30}
    assert rules["demeter:abort"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert await s3_store.get_lifecycle() == LifecyclePolicy(
        rules=sorted(APPLIED.rules, key=lambda r: r.id)
    )
    await s3_store.apply_lifecycle(POLICY)
    assert requests.sent["PutBucketLifecycleConfiguration"] == 1
    assert await s3_store.sweep() == []


async def test_s3_keeps_rules_it_does_not_manage(s3_store: S3ImageStore) -> None:
    s3_store.client.put_bucket_lifecycle_configuration(
        Bucket=s3_store.name, LifecycleConfiguration={"Rules": [FOREIGN]}
    )
    assert await s3_store.get_lifecycle() == LifecyclePolicy()
    await s3_store.apply_lifecycle(POLICY)
    assert {rule["ID"] for rule in _bucket_rules(s3_store)} == {
        "ops-archive-logs",
        "demeter:viz",
        "demeter:abort",
    }
    smaller = LifecyclePolicy(rules=[LifecycleRule(id="viz", prefix="s1/", expire_after_days=30)])
    await s3_store.apply_lifecycle(smaller)
    assert {rule["ID"] for rule in _bucket_rules(s3_store)} == {"ops-archive-logs", "demeter:viz"}
    await s3_store.apply_lifecycle(LifecyclePolicy())
    assert [rule["ID"] for rule in _bucket_rules(s3_store)] == ["ops-archive-logs"]


async def test_s3_removes_the_configuration_when_nothing_is_left(moto_s3: S3ImageStore) -> None:
    await moto_s3.apply_lifecycle(POLICY)
    await moto_s3.apply_lifecycle(LifecyclePolicy())
    assert await moto_s3.get_lifecycle() == LifecyclePolicy()
    with pytest.raises(moto_s3.client.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        moto_s3.client.get_bucket_lifecycle_configuration(Bucket=moto_s3.name)


async def test_s3_transitions_and_noncurrent_versions_round_trip(moto_s3: S3ImageStore) -> None:
    policy = LifecyclePolicy(
        rules=[
            LifecycleRule(
                id="archive",
                prefix="s1/",
                transition_after_days=30,
                transition_storage_class="GLACIER_IR",
                expire_after_days=365,
                noncurrent_expire_after_days=7,
            )
        ]
    )
    await moto_s3.apply_lifecycle(policy)
    assert await moto_s3.get_lifecycle() == policy


async def test_the_resilient_store_passes_lifecycle_through(moto_s3: S3ImageStore) -> None:
    store = ResilientImageStore(moto_s3)
    await store.apply_lifecycle(POLICY)
    assert len((await store.get_lifecycle()).rules) == 2
    assert await store.sweep() == []
