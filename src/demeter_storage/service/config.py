"""How the image service behaves: :class:`ServiceConfig` and its limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import attrs

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.objects import validate_expires_in

MAX_UPLOAD_BYTES = 500 * 1024 * 1024
MIN_EXPIRY_HOURS = 1
MAX_EXPIRY_HOURS = 168


def validate_expiry_hours(value: object) -> int:
    """Return ``value`` if it is a whole number of hours from 1 to 168 (7 days).

    Raises:
        ValidationError: anything else (the seed card's rule).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"expiry_hours must be a whole number of hours from 1 to 168, got {value!r}"
        )
    if not MIN_EXPIRY_HOURS <= value <= MAX_EXPIRY_HOURS:
        raise ValidationError(
            f"expiry_hours must be from 1 to 168 (7 days), got {value}; choose a shorter expiry"
        )
    return value


@attrs.frozen
class ServiceConfig:
    """How the service behaves.

    Attributes:
        max_upload_bytes: the largest upload accepted (500 MiB by default).
        default_expiry_hours: lifetime of presigned URLs when none is given.
        stale_upload_after: an ``uploading`` record older than this is taken
            as abandoned by ``reconcile``.
        direct_upload_expiry: how long a direct upload's form stays valid
            (1 s to 7 days; 15 minutes by default).
        direct_upload_grace: how long after its form expired a direct upload
            may still be completed; ``reconcile`` removes it after that.
        deleting_grace: a ``deleting`` record older than this is completed by
            ``reconcile`` (a delete in progress normally finishes sooner).
        claim_timeout: a reconciler's claim on a record lapses after this.
        lifecycle: the policy ``apply_lifecycle`` applies; None for the default
            (visualizations expire after 90 days, unfinished uploads are aborted
            after 1 day, originals are kept).
        expired_records: what ``reconcile`` does with records whose objects a
            lifecycle rule removed: ``"mark"`` them expired (a tombstone) or
            ``"remove"`` them (with their visualizations).
        orphan_grace: ``sweep_orphans`` only deletes objects without a record
            that are older than this (24 hours by default).
    """

    max_upload_bytes: int = MAX_UPLOAD_BYTES
    default_expiry_hours: int = attrs.field(
        default=24, validator=lambda _i, _a, v: validate_expiry_hours(v)
    )
    stale_upload_after: timedelta = timedelta(hours=1)
    direct_upload_expiry: timedelta = attrs.field(
        default=timedelta(minutes=15), validator=lambda _i, _a, v: validate_expires_in(v)
    )
    direct_upload_grace: timedelta = timedelta(minutes=5)
    deleting_grace: timedelta = timedelta(seconds=30)
    claim_timeout: timedelta = timedelta(minutes=10)
    lifecycle: LifecyclePolicy | None = None
    expired_records: Literal["mark", "remove"] = "mark"
    orphan_grace: timedelta = timedelta(hours=24)
