"""JPEG thumbnails with Pillow (the optional ``thumbnails`` extra)."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import warnings
from typing import IO, Final

from demeter_storage.ports import ThumbnailMaker

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE: Final = 256
MAX_PIXELS: Final = 120_000_000
"""Larger images are refused as possible decompression bombs (a 12000 x 10000 photo fits)."""


def pillow_available() -> bool:
    """Whether Pillow is installed."""
    return importlib.util.find_spec("PIL") is not None


class PillowThumbnailMaker(ThumbnailMaker):
    """Thumbnails whose longest side is 256 px, as JPEG.

    JPEGs are decoded at reduced size (``draft`` mode), so even large photos
    cost little; EXIF orientation is applied. Images Pillow cannot decode
    (HEIC without a plugin, truncated files, decompression bombs) get no
    thumbnail rather than an error.
    """

    def __init__(self, side: int = THUMBNAIL_SIDE, quality: int = 82) -> None:
        if not pillow_available():
            raise ImportError("Pillow is missing: pip install 'demeter-storage[thumbnails]'")
        self.side = side
        self.quality = quality

    async def make(self, source: bytes | IO[bytes]) -> bytes | None:
        """Return a JPEG thumbnail of ``source``, or None if it cannot be decoded."""
        return await asyncio.to_thread(self._make, source)

    def _make(self, source: bytes | IO[bytes]) -> bytes | None:
        from PIL import Image, ImageOps  # noqa: PLC0415 - the optional thumbnails extra

        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(stream) as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise Image.DecompressionBombError("too many pixels")
                    image.draft("RGB", (self.side * 2, self.side * 2))
                    oriented = ImageOps.exif_transpose(image)
                    oriented.thumbnail((self.side, self.side))
                    output = io.BytesIO()
                    oriented.convert("RGB").save(output, "JPEG", quality=self.quality)
                    return output.getvalue()
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            EOFError,
        ) as exc:
            logger.warning("no thumbnail: the image could not be decoded (%s)", exc)
            return None
