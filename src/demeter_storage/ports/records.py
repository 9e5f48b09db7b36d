"""The records port: :class:`MetadataRepository`, kept apart from object storage.

Database deletes and object deletes never depend on one another: the service
orders them (record first on upload, objects first on delete).
"""

from __future__ import annotations

import abc
import builtins
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

from demeter_storage.domain.records import ImageRecord, ImageState


class MetadataRepository(abc.ABC):
    """Asynchronous storage of :class:`~demeter_storage.domain.records.ImageRecord` rows.

    The contract, which :mod:`demeter_storage.testing` checks for any adapter:

    * ``(bucket, key)`` is unique, and so is ``(session_id, idempotency_key)``
      where the key is set: :meth:`add` raises
      :class:`~demeter_storage.domain.errors.ImageAlreadyExists` for a taken key
      (or a taken id or idempotency key), atomically, even under concurrent adds.
    * :meth:`take_over` replaces an unclaimed ``uploading`` record atomically,
      so that a retried upload can take the place of an interrupted one.
    * State changes are conditional and idempotent: :meth:`mark_ready` only
      moves an ``uploading`` record that no reconciler has claimed;
      :meth:`mark_deleting` works from any state; :meth:`remove` of a missing
      id is fine.
    * :meth:`claim` is atomic: concurrent claimers never get the same row
      (until its claim times out).
    * Reads return records with ``visualization_keys`` filled in.
    """

    @abc.abstractmethod
    async def add(self, record: ImageRecord) -> None:
        """Insert a new record.

        Raises:
            ImageAlreadyExists: its id, key or idempotency key is taken.
            ValidationError: its ``parent_id`` names no record.
        """

    @abc.abstractmethod
    async def take_over(
        self,
        old_id: uuid.UUID,
        record: ImageRecord,
        *,
        now: datetime,
        claim_timeout: timedelta,
        deleting_before: datetime | None = None,
    ) -> bool:
        """Replace the record ``old_id`` by ``record`` in one atomic step.

        Only an ``uploading`` record that no reconciler holds (or whose claim
        is older than ``claim_timeout``) is replaced; with ``deleting_before``,
        also a ``deleting`` record without visualizations last changed before
        that time (a failed upload's undo that could not finish).

        Returns:
            False, changing nothing, when ``old_id`` is no such record (any more).

        Raises:
            ImageAlreadyExists: another record holds ``record``'s key or
                idempotency key (nothing changed).
        """

    @abc.abstractmethod
    async def get_by_idempotency_key(
        self, session_id: str, idempotency_key: str
    ) -> ImageRecord | None:
        """The session's record created with ``idempotency_key``, in any state, or None."""

    @abc.abstractmethod
    async def get(self, image_id: uuid.UUID) -> ImageRecord | None:
        """The record with this id, in any state, or None."""

    @abc.abstractmethod
    async def get_by_key(self, bucket: str, key: str) -> ImageRecord | None:
        """The record owning ``key`` in ``bucket`` (its object or thumbnail), or None."""

    @abc.abstractmethod
    async def mark_ready(
        self,
        image_id: uuid.UUID,
        *,
        size: int,
        sha256: str,
        thumbnail_key: str | None,
        now: datetime,
        etag: str | None = None,
    ) -> ImageRecord | None:
        """Move an ``uploading`` record to ``ready``; None if it is not uploading (any more).

        ``etag`` is the store's ETag of the object, kept for ``audit``.
        """

    @abc.abstractmethod
    async def mark_deleting(
        self, image_id: uuid.UUID, *, now: datetime, from_state: ImageState | None = None
    ) -> builtins.list[ImageRecord]:
        """Mark the record and its visualizations ``deleting``; return them (empty if none).

        With ``from_state``, only a record in that state is marked (atomically;
        an ``uploading`` record has no visualizations): ``[]`` otherwise.
        """

    @abc.abstractmethod
    async def remove(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Delete these records (children before parents); missing ids are ignored."""

    @abc.abstractmethod
    async def list_session(
        self, session_id: str, *, limit: int, after: tuple[str, str] | None = None
    ) -> builtins.list[ImageRecord]:
        """Ready records of a session ordered by ``(bucket, key)``, after that pair."""

    @abc.abstractmethod
    async def claim(
        self,
        *,
        state: ImageState,
        updated_before: datetime,
        now: datetime,
        claimant: str,
        limit: int,
        claim_timeout: timedelta,
        uploads_expired_before: datetime | None = None,
    ) -> builtins.list[ImageRecord]:
        """Atomically claim up to ``limit`` records in ``state`` last updated before a time.

        Records claimed by someone else less than ``claim_timeout`` ago are skipped.
        With ``uploads_expired_before``, ``uploading`` records of direct uploads
        (those with ``upload_expires_at``) are judged by their upload's expiry
        instead: they are claimed once it is earlier than that time, however
        old or recent the record.
        """

    @abc.abstractmethod
    async def expiry_candidates(
        self,
        *,
        bucket: str,
        prefix: str,
        created_before: datetime,
        limit: int,
        after: uuid.UUID | None = None,
    ) -> builtins.list[ImageRecord]:
        """Ready records of ``bucket`` under ``prefix`` created before a time, by id.

        These are the records whose objects a lifecycle rule may have removed.
        """

    @abc.abstractmethod
    async def mark_expired(self, image_id: uuid.UUID, *, now: datetime) -> bool:
        """Move a ``ready`` record to ``expired``; return whether it was ready."""

    @abc.abstractmethod
    async def release(self, image_ids: Sequence[uuid.UUID]) -> None:
        """Give up claims (after a failure), so that another reconciler may retry."""

    @abc.abstractmethod
    def records(self) -> AsyncIterator[ImageRecord]:
        """Every record, in any state (for audits)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the repository's resources. The default does nothing."""
