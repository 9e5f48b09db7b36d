"""Test support for demeter-storage and for the apps that use it.

* :class:`ImageStoreContract`: the tests every ``ImageStore`` must pass; subclass it.
* :class:`ServerCheckedUrlContract`: a store's presigned URLs and upload forms,
  sent over HTTP to a real server (fed by a :class:`SignedUrlHarness`).
* :func:`image_store_state_machine`: a hypothesis state machine comparing a store
  with the in-memory model.
* :class:`MetadataRepositoryContract`: the tests every ``MetadataRepository`` must pass.
* :func:`metadata_state_machine`: a hypothesis state machine comparing a
  repository with the in-memory model.
* :func:`seaweedfs_server`: a session-scoped pytest fixture running a real S3
  server (SeaweedFS, with authentication) on free loopback ports.
* :func:`postgres_engine`, :func:`redis_url`: real PostgreSQL and Redis for
  tests; they skip with a reason when absent, or fail when
  ``DEMETER_REQUIRE_SERVICES=1``.

Needs the ``test`` extra (pytest, pytest-asyncio, hypothesis, httpx, moto).
"""

from demeter_storage.testing.clocks import ManualClock, no_sleep
from demeter_storage.testing.contract import ImageStoreContract
from demeter_storage.testing.contract_presign import ServerCheckedUrlContract, SignedUrlHarness
from demeter_storage.testing.fixtures import (
    postgres_engine,
    postgres_url,
    redis_url,
    seaweedfs_server,
    skip_or_fail,
)
from demeter_storage.testing.metadata_contract import MetadataRepositoryContract
from demeter_storage.testing.metadata_state_machine import metadata_state_machine
from demeter_storage.testing.seaweedfs import SeaweedFSServer, running_seaweedfs, start_seaweedfs
from demeter_storage.testing.state_machine import image_store_state_machine

__all__ = [
    "ImageStoreContract",
    "ManualClock",
    "MetadataRepositoryContract",
    "SeaweedFSServer",
    "ServerCheckedUrlContract",
    "SignedUrlHarness",
    "image_store_state_machine",
    "metadata_state_machine",
    "no_sleep",
    "postgres_engine",
    "postgres_url",
    "redis_url",
    "running_seaweedfs",
    "seaweedfs_server",
    "skip_or_fail",
    "start_seaweedfs",
]
