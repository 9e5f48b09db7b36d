"""JPEG thumbnails with Pillow (the optional ``thumbnails`` extra), in bounded memory.

Every decode is judged first (:mod:`~demeter_storage.adapters.pillow.decoding`):
one whose canvas, decoder buffers and copies would exceed the budget is not
started, and the image is stored without a thumbnail. Decodes run on a pool
of ``max_concurrent_decodes`` threads, so that many uploads at once queue for
a decode slot instead of each holding a canvas. See ``docs/thumbnails.md``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Final, cast

from demeter_storage.ports import ThumbnailMaker

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE: Final = 256
WHITE: Final = (255, 255, 255, 255)
_ALPHA_MODES: Final = frozenset({"LA", "La", "RGBA", "RGBa"})
_PALETTE_MODES: Final = frozenset({"P", "PA"})


def pillow_available() -> bool:
    """Whether Pillow is installed."""
    return importlib.util.find_spec("PIL") is not None


class PillowThumbnailMaker(ThumbnailMaker):
    """Thumbnails whose longest side is 256 px, as JPEG, each decoded within a memory budget.

    JPEGs are decoded at reduced size (``draft`` mode, down to 1/8), so large
    photos cost little; other formats are decoded whole, if the decode fits
    the budget (``image_decoding.DECODE_BUDGET_BYTES``), and not at all
    otherwise. 16-bit greyscale is scaled to 8 bits, CMYK converted, any
    transparency composited on white, and the EXIF orientation applied, all
    after shrinking. Images that are over the budget or cannot be decoded
    (HEIC without a plugin, truncated files, hostile headers) get no
    thumbnail rather than an error, and one warning in the log.

    Args:
        side: the longest side of a thumbnail, in pixels.
        quality: the JPEG quality of thumbnails (1 to 95).
        max_concurrent_decodes: how many images are decoded at once, at most
            (``DEMETER_MAX_CONCURRENT_DECODES``); None means the CPU count.
    """

    def __init__(
        self,
        side: int = THUMBNAIL_SIDE,
        quality: int = 82,
        *,
        max_concurrent_decodes: int | None = None,
    ) -> None:
        if not pillow_available():
            raise ImportError("Pillow is missing: pip install 'demeter-storage[thumbnails]'")
        limit = (os.cpu_count() or 1) if max_concurrent_decodes is None else max_concurrent_decodes
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"max_concurrent_decodes must be an int, got {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"max_concurrent_decodes must be at least 1, got {limit}")
        self.side = side
        self.quality = quality
        self.max_concurrent_decodes = limit
        # A pool of its own: its size is the bound on decodes in flight, and a queue of
        # uploads waiting for it holds no thread of the event loop's default executor.
        self._decodes = ThreadPoolExecutor(limit, thread_name_prefix="demeter-thumbnail")

    async def make(self, source: bytes | IO[bytes]) -> bytes | None:
        """Return a JPEG thumbnail of ``source``, or None if it is not decoded."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._decodes, self._make, source)

    def close(self) -> None:
        """Stop the decode threads once the decodes in flight are done."""
        self._decodes.shutdown(wait=True)

    async def aclose(self) -> None:
        """:meth:`close`, without blocking the event loop (``ImageService.aclose`` calls it)."""
        await asyncio.to_thread(self.close)

    def _make(self, source: bytes | IO[bytes]) -> bytes | None:
        from demeter_storage.adapters.pillow import decoding as image_decoding  # noqa: PLC0415 - Pillow is optional

        shared = isinstance(source, bytes)
        stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
        try:
            image = image_decoding.open_within_budget(
                stream,
                draft_side=2 * self.side,
                copies_bytes_per_pixel=copies_bytes_per_pixel,
                shared_bytes=shared,
            )
        except image_decoding.DecodeRefused as refused:
            logger.warning("no thumbnail: %s", str(refused))
            return None
        except Exception as error:  # Pillow's plugins raise many types on bad headers
            logger.warning("no thumbnail: the image could not be opened (%s)", _text(error))
            return None
        try:
            return render(image, self.side, self.quality)
        except Exception as error:  # and its decoders as many on bad data
            logger.warning("no thumbnail: the image could not be decoded (%s)", _text(error))
            return None
        finally:
            image.close()


