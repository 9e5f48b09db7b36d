"""The image service: the seed card's operations, through the ports only.

Uploads write the record (``uploading``), then the objects, then mark the
record ``ready``. Deletes mark the record (and its visualizations) ``deleting``
(hidden at once), delete the objects, then remove the rows. Any step can fail
or the process can die between two steps: :meth:`ImageService.reconcile`
finishes the job, so that in the end no object exists without a ready row
and no ready row without its objects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta

from demeter_storage.domain.errors import (
    ImageNotFound,
    ValidationError,
)
from demeter_storage.domain.keys import (
    original_key,
    visualization_key,
)
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.objects import (
    ObjectInfo,
    utc_now,
)
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState, parse_image_id
from demeter_storage.ports import ImageStore, MetadataRepository, ThumbnailMaker
from demeter_storage.ports.streams import DEFAULT_CHUNK_SIZE, PutData
from demeter_storage.service.audit import AuditReport, Audits, OrphanSweep
from demeter_storage.service.config import (
    MAX_EXPIRY_HOURS,
    MAX_UPLOAD_BYTES,
    MIN_EXPIRY_HOURS,
    ServiceConfig,
    validate_expiry_hours,
)
from demeter_storage.service.direct_uploads import DirectUploads
from demeter_storage.service.maintenance import Maintenance, ReconcileReport
from demeter_storage.service.ownership import Ownership
from demeter_storage.service.reads import Reads
from demeter_storage.service.schemas import DirectUpload, ImagePage, ImageResponse, UploadRequest
from demeter_storage.service.uploads import Uploads

__all__ = [
    "MAX_EXPIRY_HOURS",
    "MAX_UPLOAD_BYTES",
    "MIN_EXPIRY_HOURS",
    "Checkpoint",
    "ImageService",
    "S3ImageService",
    "ServiceConfig",
    "validate_expiry_hours",
]

logger = logging.getLogger(__name__)

Checkpoint = Callable[[str], Awaitable[None]]
"""Called after each named step of an upload or delete (tests inject failures here)."""


class ImageService:
    """Originals, visualizations and their records.

    Args:
        originals: the store of original photos (bucket ``demeter-photos-original``).
        visualizations: the store of ML outputs (bucket ``demeter-photos-viz``).
        metadata: the records.
        config: limits and timings.
        thumbnails: makes thumbnails of originals; None disables them.
        clock: returns the current time; injectable for tests.
        checkpoint: awaited after each named step (tests inject failures there).
        sleep: waits before looking again at a key whose previous image is being
            removed; injectable for tests.
    """

    def __init__(
        self,
        *,
        originals: ImageStore,
        visualizations: ImageStore,
        metadata: MetadataRepository,
        config: ServiceConfig | None = None,
        thumbnails: ThumbnailMaker | None = None,
        clock: Callable[[], datetime] = utc_now,
        checkpoint: Checkpoint | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if originals.name == visualizations.name:
            raise ValidationError("originals and visualizations need two different buckets")
        self.originals = originals
        self.visualizations = visualizations
        self.metadata = metadata
        self.config = config or ServiceConfig()
        self.thumbnails = thumbnails
        self._clock = clock
        self._checkpoint = checkpoint
        self.maintenance = Maintenance(
            stores={originals.name: originals, visualizations.name: visualizations},
            metadata=metadata,
            config=self.config,
            clock=clock,
        )
        self.audits = Audits(
            stores={originals.name: originals, visualizations.name: visualizations},
            metadata=metadata,
            clock=clock,
        )
        self.ownership = Ownership(metadata=metadata, config=self.config, clock=clock, sleep=sleep)
        self.uploads = Uploads(
            metadata=metadata,
            ownership=self.ownership,
            maintenance=self.maintenance,
            config=self.config,
            thumbnails=thumbnails,
            clock=clock,
            step=self._step,
        )
        self.reads = Reads(metadata)
        self.direct_uploads = DirectUploads(
            store=originals,
            metadata=metadata,
            ownership=self.ownership,
            maintenance=self.maintenance,
            config=self.config,
            thumbnails=thumbnails,
            clock=clock,
        )

    def __repr__(self) -> str:
        return (
            f"ImageService(originals={self.originals!r}, visualizations={self.visualizations!r}, "
            f"metadata={self.metadata!r})"
        )

    async def aclose(self) -> None:
        """Close the stores, the repository and the thumbnail maker."""
        await self.originals.aclose()
        await self.visualizations.aclose()
        await self.metadata.aclose()
        if self.thumbnails is not None:
            await self.thumbnails.aclose()

    def now(self) -> datetime:
        """The service's current time (its injected clock)."""
        return self._clock()

    async def _step(self, name: str) -> None:
        if self._checkpoint is not None:
            await self._checkpoint(name)

    def store_for(self, bucket: str | None) -> ImageStore:
        """The store of ``bucket`` (the originals' when None).

        Raises:
            ValidationError: an unknown bucket.
        """
        if bucket is None or bucket == self.originals.name:
            return self.originals
        if bucket == self.visualizations.name:
            return self.visualizations
        raise ValidationError(
            f"unknown bucket {bucket!r}; use {self.originals.name!r} or "
            f"{self.visualizations.name!r}"
        )

    # Uploads

    async def upload_original(
        self, file_bytes: PutData, session_id: str, upload_request: UploadRequest
    ) -> ImageResponse:
        """Store an original photo under ``{session_id}/{filename}``.

        Args:
            file_bytes: the photo: bytes, a binary file, or an async iterable of
                bytes (streamed, never held whole in memory).
            session_id: the field session.
            upload_request: filename, declared content type and size, metadata,
                and an optional idempotency key.

        A retry after a failed or interrupted attempt (a crash, a dropped
        connection) succeeds at once: it takes the unfinished upload over. With
        an ``idempotency_key`` used before in the session, the same bytes return
        the image stored then.

        Returns:
            The stored image, with a presigned URL.

        Raises:
            ValidationError: bad names, empty or oversized data, bytes that are
                not an image of the declared type (nothing is left behind); an
                idempotency key used before for other bytes.
            ImageAlreadyExists: the session has a ready photo of that name already.
            StorageUnavailable: the store or database is down (retry later).
        """
        if not isinstance(upload_request, UploadRequest):
            raise TypeError("upload_request must be an UploadRequest")
        key = original_key(session_id, upload_request.filename)
        return await self._respond(
            await self.uploads.upload(
                store=self.originals,
                kind=ImageKind.ORIGINAL,
                key=key,
                data=file_bytes,
                declared_type=upload_request.content_type,
                declared_size=upload_request.size,
                metadata=upload_request.metadata,
                parent_id=None,
                idempotency_key=upload_request.idempotency_key,
            )
        )

    async def upload_visualization(
        self,
        file_bytes: PutData,
        session_id: str,
        filename: str,
        *,
        content_type: str | None = None,
        parent_id: uuid.UUID | str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ImageResponse:
        """Store an image the ML pipeline drew under ``{session_id}/viz_{filename}``.

        Args:
            file_bytes: the image (bytes, a binary file or an async iterable).
            session_id: the field session.
            filename: its name.
            content_type: its type; taken from its bytes when None.
            parent_id: the original it belongs to, so that it is deleted with it.
            metadata: user metadata.

        Raises:
            ValidationError: bad names or data, or an unknown parent.
        """
        key = visualization_key(session_id, filename)
        parent = None if parent_id is None else parse_image_id(parent_id)
        if parent is not None:
            record = await self.metadata.get(parent)
            if (
                record is None
                or record.state is not ImageState.READY
                or record.kind is not ImageKind.ORIGINAL
            ):
                raise ValidationError(f"parent_id {parent} is not a ready original image")
        return await self._respond(
            await self.uploads.upload(
                store=self.visualizations,
                kind=ImageKind.VISUALIZATION,
                key=key,
                data=file_bytes,
                declared_type=content_type,
                declared_size=None,
                metadata=metadata,
                parent_id=parent,
            )
        )

    async def _respond(self, record: ImageRecord) -> ImageResponse:
        store = self.store_for(record.bucket)
        url = await store.presign(record.key, expires_in=self.config.default_expiry_hours * 3600)
        return ImageResponse.from_record(record, url.url, url.expires_at)

    # Direct uploads: the client posts the bytes to the store itself.

    async def begin_direct_upload(
        self, session_id: str, filename: str, content_type: str, size: int
    ) -> DirectUpload:
        """Start an upload that the client sends straight to the store (an HTML form POST).

        The inputs are checked like :meth:`upload_original`'s; the record is
        written as ``uploading`` (taking over an unfinished upload of the same
        name: the newest attempt wins); the form posts to the upload's landing
        place ``_staging/{image_id}``, never to the image's key, and its policy
        pins that key, the content type and 1 to ``size`` bytes; it expires
        after ``direct_upload_expiry`` (15 minutes by default).

        Raises:
            ValidationError: bad names, a content type that is no accepted image
                type, or a size of 0 or above the maximum (nothing is written).
            ImageAlreadyExists: the session has a ready photo of that name already.
        """
        return await self.direct_uploads.begin(session_id, filename, content_type, size)

    async def complete_direct_upload(self, image_id: uuid.UUID | str) -> ImageResponse:
        """Check what a direct upload delivered and make the image ready.

        What arrived is copied to the image's key ``{session_id}/{filename}``
        (only this step writes it, and only once); the copy must have the
        declared size and content type, and its first bytes must be an image of
        that type. Its SHA-256 and ETag are recorded and its thumbnail made
        (when enabled). A form posted again later never reaches the image.

        Raises:
            ValidationError: the upload failed a check; what arrived is deleted,
                with the record (see :mod:`demeter_storage.service.direct_uploads`).
                Also when nothing has arrived yet (then nothing is deleted:
                post the file and complete again before the form expires).
            UploadAlreadyCompleted: the image is ready already.
            ImageNotFound: no direct upload has this id (or it was removed).
        """
        record = await self.direct_uploads.complete(parse_image_id(image_id))
        return await self._respond(record)

    # Reads

    async def download_original(self, s3_key: str, bucket: str | None = None) -> bytes:
        """Return an object's bytes, checked against the recorded SHA-256.

        Raises:
            ObjectNotFound: no such object, or its image is being uploaded or deleted.
            IntegrityError: the bytes differ from what was uploaded.
            ValidationError: an invalid key or unknown bucket.
        """
        return await self.reads.download(self.store_for(bucket), s3_key)

    async def stream_original(
        self, s3_key: str, bucket: str | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Like :meth:`download_original`, in chunks.

        The SHA-256 is checked at the end: ``IntegrityError`` is raised after
        the last chunk if the bytes differ (discard what was received).
        """
        async for chunk in self.reads.stream(self.store_for(bucket), s3_key, chunk_size):
            yield chunk

    async def generate_presigned_url(
        self, s3_key: str, bucket: str | None = None, expiry_hours: int | None = None
    ) -> str:
        """Return a URL for downloading an object, valid for ``expiry_hours`` (1 to 168).

        Raises:
            ValidationError: an expiry outside 1-168 hours, an invalid key or an unknown bucket.
            ObjectNotFound: the image is being uploaded or deleted.
        """
        hours = validate_expiry_hours(
            self.config.default_expiry_hours if expiry_hours is None else expiry_hours
        )
        return await self.reads.url(self.store_for(bucket), s3_key, hours)

    async def get_image(self, image_id: uuid.UUID | str) -> ImageResponse:
        """Describe a ready image, with a presigned URL.

        Raises:
            ImageNotFound: no ready image has this id.
        """
        identifier = parse_image_id(image_id)
        record = await self.metadata.get(identifier)
        if record is None or record.state is not ImageState.READY:
            raise ImageNotFound(identifier)
        return await self._respond(record)

    async def list_session_images(
        self, session_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> ImagePage:
        """A page of a session's ready images (originals and visualizations).

        Args:
            session_id: the session.
            limit: images per page (1 to 1000).
            cursor: ``next_cursor`` of the previous page.
        """
        return await self.reads.page(session_id, limit, cursor)

    # Deletes

    async def delete_image(self, image_id: uuid.UUID | str) -> bool:
        """Delete an image: its object, thumbnail, linked visualizations and records.

        Returns:
            False when there is no such image.

        Raises:
            StorageUnavailable: the store is down; the image stays hidden
                (``deleting``) and ``reconcile`` finishes the delete later.
        """
        identifier = parse_image_id(image_id)
        records = await self.metadata.mark_deleting(identifier, now=self._clock())
        if not records:
            return False
        await self._step("marked_deleting")
        await self.maintenance.delete_objects(records)
        await self._step("objects_deleted")
        await self.metadata.remove([record.image_id for record in records])
        await self._step("rows_removed")
        return True

    # Lifecycle

    def lifecycle_policy(self) -> LifecyclePolicy:
        """The configured lifecycle policy (the default one unless configured)."""
        return self.config.lifecycle or LifecyclePolicy.default(
            visualization_bucket=self.visualizations.name
        )

    async def apply_lifecycle(self, policy: LifecyclePolicy | None = None) -> None:
        """Apply ``policy`` (the configured one when None) to both buckets."""
        chosen = policy or self.lifecycle_policy()
        for store in (self.originals, self.visualizations):
            await store.apply_lifecycle(chosen)

    async def sweep(
        self, now: datetime | None = None, *, dry_run: bool = False
    ) -> dict[str, list[ObjectInfo]]:
        """Enforce lifecycle expiry on stores without a lifecycle engine, then update the records.

        Returns the objects removed (or, with ``dry_run``, those that would be),
        by bucket. On S3 the server enforces the rules and nothing is removed here;
        :meth:`reconcile` still updates the records of what the server removed.
        """
        moment = now or self._clock()
        removed = {
            store.name: await store.sweep(moment, dry_run=dry_run)
            for store in (self.originals, self.visualizations)
        }
        if not dry_run and any(removed.values()):
            await self.maintenance.reconcile(now=moment)
        return removed

    # Maintenance

    async def reconcile(
        self, *, claimant: str | None = None, now: datetime | None = None
    ) -> ReconcileReport:
        """Finish what crashes, outages and lifecycle rules left (see :class:`Maintenance`)."""
        return await self.maintenance.reconcile(claimant=claimant, now=now)

    async def audit(self) -> AuditReport:
        """Objects without records, records without objects, damaged objects (read-only).

        Safe while uploads and deletes run: what is in flight is never reported.
        """
        return await self.audits.audit()

    async def sweep_orphans(
        self, *, older_than: timedelta | None = None, dry_run: bool = False
    ) -> OrphanSweep:
        """Delete objects that no record owns and that are older than a grace period.

        Each orphan's key is reserved before it is deleted (no upload can claim
        it meanwhile), its owner and age are checked again, and only the
        version seen is deleted: an object an upload is writing is never touched.

        Args:
            older_than: the grace period (``orphan_grace``, 24 hours, by default).
            dry_run: only report what would be deleted.
        """
        grace = self.config.orphan_grace if older_than is None else older_than
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ValidationError(f"older_than must be a timedelta of 0 or more, got {grace!r}")
        return await self.audits.sweep_orphans(older_than=grace, dry_run=dry_run)


S3ImageService = ImageService
"""The seed card's name for :class:`ImageService`."""
