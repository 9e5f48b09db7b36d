"""What an image's own headers say its decode will cost, read without decoding it.

One reader per format walks just the headers (JPEG markers up to the first
scan, every PNG chunk, the WebP canvas, the first TIFF directory) with
bounded reads, and returns a :class:`DecodeCost`; :mod:`.image_decoding`
turns it into a budget decision.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from typing import IO, Final

import attrs
from PIL import ImageFile, PngImagePlugin

_MAX_CHUNKS: Final = 1_000_000
_MAX_JPEG_JUNK: Final = 64 * 1024
_MAX_TIFF_TAGS: Final = 4096


class DecodeRefused(Exception):
    """Not decoded: over the budget or the pixel limit, or its headers cannot be read."""


@attrs.frozen
class DecodeCost:
    """What the headers say a decode will cost, before the image is opened.

    Attributes:
        pixels: the canvas the header claims, at full size (None: known once opened).
        held_bytes: what opening reads and keeps (metadata, or the whole file).
        decoder_bytes: the decoder's buffers that do not grow with the decoded canvas.
        decoder_bytes_per_pixel: decoder buffers per pixel of the decoded canvas.
        scalable: the decoder can scale down as it decodes (JPEG's DCT scaling).
        after_open: more decoder bytes, judged from what Pillow read (TIFF strips).
    """

    pixels: int | None
    held_bytes: int
    decoder_bytes: int = 0
    decoder_bytes_per_pixel: int = 0
    scalable: bool = False
    after_open: Callable[[ImageFile.ImageFile], int] | None = None


class Source:
    """Random reads from the encoded image without reading it whole."""

    def __init__(self, stream: IO[bytes], *, shared: bool) -> None:
        self.stream = stream
        self.size = stream.seek(0, io.SEEK_END)
        self.shared = shared

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (fewer at the end)."""
        self.stream.seek(offset)
        return self.stream.read(size)

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        """A ``struct`` at ``offset``; DecodeRefused if the file ends first."""
        data = self.read(offset, struct.calcsize(fmt))
        try:
            return struct.unpack(fmt, data)
        except struct.error:
            raise DecodeRefused("its headers end before they say they do") from None


def bytes_per_pixel(mode: str) -> int:
    """What one pixel costs in Pillow's memory layout (RGB takes 4 bytes, I;16 two)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


# -- JPEG -------------------------------------------------------------------------

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_STANDALONE = frozenset({0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8})


@attrs.frozen
class _Frame:
    marker: int
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]


def _jpeg_cost(source: Source) -> DecodeCost:
    """Walk the markers to the first scan: the frame, and the metadata Pillow keeps."""
    position, metadata, skipped = 2, 0, 0
    frame: _Frame | None = None
    for _ in range(_MAX_CHUNKS):
        position, marker, skipped = _next_jpeg_marker(source, position, skipped)
        if marker in _STANDALONE:
            position += 2
            continue
        length = _jpeg_segment_length(source, position)
        if marker in _SOF:
            if frame is not None:
                raise DecodeRefused("the JPEG has two frame headers")
            frame = _jpeg_frame(marker, source.read(position + 4, length - 2))
        elif marker == 0xDA:
            if frame is None:
                raise DecodeRefused("the JPEG scan starts before its frame header")
            scan = source.read(position + 4, 1)
            return _jpeg_frame_cost(frame, scan[0] if scan else 0, metadata)
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            metadata += length
        elif marker == 0xD9:
            raise DecodeRefused("the JPEG ends before its first scan")
        position += 2 + length
    raise DecodeRefused("the JPEG has too many markers before its first scan")


def _next_jpeg_marker(source: Source, position: int, skipped: int) -> tuple[int, int, int]:
    """The next marker at or after ``position``: its position, its code, the bytes skipped."""
    while True:
        pair = source.read(position, 2)
        if len(pair) < 2:
            raise DecodeRefused("the JPEG ends before its first scan")
        if pair[0] == 0xFF and pair[1] not in (0x00, 0xFF):
            return position, pair[1], skipped
        if pair[0] != 0xFF or pair[1] == 0x00:
            skipped += 1  # Pillow and libjpeg skip stray bytes between markers
            if skipped > _MAX_JPEG_JUNK:
                raise DecodeRefused("the JPEG has too many stray bytes between its markers")
        position += 1  # a stray byte, or a fill byte before a marker


def _jpeg_segment_length(source: Source, position: int) -> int:
    data = source.read(position + 2, 2)
    if len(data) < 2 or int.from_bytes(data, "big") < 2:
        raise DecodeRefused("a JPEG marker segment is cut short")
    return int.from_bytes(data, "big")


def _jpeg_frame(marker: int, body: bytes) -> _Frame:
    if len(body) < 6 or len(body) < 6 + 3 * body[5] or body[5] == 0:
        raise DecodeRefused("the JPEG frame header is cut short")
    height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
    sampling = tuple((body[7 + 3 * i] >> 4, body[7 + 3 * i] & 0x0F) for i in range(body[5]))
    if width == 0 or height == 0 or any(h == 0 or v == 0 for h, v in sampling):
        raise DecodeRefused("the JPEG frame header has a zero dimension or sampling factor")
    return _Frame(marker, width, height, sampling)


def _jpeg_frame_cost(frame: _Frame, components_in_scan: int, metadata: int) -> DecodeCost:
    components = len(frame.sampling)
    decoder = frame.width * components * 64  # libjpeg's rows of MCUs, unscaled
    # libjpeg keeps every DCT coefficient of the image (2 bytes each, whatever the
    # scaling) when the image comes in several scans: progressive, or a first scan
    # that carries only some of the components.
    if frame.marker in _PROGRESSIVE or components_in_scan < components:
        h_max = max(h for h, _ in frame.sampling)
        v_max = max(v for _, v in frame.sampling)
        mcus = math.ceil(frame.width / (8 * h_max)) * math.ceil(frame.height / (8 * v_max))
        decoder += mcus * sum(h * v for h, v in frame.sampling) * 64 * 2
    return DecodeCost(
        pixels=frame.width * frame.height,
        held_bytes=3 * metadata,  # each APPn segment, its parsed copy, the joined ICC profile
        decoder_bytes=decoder,
        scalable=frame.marker not in _LOSSLESS,
    )


# -- PNG --------------------------------------------------------------------------

_PNG_CHANNELS: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_COMPRESSED_TEXT: Final = frozenset({b"zTXt", b"iTXt", b"iCCP"})


def _png_cost(source: Source) -> DecodeCost:
    """Walk every chunk: the header, and the other chunks Pillow reads whole."""
    position, kept, compressed, chunks = 8, 0, 0, 0
    header: tuple[int, ...] | None = None
    animated = False
    while position + 8 <= source.size:
        chunks += 1
        if chunks > _MAX_CHUNKS:
            raise DecodeRefused("the PNG has too many chunks")
        length, kind = struct.unpack(">I4s", source.read(position, 8))
        if kind == b"IHDR":
            if header is not None:
                raise DecodeRefused("the PNG has two IHDR chunks")
            header = source.unpack(">IIBB", position + 8)
        elif kind == b"IEND":
            break
        elif kind != b"IDAT":
            # Pillow reads these whole, keeps some, and inflates compressed text.
            kept += min(length, source.size - position)
            compressed += kind in _PNG_COMPRESSED_TEXT
            animated = animated or kind == b"acTL"
        position += 12 + length
    if header is None:
        raise DecodeRefused("the PNG has no IHDR chunk")
    width, height, depth, color = header
    text = min(
        compressed * PngImagePlugin.MAX_TEXT_CHUNK,
        PngImagePlugin.MAX_TEXT_MEMORY + PngImagePlugin.MAX_TEXT_CHUNK,
    )
    row = (width * _PNG_CHANNELS.get(color, 4) * max(depth, 8) + 7) // 8 + 1
    return DecodeCost(
        pixels=width * height,
        held_bytes=2 * kept + text,
        decoder_bytes=2 * row,  # the row being unfiltered and the one before it
        decoder_bytes_per_pixel=4 if animated else 0,  # APNG: a canvas to dispose to
    )


# -- WebP -------------------------------------------------------------------------


def _webp_cost(source: Source) -> DecodeCost:
    """The canvas libwebp will allocate when Pillow opens the file (before any check)."""
    head = source.read(0, 30)
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = (
            int.from_bytes(head[26:28], "little") & 0x3FFF,
            int.from_bytes(head[28:30], "little") & 0x3FFF,
        )
    elif chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
    else:
        raise DecodeRefused("the WebP header does not give the canvas size")
    return DecodeCost(
        pixels=width * height,
        # Opening reads the whole file and joins it to its first 30 bytes.
        held_bytes=2 * source.size,
        # The animation decoder's two canvases (RGBA), then Pillow's copy of the frame;
        # the lossless decoder's own buffers come and go before that copy.
        decoder_bytes_per_pixel=12,
    )


# -- TIFF -------------------------------------------------------------------------

_TIFF_TYPE_SIZES: Final = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
    16: 8, 17: 8, 18: 8,
}  # fmt: skip
_TIFF_BYTES_TYPES: Final = frozenset({1, 2, 7})
_TIFF_RATIONALS: Final = frozenset({5, 10})


def _tiff_cost(source: Source) -> DecodeCost:
    """The first directory: the tag data Pillow reads and unpacks into Python objects."""
    order = "<" if source.read(0, 2) == b"II" else ">"
    (magic,) = source.unpack(order + "H", 2)
    big = magic == 43
    if big:
        (offset,) = source.unpack(order + "Q", 8)
        count_format, entry_size, inline = "Q", 20, 8
    else:
        (offset,) = source.unpack(order + "I", 4)
        count_format, entry_size, inline = "H", 12, 4
    (tags,) = source.unpack(order + count_format, offset)
    if tags > _MAX_TIFF_TAGS:
        raise DecodeRefused(f"the TIFF directory has {tags:,} tags")
    entries = source.read(offset + struct.calcsize(count_format), tags * entry_size)
    entry_format = order + ("HHQ" if big else "HHI")
    tag_bytes, objects = 0, 0
    for index in range(len(entries) // entry_size):
        _, kind, count = struct.unpack_from(entry_format, entries, index * entry_size)
        size = count * _TIFF_TYPE_SIZES.get(kind, 0)
        if size <= inline:
            continue
        size = min(size, source.size)
        tag_bytes += size
        if kind not in _TIFF_BYTES_TYPES:
            # Each value becomes a Python int or float (about 40 bytes with its slot
            # in a tuple), or an IFDRational (about 160).
            per_value = 160 if kind in _TIFF_RATIONALS else 48
            objects += size // _TIFF_TYPE_SIZES[kind] * per_value
    # libtiff is handed the whole file unless the stream has a descriptor, and a
    # BytesIO's buffer is copied unless it is shared with the bytes it was made from.
    whole_file = 0 if source.shared else source.size
    return DecodeCost(
        pixels=None,
        held_bytes=2 * tag_bytes + objects,  # tag data read, then again for EXIF; its objects
        after_open=lambda image: _tiff_libtiff_bytes(image, whole_file),
    )


def _tiff_libtiff_bytes(image: ImageFile.ImageFile, whole_file: int) -> int:
    """What decoding holds beside the canvas: libtiff's buffers, and Pillow's rotation.

    libtiff fills one strip or tile, decoded and as stored, and may be handed
    the whole file; uncompressed TIFFs are read by Pillow's own decoder, a
    block at a time. Pillow applies a TIFF's orientation itself as it loads,
    with a full-size transposed copy.
    """
    tags = getattr(image, "tag_v2", {})
    rotation = 0
    if tags.get(274, 1) != 1:
        rotation = image.width * image.height * bytes_per_pixel(image.mode)
    if not getattr(image, "use_load_libtiff", True):
        return rotation
    try:
        samples = int(tags.get(277, 1))
        bits_value = tags.get(258, 8)
        bits = max(bits_value) if isinstance(bits_value, tuple) else int(bits_value)
        pixel = max(4, math.ceil(samples * bits / 8))
        if 322 in tags and 323 in tags:
            decoded = int(tags[322]) * int(tags[323]) * pixel
        else:
            rows = min(int(tags.get(278, image.height)), image.height)
            decoded = rows * image.width * pixel
        stored = tags.get(279) or tags.get(325) or (0,)
        largest = max(stored) if isinstance(stored, tuple) else int(stored)
    except (TypeError, ValueError) as error:
        raise DecodeRefused(f"the TIFF layout tags cannot be read ({error})") from None
    return rotation + decoded + int(largest) + whole_file


# -- HEIC / HEIF / AVIF -----------------------------------------------------------


def _heif_cost(source: Source) -> DecodeCost:
    """The plugins read the whole file and decode into planes, then RGB, then Pillow's copy."""
    return DecodeCost(pixels=None, held_bytes=2 * source.size, decoder_bytes_per_pixel=16)


HEADERS: Final[dict[str, Callable[[Source], DecodeCost]]] = {
    "image/jpeg": _jpeg_cost,
    "image/png": _png_cost,
    "image/webp": _webp_cost,
    "image/tiff": _tiff_cost,
    "image/heic": _heif_cost,
    "image/heif": _heif_cost,
}