def _text(error: BaseException) -> str:
    # Logged as text, never as the exception: a handler that keeps records (pytest's,
    # an error tracker's) would keep its traceback, whose frames hold the canvas.
    return f"{type(error).__name__}: {error}"


def copies_bytes_per_pixel(image: Image.Image) -> int:
    """The full-size copies :func:`render` makes of ``image``, in bytes per pixel.

    Pillow resamples an image with alpha through a premultiplied copy; a
    palette image is expanded to RGB(A) first (and then resampled with its
    alpha); 1-bit images to L; 16-bit images other than ``I;16`` to 32 bits.
    """
    mode = image.mode
    if mode in _PALETTE_MODES:
        return 8 if _transparent(image) else 4
    if mode == "1":
        return 1
    if mode in _ALPHA_MODES:
        return 4
    if mode in ("L", "RGB") and _transparent(image):
        return 8
    if mode.startswith("I;16") and mode != "I;16":
        return 4
    return 0


def render(image: Image.Image, side: int, quality: int) -> bytes:
    """Decode ``image``, shrink it to ``side``, then fix its colours and orientation; as JPEG."""
    image.load()
    orientation = _orientation(image)
    small = _shrink(image, side)
    shown = _orient(_displayable(small), orientation)
    output = io.BytesIO()
    shown.save(output, "JPEG", quality=quality)
    return output.getvalue()


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("PA", "LA", "RGBA") or "transparency" in image.info


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """A copy of ``image`` no larger than ``side`` a side, made with as few full-size copies."""
    from PIL import Image  # noqa: PLC0415 - the optional thumbnails extra

    work = image
    if image.mode in _PALETTE_MODES:
        work = image.convert("RGBA" if _transparent(image) else "RGB")
    elif image.mode == "1":
        work = image.convert("L")
    elif image.mode in ("L", "RGB") and _transparent(image):
        work = image.convert("LA" if image.mode == "L" else "RGBA")
    elif image.mode.startswith("I;16") and image.mode != "I;16":
        work = image.convert("I")
    if work is not image:
        image.close()  # the full-size original is no longer needed
    if work.mode == "I;16":
        # Pillow resamples I;16 but cannot reduce() it: one resize, straight to size.
        target = _fitted(work.size, side)
        return work if target == work.size else work.resize(target, Image.Resampling.LANCZOS)
    work.thumbnail((side, side), Image.Resampling.LANCZOS)
    return work


def _fitted(size: tuple[int, int], side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _displayable(image: Image.Image) -> Image.Image:
    """The small image as 8-bit L or RGB: deep greys scaled, CMYK converted, alpha on white."""
    from PIL import Image  # noqa: PLC0415 - the optional thumbnails extra

    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode.startswith("I;16"):
        return _eight_bit(image.convert("I"), top=65535)
    if mode in ("I", "F"):
        return _eight_bit(image, top=None)
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba)
        return flat.convert("L" if mode.startswith("L") else "RGB")
    return image.convert("RGB")


def _eight_bit(image: Image.Image, top: int | None) -> Image.Image:
    """A 32-bit integer or float greyscale image scaled to 0..255, never clipped.

    ``top`` is the value that becomes white (65535 for 16-bit data); None
    guesses it: 255 or 65535 for integers in those ranges, 1.0 for floats
    from 0 to 1, else the image's own range is stretched.
    """
    low, high = cast("tuple[float, float]", image.getextrema())  # one band: (min, max)
    offset = 0.0
    if top is not None:
        scale = 255.0 / top
    elif image.mode == "I" and low >= 0 and high <= 65535:
        scale = 1.0 if high <= 255 else 255.0 / 65535
    elif image.mode == "F" and low >= 0 and high <= 1:
        scale = 255.0
    else:
        scale = 255.0 / (high - low) if high > low else 0.0
        offset = -low * scale
    return image.point(lambda value: value * scale + offset).convert("L")


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block costs only the orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    from PIL import Image  # noqa: PLC0415 - the optional thumbnails extra

    # EXIF orientation -> the transposition that shows the picture upright.
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image if method is None else image.transpose(method)
