"""Downloads, presigned URLs, listings and deletes."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from demeter_storage import IntegrityError, ObjectNotFound, StorageUnavailable, ValidationError
from demeter_storage.domain.errors import ImageNotFound
from demeter_storage.domain.records import ImageState
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg, png
from tests.service.faults import FaultyStore


async def _upload(stack: Stack, name: str = "a.jpg", session: str = "s") -> uuid.UUID:
    response = await stack.service.upload_original(
        jpeg(), session, UploadRequest(name, "image/jpeg")
    )
    return response.image_id


def _expiry_seconds(url: str) -> int:
    query = parse_qs(urlsplit(url).query)
    return int((query.get("X-Amz-Expires") or query["X-Demeter-Expires"])[0])


async def test_download_returns_the_bytes_and_checks_them(stack: Stack) -> None:
    await _upload(stack)
    assert await stack.service.download_original("s/a.jpg") == jpeg()
    assert await stack.service.download_original("s/a.jpg", stack.originals.name) == jpeg()
    chunks = [c async for c in stack.service.stream_original("s/a.jpg", chunk_size=1000)]
    assert b"".join(chunks) == jpeg()
    assert max(len(c) for c in chunks) <= 1000


async def test_a_damaged_object_raises_integrity_error(stack: Stack) -> None:
    await _upload(stack)
    await stack.originals.put("s/a.jpg", jpeg(color=(9, 9, 9)), content_type="image/jpeg")
    with pytest.raises(IntegrityError, match="SHA-256"):
        await stack.service.download_original("s/a.jpg")
    with pytest.raises(IntegrityError):
        [c async for c in stack.service.stream_original("s/a.jpg")]


async def test_thumbnails_and_visualizations_download_too(stack: Stack) -> None:
    image_id = await _upload(stack)
    thumb = (await stack.service.get_image(image_id)).thumbnail_key
    assert thumb is not None
    assert (await stack.service.download_original(thumb))[:3] == b"\xff\xd8\xff"
    await stack.service.upload_visualization(png(), "s", "h.png")
    assert await stack.service.download_original("s/viz_h.png", stack.visualizations.name) == png()


async def test_missing_objects_unknown_buckets_and_bad_keys(stack: Stack) -> None:
    with pytest.raises(ObjectNotFound):
        await stack.service.download_original("s/none.jpg")
    with pytest.raises(ValidationError, match="unknown bucket"):
        await stack.service.download_original("s/a.jpg", "someone-elses-bucket")
    with pytest.raises(ValidationError):
        await stack.service.download_original("../etc/passwd")


@pytest.mark.parametrize("hours", [1, 24, 168])
async def test_presigned_urls_last_the_hours_asked_for(stack: Stack, hours: int) -> None:
    await _upload(stack)
    url = await stack.service.generate_presigned_url("s/a.jpg", expiry_hours=hours)
    assert _expiry_seconds(url) == hours * 3600
    assert _expiry_seconds(await stack.service.generate_presigned_url("s/a.jpg")) == 24 * 3600


@pytest.mark.parametrize("hours", [0, -1, 169, 1.5, "24", True, None.__class__])
async def test_expiries_outside_one_to_168_hours_are_refused(stack: Stack, hours: object) -> None:
    with pytest.raises(ValidationError, match="1 to 168"):
        await stack.service.generate_presigned_url("s/a.jpg", expiry_hours=hours)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown bucket"):
        await stack.service.generate_presigned_url("s/a.jpg", bucket="nope")


async def test_get_and_list_show_ready_images_in_pages(stack: Stack) -> None:
    ids = [await _upload(stack, f"{n}.jpg") for n in "cab"]
    await _upload(stack, "other.jpg", session="s2")
    described = await stack.service.get_image(ids[0])
    assert (described.s3_key, described.url is not None) == ("s/c.jpg", True)
    first = await stack.service.list_session_images("s", limit=2)
    assert [i.s3_key for i in first.items] == ["s/a.jpg", "s/b.jpg"]
    assert first.next_cursor is not None
    second = await stack.service.list_session_images("s", limit=2, cursor=first.next_cursor)
    assert ([i.s3_key for i in second.items], second.next_cursor) == (["s/c.jpg"], None)
    assert (await stack.service.list_session_images("empty")).items == ()
    for bad in ({"limit": 0}, {"limit": 1001}, {"cursor": "%%%"}):
        with pytest.raises(ValidationError):
            await stack.service.list_session_images("s", **bad)  # type: ignore[arg-type]
    with pytest.raises(ImageNotFound):
        await stack.service.get_image(uuid.uuid4())


async def test_delete_removes_the_original_thumbnail_visualizations_and_rows(stack: Stack) -> None:
    image_id = await _upload(stack)
    await stack.service.upload_visualization(png(), "s", "a.png", parent_id=image_id)
    unrelated = await stack.service.upload_visualization(png(), "s", "b.png")
    assert await stack.service.delete_image(image_id) is True
    assert await stack.objects() == {
        stack.originals.name: [],
        stack.visualizations.name: ["s/viz_b.png"],
    }
    assert [r.image_id for r in await stack.rows()] == [unrelated.image_id]
    assert await stack.service.delete_image(image_id) is False
    assert await stack.service.delete_image(str(uuid.uuid4())) is False
    with pytest.raises(ValidationError, match="UUID"):
        await stack.service.delete_image("42")
    with pytest.raises(TypeError):
        await stack.service.delete_image(42)  # type: ignore[arg-type]


async def test_a_delete_during_an_outage_stays_hidden_until_reconcile(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(wrap=FaultyStore)
    image_id = await _upload(stack)
    originals = stack.originals
    assert isinstance(originals, FaultyStore)
    originals.failing = {"delete"}
    with pytest.raises(StorageUnavailable):
        await stack.service.delete_image(image_id)
    (record,) = await stack.rows()
    assert record.state is ImageState.DELETING
    with pytest.raises(ImageNotFound):
        await stack.service.get_image(image_id)
    with pytest.raises(ObjectNotFound, match="deleting"):
        await stack.service.download_original("s/a.jpg")
    with pytest.raises(ObjectNotFound):
        await stack.service.generate_presigned_url("s/a.jpg")
    assert (await stack.service.list_session_images("s")).items == ()
    stack.clock.advance(60)
    report = await stack.service.reconcile()
    assert report.failed and not report.completed_deletes
    originals.failing = set()
    report = await stack.service.reconcile()
    assert report.completed_deletes == (image_id,)
    assert await stack.is_empty()
