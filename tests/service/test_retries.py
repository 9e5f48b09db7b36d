"""Retrying after a failure just works: crashed and failed uploads, concurrent retries, keys.

A retry of ``upload_original`` for the same session and filename takes over an
interrupted upload at once (no stale timeout, no reconcile); the attempt it
replaced, if still running, can neither confirm nor change what the retry
stores; an idempotency key makes a repeated request return the first image.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from demeter_storage import ImageAlreadyExists, StorageError, ValidationError
from demeter_storage.domain.records import ImageState
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg
from tests.service.faults import Crash, Faults, FaultyStore


def _request(name: str = "a.jpg", key: str | None = None) -> UploadRequest:
    return UploadRequest(name, "image/jpeg", idempotency_key=key)


async def _assert_clean(stack: Stack) -> None:
    audit = await stack.service.audit()
    assert audit.orphan_objects == ()
    assert audit.missing_objects == ()
    assert audit.damaged_objects == ()
    assert (audit.uploading, audit.deleting) == (0, 0)


@pytest.mark.parametrize("step", ["record_written", "object_written", "thumbnail_written"])
async def test_a_retry_after_a_crash_succeeds_at_once(make_stack: StackFactory, step: str) -> None:
    faults = Faults()
    stack = await make_stack(checkpoint=faults.checkpoint)
    faults.step = ("crash", step)
    with pytest.raises(Crash):
        await stack.service.upload_original(jpeg(color=(1, 2, 3)), "s", _request())
    (crashed,) = await stack.rows()
    assert crashed.state is ImageState.UPLOADING
    second = jpeg(color=(200, 10, 10))
    image = await stack.service.upload_original(second, "s", _request())
    assert image.image_id != crashed.image_id
    assert (await stack.service.get_image(image.image_id)).sha256 == image.sha256
    assert await stack.service.download_original("s/a.jpg") == second
    assert [row.image_id for row in await stack.rows()] == [image.image_id]
    await _assert_clean(stack)


async def test_a_retry_after_a_failed_attempt_succeeds_at_once(stack: Stack) -> None:
    async def dropped() -> AsyncIterator[bytes]:
        yield jpeg()[:100]
        raise ConnectionResetError("the phone lost its network")

    with pytest.raises(ConnectionResetError):
        await stack.service.upload_original(dropped(), "s", _request())
    image = await stack.service.upload_original(jpeg(), "s", _request())
    assert (await stack.service.get_image(image.image_id)).image_id == image.image_id
    await _assert_clean(stack)


async def test_two_concurrent_retries_leave_one_image_and_no_orphan(
    make_stack: StackFactory,
) -> None:
    faults = Faults()
    stack = await make_stack(checkpoint=faults.checkpoint)
    faults.step = ("crash", "object_written")
    with pytest.raises(Crash):
        await stack.service.upload_original(jpeg(color=(9, 9, 9)), "s", _request())
    photos = [jpeg(color=(10 * i, 90, 30)) for i in range(1, 3)]
    results = await asyncio.gather(
        *(stack.service.upload_original(p, "s", _request()) for p in photos),
        return_exceptions=True,
    )
    images = [r for r in results if not isinstance(r, BaseException)]
    assert len(images) >= 1
    assert all(isinstance(r, StorageError) for r in results if isinstance(r, BaseException))
    ready = [row for row in await stack.rows() if row.state is ImageState.READY]
    assert len(ready) == 1
    stored = await stack.service.download_original("s/a.jpg")  # checks the recorded SHA-256
    assert stored in photos
    assert hashlib.sha256(stored).hexdigest() == ready[0].sha256
    await _assert_clean(stack)


async def test_a_replaced_attempt_that_wakes_up_changes_nothing(stack: Stack) -> None:
    """The first attempt stalls mid-stream; its retry takes over and confirms; then it resumes."""
    stalled = asyncio.Event()
    resume = asyncio.Event()
    first = jpeg(color=(250, 0, 0))

    async def slow_phone() -> AsyncIterator[bytes]:
        yield first[:64]
        stalled.set()
        await resume.wait()
        yield first[64:]

    attempt = asyncio.create_task(stack.service.upload_original(slow_phone(), "s", _request()))
    await stalled.wait()
    second = jpeg(color=(0, 0, 250))
    image = await stack.service.upload_original(second, "s", _request())
    resume.set()
    with pytest.raises(StorageError):
        await attempt
    assert await stack.service.download_original("s/a.jpg") == second
    assert (await stack.service.get_image(image.image_id)).sha256 == image.sha256
    await _assert_clean(stack)


async def test_an_idempotency_key_returns_the_first_image_for_the_same_bytes(
    stack: Stack,
) -> None:
    photo = jpeg()
    first = await stack.service.upload_original(photo, "s", _request(key="phone-7"))
    again = await stack.service.upload_original(photo, "s", _request(key="phone-7"))
    assert again.image_id == first.image_id
    renamed = await stack.service.upload_original(photo, "s", _request("b.jpg", key="phone-7"))
    assert renamed.image_id == first.image_id
    assert len(await stack.rows()) == 1
    await _assert_clean(stack)


async def test_an_idempotency_key_with_other_bytes_is_refused(stack: Stack) -> None:
    photo = jpeg()
    first = await stack.service.upload_original(photo, "s", _request(key="phone-7"))
    with pytest.raises(ValidationError, match="other bytes"):
        await stack.service.upload_original(jpeg(color=(1, 1, 1)), "s", _request(key="phone-7"))
    with pytest.raises(ValidationError, match="other bytes"):
        await stack.service.upload_original(
            jpeg(color=(1, 1, 1)), "s", _request("c.jpg", key="phone-7")
        )
    assert await stack.service.download_original("s/a.jpg") == photo
    assert [row.image_id for row in await stack.rows()] == [first.image_id]
    other_session = await stack.service.upload_original(photo, "t", _request(key="phone-7"))
    assert other_session.image_id != first.image_id


async def test_without_a_key_a_taken_filename_is_still_refused(stack: Stack) -> None:
    first = await stack.service.upload_original(jpeg(), "s", _request())
    with pytest.raises(ImageAlreadyExists) as caught:
        await stack.service.upload_original(jpeg(), "s", _request())
    assert caught.value.existing_image_id == first.image_id


async def test_a_bad_idempotency_key_is_refused_before_anything_is_written(
    stack: Stack,
) -> None:
    for bad in ("", "has space", "x" * 129, "é"):
        with pytest.raises(ValidationError, match="idempotency_key"):
            await stack.service.upload_original(jpeg(), "s", _request(key=bad))
    with pytest.raises(TypeError):
        UploadRequest("a.jpg", "image/jpeg", idempotency_key=7)  # type: ignore[arg-type]
    assert await stack.is_empty()


async def test_a_retry_after_an_outage_finishes_the_stopped_undo(make_stack: StackFactory) -> None:
    """The store failed mid-upload and again during the undo: the retry needs no reconcile."""
    stack = await make_stack(wrap=FaultyStore)
    assert isinstance(stack.originals, FaultyStore)
    stack.originals.failing = {"put", "delete"}
    with pytest.raises(StorageError):
        await stack.service.upload_original(jpeg(color=(5, 5, 5)), "s", _request())
    (stopped,) = await stack.rows()
    assert stopped.state is ImageState.DELETING  # hidden, its undo left for later
    stack.originals.failing = set()
    with pytest.raises(StorageError, match="still being removed"):
        await stack.service.upload_original(jpeg(), "s", _request())  # a delete may be running
    stack.clock.advance(31)  # past the deleting grace: nothing is running any more
    photo = jpeg(color=(0, 200, 0))
    image = await stack.service.upload_original(photo, "s", _request())
    assert await stack.service.download_original("s/a.jpg") == photo
    assert [row.image_id for row in await stack.rows()] == [image.image_id]
    await _assert_clean(stack)
