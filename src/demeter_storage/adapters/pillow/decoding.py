"""What decoding an image will cost, judged from its headers before any pixel is decoded.

:func:`open_within_budget` reads the format's own headers first (JPEG markers,
PNG chunks, the WebP canvas, the TIFF directory), opens the image with that
format's Pillow plugin only if what opening reads stays small, and hands it
back only if the whole decode fits :data:`DECODE_BUDGET_BYTES`: the canvas in
Pillow's layout, the decoder's own buffers, the metadata Pillow keeps, and
the full-size copies the caller's pipeline will make. Nothing is decoded here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Final

from PIL import (
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from demeter_storage.adapters.pillow.headers import (
    HEADERS,
    DecodeCost,
    DecodeRefused,
    Source,
    bytes_per_pixel,
)
from demeter_storage.domain.images import SNIFF_BYTES, sniff_image_type

__all__ = [
    "DECODE_BUDGET_BYTES",
    "MAX_HEADER_PIXELS",
    "DecodeCost",
    "DecodeRefused",
    "bytes_per_pixel",
    "estimate",
    "open_within_budget",
]

MIB: Final = 1024 * 1024
DECODE_BUDGET_BYTES: Final = 240 * MIB
"""The most one decode may cost by the estimate; measured peaks stay under 256 MiB."""
MAX_HEADER_PIXELS: Final = 2**28
"""The most pixels a header may claim (16384 x 16384); JPEGs beyond Pillow's limit need it."""
FIXED_COST_BYTES: Final = 16 * MIB
"""What every decode costs besides its pixels: Python objects, the small copies, the output."""


def open_within_budget(
    stream: IO[bytes],
    *,
    draft_side: int,
    copies_bytes_per_pixel: Callable[[Image.Image], int],
    budget: int = DECODE_BUDGET_BYTES,
    shared_bytes: bool = False,
) -> ImageFile.ImageFile:
    """Open the image in ``stream`` lazily, if decoding it fits ``budget`` bytes.

    Args:
        stream: a seekable binary file holding the whole image.
        draft_side: JPEGs are scaled down while decoding to no less than this
            many pixels a side (by 1/2, 1/4 or 1/8).
        copies_bytes_per_pixel: the bytes per decoded pixel of the full-size
            copies the caller will make of the opened image.
        budget: the most the decode may cost, in bytes.
        shared_bytes: ``stream`` is an ``io.BytesIO`` made from bytes and never
            written to: handing its whole buffer to a decoder copies nothing.

    Returns:
        The opened image, not yet decoded (the caller loads and closes it).

    Raises:
        DecodeRefused: the decode would exceed the budget or the pixel limit,
            or the headers cannot be read.
    """
    source = Source(stream, shared=shared_bytes)
    kind = sniff_image_type(source.read(0, SNIFF_BYTES))
    if kind is None or kind not in HEADERS:
        raise DecodeRefused("it is not a JPEG, PNG, WebP, TIFF or HEIC/HEIF image")
    cost = HEADERS[kind](source)
    limit = _pixel_limit()
    if cost.pixels is not None:
        _check_pixels(cost.pixels, MAX_HEADER_PIXELS if cost.scalable else limit)
    # What opening itself takes: WebP's decoder allocates its canvases as the file opens.
    before_open = (
        cost.held_bytes + cost.decoder_bytes + (cost.pixels or 0) * cost.decoder_bytes_per_pixel
    )
    if before_open > budget:
        raise _over_budget(before_open, budget)
    stream.seek(0)
    image = _open(kind, stream)
    try:
        if cost.scalable:
            image.draft(image.mode, (draft_side, draft_side))
        _check_pixels(image.width * image.height, limit)
        total = estimate(image, cost, copies_bytes_per_pixel)
        if total > budget:
            raise _over_budget(total, budget)
    except BaseException:
        image.close()
        raise
    return image


def estimate(
    image: ImageFile.ImageFile,
    cost: DecodeCost,
    copies_bytes_per_pixel: Callable[[Image.Image], int],
) -> int:
    """The bytes decoding the opened (maybe drafted) ``image`` will take at its peak."""
    pixels = image.width * image.height
    canvas = pixels * bytes_per_pixel(image.mode)
    after_open = cost.after_open(image) if cost.after_open is not None else 0
    return (
        FIXED_COST_BYTES
        + cost.held_bytes
        + cost.decoder_bytes
        + after_open
        + pixels * cost.decoder_bytes_per_pixel
        + canvas
        + canvas // 4  # the thumbnail's reduce() step makes a copy at most a quarter the size
        + pixels * copies_bytes_per_pixel(image)
    )


def _pixel_limit() -> int:
    # Pillow warns beyond MAX_IMAGE_PIXELS (TIFF checks again when it decodes): honour it,
    # and the host's setting of it, for the canvas that is really decoded.
    limit = Image.MAX_IMAGE_PIXELS
    return MAX_HEADER_PIXELS if limit is None else min(limit, MAX_HEADER_PIXELS)


def _check_pixels(pixels: int, limit: int) -> None:
    if pixels > limit:
        raise DecodeRefused(f"it has {pixels:,} pixels, over the limit of {limit:,}")


def _over_budget(total: int, budget: int) -> DecodeRefused:
    return DecodeRefused(
        f"decoding it would take about {total / MIB:,.0f} MiB, over the budget of "
        f"{budget / MIB:,.0f} MiB"
    )


def _open(kind: str, stream: IO[bytes]) -> ImageFile.ImageFile:
    # The format's plugin, not Image.open: the format is known, and Image.open's own
    # decompression-bomb warning would fire for the large JPEGs that draft() makes cheap.
    if kind == "image/jpeg":
        # The plain JPEG class, even for multi-picture files: the first picture is the photo.
        return JpegImagePlugin.JpegImageFile(stream)
    if kind == "image/png":
        return PngImagePlugin.PngImageFile(stream)
    if kind == "image/webp":
        return WebPImagePlugin.WebPImageFile(stream)
    if kind == "image/tiff":
        return TiffImagePlugin.TiffImageFile(stream)
    Image.init()  # HEIC/HEIF: whatever plugin registered itself (pillow-heif; Pillow's AVIF)
    head = stream.read(16)
    for name in ("HEIF", "AVIF"):
        factory, accept = Image.OPEN.get(name, (None, None))
        if factory is not None and (accept is None or accept(head) is True):
            stream.seek(0)
            return factory(stream, "")
    raise DecodeRefused("no installed Pillow plugin decodes HEIC/HEIF (pillow-heif does)")
