"""Image types by magic bytes."""

from __future__ import annotations

import pytest

from demeter_storage import ValidationError
from demeter_storage.domain.images import check_image, normalise_image_type, sniff_image_type

SAMPLES = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF",
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
    "image/tiff": b"II*\x00\x08\x00\x00\x00",
    "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "image/heif": b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf",
}


@pytest.mark.parametrize(("content_type", "head"), SAMPLES.items())
def test_each_accepted_format_is_recognised(content_type: str, head: bytes) -> None:
    assert sniff_image_type(head) == content_type
    assert check_image(head, content_type) == content_type
    assert check_image(head, None) == content_type


@pytest.mark.parametrize(
    "head",
    [b"", b"GIF89a", b"RIFF\x00\x00\x00\x00WAVE", b"\x00\x00\x00\x18ftypavif", b"MM\x00\x2a"[:3]],
)
def test_other_bytes_are_not_images(head: bytes) -> None:
    assert sniff_image_type(head) is None
    with pytest.raises(ValidationError):
        check_image(head, "image/jpeg")


def test_big_endian_and_big_tiff() -> None:
    assert sniff_image_type(b"MM\x00*") == "image/tiff"
    assert sniff_image_type(b"II+\x00") == "image/tiff"


def test_heic_and_heif_declarations_are_interchangeable() -> None:
    assert check_image(SAMPLES["image/heic"], "image/heif") == "image/heif"
    assert check_image(SAMPLES["image/heif"], "image/heic") == "image/heic"
    with pytest.raises(ValidationError, match="declared as image/jpeg"):
        check_image(SAMPLES["image/heic"], "image/jpeg")


def test_aliases_and_parameters_are_normalised() -> None:
    assert normalise_image_type("IMAGE/JPG; q=1") == "image/jpeg"
    assert normalise_image_type("image/x-png") == "image/png"
    with pytest.raises(ValidationError, match="accepted image type"):
        normalise_image_type("image/gif")
