"""What counts as an image: content types and their magic bytes.

The bytes decide, not the file name: an upload must start with the signature
of one of the accepted formats, and that format must agree with the declared
content type.
"""

from __future__ import annotations

from typing import Final

from demeter_storage.domain.errors import ValidationError

SNIFF_BYTES: Final = 32
"""How many leading bytes :func:`sniff_image_type` needs to decide."""

ACCEPTED_TYPES: Final = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/tiff",
    "image/heic",
    "image/heif",
)

_ALIASES: Final = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/tif": "image/tiff",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heif",
}
# HEIF family brands (ISO/IEC 23008-12): HEVC-coded ones are HEIC, the rest generic HEIF.
_HEIC_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
)
_HEIF_BRANDS: Final = frozenset({b"mif1", b"msf1", b"mif2"})
_HEIF_FAMILY: Final = frozenset({"image/heic", "image/heif"})


def normalise_image_type(content_type: str) -> str:
    """Return the canonical form of an accepted image content type.

    Parameters (``; charset=...``) and case are dropped; common aliases
    (``image/jpg``, ``image/x-png``...) map to their standard names.

    Raises:
        ValidationError: not one of the accepted image types.
    """
    base = content_type.split(";", 1)[0].strip().lower()
    base = _ALIASES.get(base, base)
    if base not in ACCEPTED_TYPES:
        raise ValidationError(
            f"content type {content_type!r} is not an accepted image type; use one of "
            f"{', '.join(ACCEPTED_TYPES)}"
        )
    return base


def sniff_image_type(head: bytes) -> str | None:
    """The image type the leading bytes show, or None if they show none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), SNIFF_BYTES), 4)}
        if brands & _HEIC_BRANDS:
            return "image/heic"
        if brands & _HEIF_BRANDS:
            return "image/heif"
    return None


def check_image(head: bytes, declared: str | None) -> str:
    """Check that ``head`` (the first bytes) is an image of the ``declared`` type.

    With ``declared`` None, any accepted image type will do.

    Returns:
        The canonical content type.

    Raises:
        ValidationError: the bytes are not an accepted image, or not of the
            declared type.
    """
    canonical = None if declared is None else normalise_image_type(declared)
    sniffed = sniff_image_type(head)
    if sniffed is None:
        if not head:
            raise ValidationError("the data is empty; upload at least 1 byte")
        raise ValidationError(
            "the data is not a JPEG, PNG, WebP, TIFF or HEIC/HEIF image (its first bytes "
            "match none of them); upload the photo itself"
        )
    if canonical is None:
        return sniffed
    if sniffed != canonical and not {sniffed, canonical} <= _HEIF_FAMILY:
        raise ValidationError(
            f"the data is {sniffed} but was declared as {canonical}; declare the right content type"
        )
    return canonical
