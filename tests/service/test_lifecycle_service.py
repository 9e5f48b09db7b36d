"""Lifecycle through the service: the default policy, and records kept true."""

from __future__ import annotations

import pytest

from demeter_storage.domain.errors import ImageNotFound
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.records import ImageState
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg, png

DAY = 24 * 3600.0


async def test_apply_lifecycle_gives_both_buckets_the_default_policy(stack: Stack) -> None:
    await stack.service.apply_lifecycle()
    viz = await stack.visualizations.get_lifecycle()
    originals = await stack.originals.get_lifecycle()
    assert {(r.id, r.expire_after_days) for r in viz.rules} == {
        ("abort-incomplete-uploads", None),
        ("expire-visualizations", 90),
    }
    assert [r.id for r in originals.rules] == ["abort-incomplete-uploads"]
    await stack.service.apply_lifecycle()  # idempotent
    assert await stack.visualizations.get_lifecycle() == viz


@pytest.mark.parametrize("stack_name", ["memory", "local-sqlite"])
async def test_sweep_expires_old_visualizations_and_marks_their_records(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack()
    await stack.service.apply_lifecycle()
    original = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    old = await stack.service.upload_visualization(
        png(), "s", "old.png", parent_id=original.image_id
    )
    stack.clock.advance(60 * DAY)
    fresh = await stack.service.upload_visualization(png(), "s", "fresh.png")
    stack.clock.advance(31 * DAY)
    assert await stack.service.sweep(dry_run=True) == {
        stack.originals.name: [],
        stack.visualizations.name: [await stack.visualizations.head("s/viz_old.png")],
    }
    removed = await stack.service.sweep()
    assert [i.key for i in removed[stack.visualizations.name]] == ["s/viz_old.png"]
    records = {r.image_id: r for r in await stack.rows()}
    assert records[old.image_id].state is ImageState.EXPIRED
    assert records[fresh.image_id].state is ImageState.READY
    assert records[original.image_id].state is ImageState.READY
    with pytest.raises(ImageNotFound):
        await stack.service.get_image(old.image_id)
    assert (await stack.service.get_image(original.image_id)).visualization_keys == ()
    audit = await stack.service.audit()
    assert audit.consistent
    assert audit.expired == 1


@pytest.mark.parametrize("stack_name", ["memory", "local-sqlite"])
async def test_expired_records_can_be_removed_instead(make_stack: StackFactory) -> None:
    stack = await make_stack(
        expired_records="remove",
        lifecycle=LifecyclePolicy.from_dict(
            {
                "rules": [
                    {
                        "id": "originals",
                        "bucket": "demeter-photos-original",
                        "expire_after_days": 10,
                    }
                ]
            }
        ),
    )
    await stack.service.apply_lifecycle()
    original = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    await stack.service.upload_visualization(png(), "s", "a.png", parent_id=original.image_id)
    stack.clock.advance(11 * DAY)
    removed = await stack.service.sweep()
    assert sorted(i.key for i in removed[stack.originals.name]) == ["s/a.jpg", "s/thumb_a.jpg.jpg"]
    assert await stack.is_empty()  # the linked visualization went with its original


async def test_objects_the_server_expired_are_reported_then_reconciled(stack: Stack) -> None:
    await stack.service.apply_lifecycle()
    viz = await stack.service.upload_visualization(png(), "s", "old.png")
    stack.clock.advance(91 * DAY)
    # What S3's lifecycle engine does by itself, overnight:
    await stack.visualizations.delete("s/viz_old.png")
    audit = await stack.service.audit()
    assert [(m.key, m.reason) for m in audit.missing_objects] == [("s/viz_old.png", "lifecycle")]
    report = await stack.service.reconcile()
    assert report.expired_records == (viz.image_id,)
    assert (await stack.service.audit()).consistent


async def test_an_object_lost_for_no_rule_is_reported_as_unknown(stack: Stack) -> None:
    await stack.service.apply_lifecycle()
    original = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    await stack.originals.delete("s/a.jpg")
    stack.clock.advance(400 * DAY)
    audit = await stack.service.audit()
    assert [(m.image_id, m.reason) for m in audit.missing_objects] == [
        (original.image_id, "unknown")
    ]
    assert (await stack.service.reconcile()).expired_records == ()
