"""What obstore cannot do, done by the boto3 adapter on the same settings.

obstore has no call to create a bucket, to read or write its lifecycle
configuration, to replace an object's metadata (a copy onto itself), or to
abort a multipart upload it started and was cancelled in. These are rare
operations; an :class:`~demeter_storage.adapters.s3.store.S3ImageStore` built on
first use does them, with the same credentials, endpoint and (no) retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.lifecycle import LifecyclePolicy

logger = logging.getLogger(__name__)


class Boto3Companion:
    """The boto3 store beside an obstore one, built on first use.

    Args:
        bucket: the bucket's name.
        config: the settings the obstore store was built from.
        clock: returns the current time.
    """

    def __init__(self, bucket: str, config: S3Config, clock: Callable[[], datetime]) -> None:
        self._bucket = bucket
        self._config = config
        self._clock = clock
        self._store: S3ImageStore | None = None

    @property
    def store(self) -> S3ImageStore:
        """The boto3 store."""
        if self._store is None:
            self._store = S3ImageStore(self._bucket, config=self._config, clock=self._clock)
        return self._store

    async def aclose(self) -> None:
        """Close the boto3 store, if it was built."""
        if self._store is not None:
            await self._store.aclose()

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return whether it was created."""
        return await self.store.ensure_bucket()

    async def record_sha256(
        self, key: str, etag: str, sha256: str, content_type: str, metadata: dict[str, str]
    ) -> str:
        """Add a multipart object's SHA-256 to its metadata (if it is still ``etag``).

        Returns the object's new ETag (the old one if the copy failed: the object
        is complete, only its recorded SHA-256 is missing).
        """
        return await self.store._record_sha256(key, etag, sha256, content_type, metadata)

    async def abort_uploads(self, key: str, since: datetime) -> None:
        """Abort the multipart uploads of ``key`` started at ``since`` or later.

        For a put that was cancelled: obstore leaves its upload behind. Best
        effort: failures are logged, and the bucket's lifecycle rule for
        incomplete uploads removes what remains.
        """
        client = self.store.client
        try:
            listing = await asyncio.to_thread(
                client.list_multipart_uploads, Bucket=self._bucket, Prefix=key
            )
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == key and upload.get("Initiated", since) >= since:
                    await asyncio.to_thread(
                        client.abort_multipart_upload,
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=upload["UploadId"],
                    )
        except Exception as exc:  # best effort: never hide the cancellation
            logger.warning(
                "could not abort the cancelled upload of %r in %r: %s", key, self._bucket, exc
            )

    async def apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        """Write ``policy`` (already narrowed to the bucket) into the bucket's configuration."""
        await self.store._apply_lifecycle(policy)

    async def get_lifecycle(self) -> LifecyclePolicy:
        """The managed rules of the bucket's lifecycle configuration."""
        return await self.store._get_lifecycle()
