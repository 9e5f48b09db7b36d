"""Direct uploads: begin, post the form (over HTTP), complete; on every stack.

The memory and local stacks' forms are posted to the package's ASGI app; the
S3 stack's to SeaweedFS itself, with signatures checked.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from demeter_storage import UploadAlreadyCompleted, ValidationError
from demeter_storage.domain.errors import ImageAlreadyExists, ImageNotFound
from demeter_storage.domain.records import ImageState
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg, png
from tests.service.forms import post_form

MiB = 1024 * 1024


async def test_a_posted_photo_becomes_a_ready_image(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "leaf.jpg", "image/jpeg", len(photo))
    assert upload.key == "s1/leaf.jpg"
    assert upload.bucket == stack.originals.name
    assert upload.max_size == len(photo)
    assert upload.expires_at == stack.clock.now() + timedelta(minutes=15)
    assert upload.fields["key"] == f"_staging/{upload.image_id}"  # never the image's key
    assert upload.fields["Content-Type"] == "image/jpeg"
    record = await stack.metadata.get(upload.image_id)
    assert record is not None
    assert record.state is ImageState.UPLOADING
    assert upload.to_dict()["image_id"] == str(upload.image_id)

    response = await post_form(stack, upload, photo)
    assert response.status_code == 204, response.text
    image = await stack.service.complete_direct_upload(str(upload.image_id))

    assert image.image_id == upload.image_id
    assert image.size == len(photo)
    assert image.sha256 == hashlib.sha256(photo).hexdigest()
    assert image.thumbnail_key == "s1/thumb_leaf.jpg.jpg"
    assert await stack.originals.exists("s1/thumb_leaf.jpg.jpg")
    assert await stack.service.download_original("s1/leaf.jpg") == photo
    assert (await stack.service.get_image(upload.image_id)).image_id == upload.image_id
    assert (await stack.service.audit()).consistent


@pytest.mark.parametrize(
    ("body", "file_type", "reason"),
    [
        (b"%PDF-1.7 not a photo at all" * 10, "image/jpeg", "not a JPEG, PNG"),
        (png(), "image/png", "not of the declared type|is image/png"),
    ],
    ids=["non-image", "png-declared-as-jpeg"],
)
async def test_what_fails_the_check_is_deleted_with_its_record(
    stack: Stack, body: bytes, file_type: str, reason: str
) -> None:
    upload = await stack.service.begin_direct_upload("s1", "x.jpg", "image/jpeg", len(body))
    response = await post_form(stack, upload, body, file_type=file_type)
    assert response.status_code == 204, response.text
    with pytest.raises(ValidationError, match="rejected") as caught:
        await stack.service.complete_direct_upload(upload.image_id)
    assert caught.match(reason)
    assert await stack.objects() == {stack.originals.name: [], stack.visualizations.name: []}
    with pytest.raises(ImageNotFound):
        await stack.service.get_image(upload.image_id)
    with pytest.raises(ImageNotFound):
        await stack.service.complete_direct_upload(upload.image_id)
    # The form could still be posted until it expires: reconcile removes the
    # hidden record, and anything posted since, once it has.
    assert (await post_form(stack, upload, body, file_type=file_type)).status_code == 204
    stack.clock.advance(16 * 60 + 31)
    await stack.service.reconcile()
    assert await stack.is_empty()


async def test_a_smaller_body_than_declared_is_rejected(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo) + 10)
    assert (await post_form(stack, upload, photo)).status_code == 204
    with pytest.raises(ValidationError, match="bytes arrived but"):
        await stack.service.complete_direct_upload(upload.image_id)
    assert not await stack.originals.exists("s1/a.jpg")


async def test_the_form_refuses_a_larger_body_another_key_and_another_type(
    stack: Stack,
) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    too_large = await post_form(stack, upload, photo + b"\0")
    other_key = await post_form(stack, upload, photo, fields={**upload.fields, "key": "s1/b.jpg"})
    other_type = await post_form(
        stack, upload, photo, fields={**upload.fields, "Content-Type": "image/png"}
    )
    assert too_large.status_code == 400
    assert other_key.status_code == 403
    assert other_type.status_code == 403
    assert await stack.objects() == {stack.originals.name: [], stack.visualizations.name: []}


async def test_completing_before_anything_arrived_keeps_the_upload_open(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    with pytest.raises(ValidationError, match="nothing has arrived"):
        await stack.service.complete_direct_upload(upload.image_id)
    assert (await post_form(stack, upload, photo)).status_code == 204
    assert (await stack.service.complete_direct_upload(upload.image_id)).size == len(photo)


async def test_completing_twice_or_an_unknown_id_are_typed_errors(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, upload, photo)
    await stack.service.complete_direct_upload(upload.image_id)
    with pytest.raises(UploadAlreadyCompleted):
        await stack.service.complete_direct_upload(upload.image_id)
    with pytest.raises(ImageNotFound):
        await stack.service.complete_direct_upload("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ValidationError, match="not an image id"):
        await stack.service.complete_direct_upload("nope")
    assert await stack.service.download_original("s1/a.jpg") == photo


async def test_an_ordinary_upload_cannot_be_completed(stack: Stack) -> None:
    image = await stack.service.upload_original(jpeg(), "s1", UploadRequest("r.jpg", "image/jpeg"))
    with pytest.raises(ValidationError, match="not a direct upload"):
        await stack.service.complete_direct_upload(image.image_id)
    assert (await stack.service.get_image(image.image_id)).size == len(jpeg())


@pytest.mark.parametrize(
    ("session_id", "filename", "content_type", "size", "error"),
    [
        ("s1", "a.jpg", "image/jpeg", 0, ValidationError),
        ("s1", "a.jpg", "image/jpeg", 500 * MiB + 1, ValidationError),
        ("s1", "a.jpg", "image/jpeg", True, TypeError),
        ("s1", "a.jpg", "image/jpeg", "10", TypeError),
        ("s1", "a.jpg", "application/pdf", 10, ValidationError),
        ("s1", "a.jpg", "not a type", 10, ValidationError),
        ("../s1", "a.jpg", "image/jpeg", 10, ValidationError),
        ("s1", "a/b.jpg", "image/jpeg", 10, ValidationError),
        ("s1", ".hidden.jpg", "image/jpeg", 10, ValidationError),
    ],
)
async def test_bad_requests_are_refused_before_anything_is_written(
    stack: Stack, session_id: str, filename: str, content_type: str, size: int, error: type
) -> None:
    with pytest.raises(error):
        await stack.service.begin_direct_upload(session_id, filename, content_type, size)
    assert await stack.is_empty()


async def test_a_second_begin_replaces_an_unfinished_upload(stack: Stack) -> None:
    """A phone that lost its first form begins again: the newest upload wins at once."""
    photo = jpeg()
    first = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, first, photo)
    second = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    assert [r.image_id for r in await stack.rows()] == [second.image_id]
    assert not await stack.originals.exists(f"_staging/{first.image_id}")
    with pytest.raises(ImageNotFound):
        await stack.service.complete_direct_upload(first.image_id)
    await post_form(stack, second, photo)
    image = await stack.service.complete_direct_upload(second.image_id)
    assert image.sha256 == hashlib.sha256(photo).hexdigest()
    assert (await stack.service.audit()).consistent


async def test_a_ready_image_name_is_refused(stack: Stack) -> None:
    photo = jpeg()
    first = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, first, photo)
    await stack.service.complete_direct_upload(first.image_id)
    with pytest.raises(ImageAlreadyExists):
        await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    assert [r.image_id for r in await stack.rows()] == [first.image_id]


async def test_aliases_are_pinned_in_their_canonical_form(stack: Stack) -> None:
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "IMAGE/JPG", 10)
    assert upload.fields["Content-Type"] == "image/jpeg"


async def test_abandoned_uploads_are_removed_once_their_form_expired(stack: Stack) -> None:
    photo = jpeg()
    posted = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, posted, photo)
    never_posted = await stack.service.begin_direct_upload("s1", "b.jpg", "image/jpeg", 10)
    stack.clock.advance(15 * 60 + 4 * 60)  # expired, but within the grace period
    assert (await stack.service.reconcile()).abandoned_uploads == ()
    stack.clock.advance(2 * 60)
    report = await stack.service.reconcile()
    assert set(report.abandoned_uploads) == {posted.image_id, never_posted.image_id}
    assert await stack.is_empty()


async def test_a_long_form_outlives_the_stale_upload_rule(make_stack: StackFactory) -> None:
    stack = await make_stack(direct_upload_expiry=timedelta(hours=6))
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    stack.clock.advance(2 * 3600)  # past stale_upload_after (1 h)
    assert (await stack.service.reconcile()).abandoned_uploads == ()
    assert (await post_form(stack, upload, photo)).status_code == 204
    assert (await stack.service.complete_direct_upload(upload.image_id)).size == len(photo)


async def test_completing_after_the_grace_period_removes_the_upload(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, upload, photo)
    stack.clock.advance(15 * 60 + 6 * 60)
    with pytest.raises(ValidationError, match="expired"):
        await stack.service.complete_direct_upload(upload.image_id)
    assert await stack.is_empty()


async def test_an_upload_reconcile_claimed_cannot_complete(stack: Stack) -> None:
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, upload, photo)
    claimed = await stack.metadata.claim(
        state=ImageState.UPLOADING,
        updated_before=stack.clock.now() + timedelta(seconds=1),
        now=stack.clock.now(),
        claimant="reconciler",
        limit=10,
        claim_timeout=timedelta(minutes=10),
    )
    assert [r.image_id for r in claimed] == [upload.image_id]
    with pytest.raises(ImageNotFound):
        await stack.service.complete_direct_upload(upload.image_id)
    assert await stack.is_empty()


async def test_direct_uploads_without_thumbnails(make_stack: StackFactory) -> None:
    stack = await make_stack(thumbnails=False)
    photo = jpeg()
    upload = await stack.service.begin_direct_upload("s1", "a.jpg", "image/jpeg", len(photo))
    await post_form(stack, upload, photo)
    image = await stack.service.complete_direct_upload(upload.image_id)
    assert image.thumbnail_key is None
    assert await stack.objects() == {
        stack.originals.name: ["s1/a.jpg"],
        stack.visualizations.name: [],
    }
