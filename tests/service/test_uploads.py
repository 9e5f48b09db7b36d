"""Uploading originals and visualizations: what is stored, and what is refused."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from demeter_storage import ValidationError
from demeter_storage.domain.errors import ImageAlreadyExists
from demeter_storage.domain.records import ImageKind, ImageState
from demeter_storage.service.image_service import ImageService, S3ImageService
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg, noisy_jpeg, png


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_an_original_lands_under_session_and_filename(stack: Stack) -> None:
    photo = jpeg()
    response = await stack.service.upload_original(
        photo, "sess-1", UploadRequest("IMG_0001.jpg", "image/jpeg", metadata={"row": "7"})
    )
    assert response.bucket == "demeter-photos-original" or response.bucket.startswith("orig-")
    assert response.s3_key == "sess-1/IMG_0001.jpg"
    assert (response.size, response.sha256) == (len(photo), hashlib.sha256(photo).hexdigest())
    assert response.kind is ImageKind.ORIGINAL
    assert response.url is not None
    assert response.url_expires_at is not None
    assert await stack.originals.get("sess-1/IMG_0001.jpg") == photo
    (record,) = [r for r in await stack.rows() if r.key == "sess-1/IMG_0001.jpg"]
    assert (record.state, dict(record.metadata)) == (ImageState.READY, {"row": "7"})
    head = await stack.originals.head("sess-1/IMG_0001.jpg")
    assert (head.content_type, dict(head.metadata)) == ("image/jpeg", {"row": "7"})
    json.dumps(response.to_dict())


async def test_files_and_streams_give_the_same_image(stack: Stack) -> None:
    photo = jpeg(800, 600)
    by_bytes = await stack.service.upload_original(photo, "s", UploadRequest("a.jpg", "image/jpeg"))
    by_file = await stack.service.upload_original(
        io.BytesIO(photo), "s", UploadRequest("b.jpg", "image/jpeg", size=len(photo))
    )
    by_stream = await stack.service.upload_original(
        _chunks(photo), "s", UploadRequest("c.jpg", "image/jpeg")
    )
    assert by_bytes.sha256 == by_file.sha256 == by_stream.sha256
    assert by_stream.size == len(photo)
    assert by_stream.thumbnail_key is not None


async def test_a_thumbnail_is_stored_beside_the_original(stack: Stack) -> None:
    response = await stack.service.upload_original(
        jpeg(1200, 600), "s", UploadRequest("wide.jpg", "image/jpeg")
    )
    assert response.thumbnail_key == "s/thumb_wide.jpg.jpg"
    thumbnail = Image.open(io.BytesIO(await stack.originals.get(response.thumbnail_key)))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (256, 128))


async def test_without_thumbnails_none_is_stored(make_stack: StackFactory) -> None:
    stack = await make_stack(thumbnails=False)
    response = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    assert response.thumbnail_key is None
    assert (await stack.objects())[stack.originals.name] == ["s/a.jpg"]


async def test_an_undecodable_image_is_kept_without_a_thumbnail(stack: Stack) -> None:
    truncated = jpeg()[:200]
    response = await stack.service.upload_original(
        truncated, "s", UploadRequest("cut.jpg", "image/jpeg")
    )
    assert response.thumbnail_key is None
    assert response.size == 200


async def test_visualizations_get_the_viz_prefix_and_their_type_from_their_bytes(
    stack: Stack,
) -> None:
    response = await stack.service.upload_visualization(png(), "sess-1", "heatmap.png")
    assert response.s3_key == "sess-1/viz_heatmap.png"
    assert (response.kind, response.content_type, response.filename) == (
        ImageKind.VISUALIZATION,
        "image/png",
        "heatmap.png",
    )
    assert response.bucket == stack.visualizations.name
    streamed = await stack.service.upload_visualization(_chunks(png()), "sess-1", "streamed.png")
    assert streamed.content_type == "image/png"
    assert response.thumbnail_key is None


async def test_a_linked_visualization_is_listed_on_its_original(stack: Stack) -> None:
    original = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    await stack.service.upload_visualization(png(), "s", "a.png", parent_id=original.image_id)
    await stack.service.upload_visualization(png(), "s", "b.png", parent_id=str(original.image_id))
    refreshed = await stack.service.get_image(original.image_id)
    assert refreshed.visualization_keys == ("s/viz_a.png", "s/viz_b.png")


async def test_a_visualization_needs_a_ready_original_as_parent(stack: Stack) -> None:
    viz = await stack.service.upload_visualization(png(), "s", "v.png")
    for parent in (viz.image_id, "6b6d2b8a-6f5e-4a61-9a5b-3f1c1d2e3f40"):
        with pytest.raises(ValidationError, match="parent_id"):
            await stack.service.upload_visualization(png(), "s", "w.png", parent_id=parent)
    with pytest.raises(ValidationError, match="UUID"):
        await stack.service.upload_visualization(png(), "s", "w.png", parent_id="not-a-uuid")


async def test_a_taken_filename_is_refused_and_the_first_photo_kept(stack: Stack) -> None:
    first = await stack.service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/jpeg"))
    with pytest.raises(ImageAlreadyExists) as caught:
        await stack.service.upload_original(
            jpeg(color=(1, 2, 3)), "s", UploadRequest("a.jpg", "image/jpeg")
        )
    assert caught.value.existing_image_id == first.image_id
    assert await stack.service.download_original("s/a.jpg") == jpeg()


@pytest.mark.parametrize(
    ("data", "request_", "message"),
    [
        (b"", UploadRequest("a.jpg", "image/jpeg"), "empty"),
        (b"GIF89a....", UploadRequest("a.gif", "image/gif"), "not an accepted image type"),
        (b"%PDF-1.7 not an image", UploadRequest("a.jpg", "image/jpeg"), "not a JPEG"),
        (png(), UploadRequest("a.jpg", "image/jpeg"), "image/png but was declared"),
        (jpeg(), UploadRequest("a.jpg", "image/jpeg", size=12), "declared"),
        (jpeg(), UploadRequest("../a.jpg", "image/jpeg"), "filename"),
        (jpeg(), UploadRequest("a\x00.jpg", "image/jpeg"), r"U\+0000"),
        (jpeg(), UploadRequest(".hidden.jpg", "image/jpeg"), "dot"),
        (jpeg(), UploadRequest("thumb_x.jpg", "image/jpeg"), "reserved"),
        (jpeg(), UploadRequest("a.jpg", "image/jpeg\r\nX: 1"), "MIME"),
        (jpeg(), UploadRequest("a.jpg", "image/jpeg", metadata={"Bad Key": "x"}), "metadata key"),
        (jpeg(), UploadRequest("a.jpg", "image/jpeg", size=0), "empty"),
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing(
    stack: Stack, data: bytes, request_: UploadRequest, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await stack.service.upload_original(data, "sess", request_)
    with pytest.raises(ValidationError, match=message):
        await stack.service.upload_original(_chunks(data), "sess", request_)
    assert await stack.is_empty()


@pytest.mark.parametrize("session_id", ["", "a/b", "..", "x" * 129, "s\n", "\u202e"])
async def test_bad_session_ids_are_refused_and_leave_nothing(stack: Stack, session_id: str) -> None:
    with pytest.raises(ValidationError):
        await stack.service.upload_original(
            jpeg(), session_id, UploadRequest("a.jpg", "image/jpeg")
        )
    with pytest.raises(ValidationError):
        await stack.service.upload_visualization(png(), session_id, "a.png")
    assert await stack.is_empty()


async def test_the_size_limit_holds_for_bytes_files_and_streams(make_stack: StackFactory) -> None:
    stack = await make_stack(max_upload_bytes=5000)
    big = noisy_jpeg(100)
    assert len(big) > 5000
    for data in (big, io.BytesIO(big), _chunks(big)):
        with pytest.raises(ValidationError, match="limit of 5000 bytes"):
            await stack.service.upload_original(data, "s", UploadRequest("big.jpg", "image/jpeg"))
    with pytest.raises(ValidationError, match="limit"):
        await stack.service.upload_original(
            jpeg(8, 8), "s", UploadRequest("small.jpg", "image/jpeg", size=6000)
        )
    assert await stack.is_empty()
    small = jpeg(16, 16)
    assert (
        await stack.service.upload_original(small, "s", UploadRequest("ok.jpg", "image/jpeg"))
    ).size


async def test_a_stream_shorter_than_declared_is_refused(stack: Stack) -> None:
    photo = jpeg()
    with pytest.raises(ValidationError, match="declared"):
        await stack.service.upload_original(
            _chunks(photo), "s", UploadRequest("a.jpg", "image/jpeg", size=len(photo) + 1)
        )
    assert await stack.is_empty()


async def test_wrong_argument_types_are_type_errors(stack: Stack) -> None:
    with pytest.raises(TypeError):
        await stack.service.upload_original(jpeg(), "s", {"filename": "a.jpg"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await stack.service.upload_original("text", "s", UploadRequest("a.jpg", "image/jpeg"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await stack.service.upload_original(
            jpeg(),
            "s",
            UploadRequest("a.jpg", "image/jpeg", size="9"),  # type: ignore[arg-type]
        )
    assert await stack.is_empty()


async def test_aliases_and_heif_family_types_are_accepted(stack: Stack) -> None:
    response = await stack.service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/JPG"))
    assert response.content_type == "image/jpeg"
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    response = await stack.service.upload_original(heic, "s", UploadRequest("b.heic", "image/heif"))
    assert response.content_type == "image/heif"


def test_the_seed_cards_name_is_the_same_service() -> None:
    assert S3ImageService is ImageService


async def test_a_stream_longer_than_declared_is_refused_as_soon_as_it_passes(
    stack: Stack,
) -> None:
    """Declared 100 bytes, sends 8 MiB: reading stops right after the 100th byte."""
    head = jpeg(8, 8)[:100]
    pulled = 0

    async def flood() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield head
        pulled += len(head)
        for _ in range(128):
            yield b"\0" * 65536
            pulled += 65536

    with pytest.raises(ValidationError, match="declared"):
        await stack.service.upload_original(
            flood(), "s", UploadRequest("a.jpg", "image/jpeg", size=100)
        )
    assert pulled <= 100 + 65536
    assert await stack.is_empty()
