"""Audit tells the truth while the service is busy; orphans get a safe sweep.

An audit reads the records, then lists the objects: the hooks below run a
whole upload or delete in between, the worst moment for it. Nothing in flight
may be reported as an orphan or as missing; a ready image whose object was
replaced behind the service's back is reported as damaged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.ports import ImageStore
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg
from tests.service.faults import FaultyStore


class ListingHook(FaultyStore):
    """Runs ``before_list`` (once) when a listing starts: between an audit's two reads."""

    def __init__(self, inner: ImageStore) -> None:
        super().__init__(inner)
        self.before_list: Callable[[], Awaitable[object]] | None = None

    def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async def listing() -> AsyncIterator[ObjectInfo]:
            hook, self.before_list = self.before_list, None
            if hook is not None:
                await hook()
            async for info in self.inner.list(prefix):
                yield info

        return listing()


def _request(name: str = "a.jpg") -> UploadRequest:
    return UploadRequest(name, "image/jpeg")


async def _hooked(make_stack: StackFactory) -> tuple[Stack, ListingHook]:
    stack = await make_stack(wrap=ListingHook)
    assert isinstance(stack.originals, ListingHook)
    return stack, stack.originals


async def test_an_upload_between_records_and_listing_is_no_orphan(
    make_stack: StackFactory,
) -> None:
    stack, originals = await _hooked(make_stack)
    originals.before_list = lambda: stack.service.upload_original(jpeg(), "s", _request())
    report = await stack.service.audit()
    assert report.orphan_objects == ()
    assert report.consistent


async def test_a_delete_between_records_and_listing_is_not_missing(
    make_stack: StackFactory,
) -> None:
    stack, originals = await _hooked(make_stack)
    image = await stack.service.upload_original(jpeg(), "s", _request())
    originals.before_list = lambda: stack.service.delete_image(image.image_id)
    report = await stack.service.audit()
    assert report.missing_objects == ()
    assert report.consistent


async def test_an_audit_at_every_step_of_an_upload_and_a_delete_finds_nothing(
    make_stack: StackFactory,
) -> None:
    reports = []
    stack: Stack | None = None

    async def audit_here(step: str) -> None:
        assert stack is not None
        reports.append((step, await stack.service.audit()))

    stack = await make_stack(checkpoint=audit_here)
    image = await stack.service.upload_original(jpeg(), "s", _request())
    assert await stack.service.delete_image(image.image_id)
    steps = [step for step, _ in reports]
    assert steps[0] == "record_written"
    assert "objects_deleted" in steps
    for step, report in reports:
        assert report.orphan_objects == (), step
        assert report.missing_objects == (), step


async def test_a_replaced_object_is_reported_as_damaged(stack: Stack) -> None:
    image = await stack.service.upload_original(jpeg(), "s", _request())
    other = jpeg(color=(255, 255, 0))
    # Behind the service's back: another tool overwrites the photo.
    await stack.originals.put("s/a.jpg", other, content_type="image/jpeg")
    report = await stack.service.audit()
    assert not report.consistent
    (damaged,) = report.damaged_objects
    assert (damaged.image_id, damaged.key) == (image.image_id, "s/a.jpg")
    assert "ETag" in damaged.problem or "bytes" in damaged.problem
    assert report.orphan_objects == ()


async def test_a_replaced_object_of_the_same_size_is_damaged_by_its_etag(stack: Stack) -> None:
    photo = jpeg()
    image = await stack.service.upload_original(photo, "s", _request())
    record = await stack.metadata.get(image.image_id)
    assert record is not None
    assert record.etag is not None
    same_size = bytes(reversed(photo))
    await stack.originals.put("s/a.jpg", same_size, content_type="image/jpeg")
    (damaged,) = (await stack.service.audit()).damaged_objects
    assert "ETag" in damaged.problem


def _past_the_grace(stack: Stack) -> None:
    """Move the service's clock a day past real time (S3 dates objects by the server's clock)."""
    now = max(stack.clock.now(), datetime.now(UTC))
    stack.clock.advance((now - stack.clock.now()).total_seconds() + 25 * 3600)


async def test_sweep_orphans_deletes_only_old_objects_that_no_record_owns(stack: Stack) -> None:
    image = await stack.service.upload_original(jpeg(), "s", _request())
    await stack.originals.put("s/stray.jpg", b"from another tool", content_type="image/jpeg")
    await stack.visualizations.put("t/left.png", b"left over", content_type="image/png")
    young = await stack.service.sweep_orphans()
    assert young.removed == ()
    assert {(bucket, key) for bucket, key, _ in young.kept} == {
        (stack.originals.name, "s/stray.jpg"),
        (stack.visualizations.name, "t/left.png"),
    }
    _past_the_grace(stack)
    dry = await stack.service.sweep_orphans(dry_run=True)
    assert set(dry.removed) == {
        (stack.originals.name, "s/stray.jpg"),
        (stack.visualizations.name, "t/left.png"),
    }
    assert await stack.originals.exists("s/stray.jpg")
    swept = await stack.service.sweep_orphans()
    assert set(swept.removed) == set(dry.removed)
    assert not await stack.originals.exists("s/stray.jpg")
    assert not await stack.visualizations.exists("t/left.png")
    assert await stack.service.download_original("s/a.jpg")
    report = await stack.service.audit()
    assert report.consistent
    assert (report.uploading, report.deleting) == (0, 0)
    assert (await stack.service.get_image(image.image_id)).image_id == image.image_id


async def test_sweep_orphans_never_touches_an_upload_in_progress(
    make_stack: StackFactory,
) -> None:
    swept = []
    stack: Stack | None = None

    async def sweep_midway(step: str) -> None:
        assert stack is not None
        if step == "thumbnail_written":  # the upload pauses with its objects written
            swept.append(await stack.service.sweep_orphans(older_than=timedelta(0)))

    stack = await make_stack(checkpoint=sweep_midway)
    _past_the_grace(stack)
    image = await stack.service.upload_original(jpeg(), "s", _request())
    assert swept[0].removed == ()
    assert await stack.service.download_original("s/a.jpg")
    assert (await stack.service.get_image(image.image_id)).thumbnail_key is not None
    assert (await stack.service.audit()).consistent


async def test_sweep_orphans_refuses_a_negative_grace(stack: Stack) -> None:
    with pytest.raises(ValidationError, match="older_than"):
        await stack.service.sweep_orphans(older_than=timedelta(seconds=-1))
