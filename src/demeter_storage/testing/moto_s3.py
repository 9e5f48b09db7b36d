"""An S3 store on moto's in-process S3, for contract tests that need no server.

moto is in the ``test`` extra. Use :func:`moto_s3_store` to run
:class:`~demeter_storage.testing.ImageStoreContract` against the S3 adapter
without a network::

    class TestMyWrappedS3Store(ImageStoreContract):
        keeps_objects_in_memory = True  # moto holds the objects in this process

        @pytest.fixture
        async def store(self):
            with moto_s3_store() as inner:
                yield MyWrapper(inner)
                await inner.aclose()
"""

from __future__ import annotations

import contextlib
import threading
import unittest.mock
from collections.abc import Iterator
from typing import Any, Final

import boto3
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from demeter_storage.adapters.s3.config import MiB, S3Config
from demeter_storage.adapters.s3.store import S3ImageStore

SMALL_PARTS: Final[dict[str, int]] = {
    "multipart_threshold": 5 * MiB,
    "part_size": 5 * MiB,
    "multipart_concurrency": 2,
}
"""Small parts keep a 64 MiB streamed put well under the contract's 32 MiB bound."""


@contextlib.contextmanager
def one_moto_request_at_a_time() -> Iterator[None]:
    """Serialise moto's in-process S3, as a real server keeps each request whole.

    moto is not thread-safe: a PUT that replaces a key closes the replaced key's
    buffer while the PUT that wrote it may still be reading it for its ETag, so
    concurrent PUTs of one key failed with "I/O operation on closed file".
    """
    lock = threading.Lock()
    handle = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return handle(self, request)

    with unittest.mock.patch.object(BotocoreStubber, "process_request", one_at_a_time):
        yield


@contextlib.contextmanager
def moto_s3_store(bucket: str = "contract", **config: Any) -> Iterator[S3ImageStore]:
    """An :class:`S3ImageStore` on a fresh moto S3 holding one empty ``bucket``.

    ``config`` overrides :class:`S3Config` fields (small multipart parts by
    default; the region is us-east-1). The caller closes the store; moto's
    state ends with the block.
    """
    settings: dict[str, Any] = {**SMALL_PARTS, **config, "region": "us-east-1"}
    with mock_aws(), one_moto_request_at_a_time():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        client.close()
        yield S3ImageStore(bucket, config=S3Config(**settings))
