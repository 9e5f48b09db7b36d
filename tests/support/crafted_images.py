"""Crafted image files for the decoding tests: huge canvases in few bytes, and real pictures.

The huge-canvas files are written by hand (PNG chunks, TIFF tags, WebP
headers) around a zlib stream of zeros that is itself written bit by bit, so
that a 90-megapixel PNG costs a millisecond and 260 KB to make, not the
canvas it claims.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

# Pillow's decompression-bomb thresholds (Image.MAX_IMAGE_PIXELS and twice it).
PILLOW_WARNING_PIXELS = 89_478_485
PILLOW_ERROR_PIXELS = 2 * PILLOW_WARNING_PIXELS
UNDER_WARNING_SIDE = 9459  # 9459 x 9459 = 89,472,681 pixels
UNDER_ERROR_SIDE = 13377  # 13377 x 13377 = 178,944,129 pixels


class _Bits:
    """An LSB-first bit writer, as deflate packs its stream."""

    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def code(self, code: int, length: int) -> None:
        """Append a Huffman code (deflate stores these most significant bit first)."""
        reversed_code = int(format(code, f"0{length}b")[::-1], 2)
        self.value |= reversed_code << self.count
        self.count += length

    def number(self, value: int, length: int) -> None:
        """Append a plain number (least significant bit first)."""
        self.value |= value << self.count
        self.count += length

    def take(self) -> bytes:
        """The whole bytes written so far (the count must be a multiple of 8)."""
        assert self.count % 8 == 0
        data = self.value.to_bytes(self.count // 8, "little")
        self.value, self.count = 0, 0
        return data

    def flush(self) -> bytes:
        """Pad to a byte and return everything."""
        self.count += -self.count % 8
        return self.take()


_CODE_LENGTH_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)


def zlib_zeros(size: int) -> bytes:
    """A zlib stream that inflates to ``size`` zero bytes, about 1,032 to 1.

    One dynamic-Huffman block whose alphabet has three symbols: the literal
    0 (code ``10``), the length 258 (code ``0``) and the end of block (code
    ``11``), with one distance, 1 (code ``0``). A literal zero starts it;
    then every 258 zero bytes cost 2 bits, so the bulk is plain zero bytes.
    """
    bits = _Bits()
    bits.number(1, 1)  # BFINAL
    bits.number(2, 2)  # BTYPE 10: dynamic codes
    bits.number(286 - 257, 5)  # HLIT: literal/length codes up to 285
    bits.number(0, 5)  # HDIST: one distance code
    # HCLEN: all 19 code-length code lengths (one more than needed: it makes the
    # header's bit count even, so that 2-bit matches reach a byte boundary).
    bits.number(19 - 4, 4)
    lengths = {18: 1, 1: 2, 2: 2}  # code-length alphabet: 18 -> 0, 1 -> 10, 2 -> 11
    for symbol in _CODE_LENGTH_ORDER:
        bits.number(lengths.get(symbol, 0), 3)
    # Literal/length code lengths: 0 -> 2, 1..255 -> 0, 256 -> 2, 257..284 -> 0, 285 -> 1;
    # then the one distance code length: 1.
    bits.code(0b11, 2)  # length 2 (symbol 0)
    bits.code(0, 1)
    bits.number(138 - 11, 7)  # 138 zeros
    bits.code(0, 1)
    bits.number(117 - 11, 7)  # 117 zeros
    bits.code(0b11, 2)  # length 2 (symbol 256)
    bits.code(0, 1)
    bits.number(28 - 11, 7)  # 28 zeros
    bits.code(0b10, 2)  # length 1 (symbol 285)
    bits.code(0b10, 2)  # length 1 (distance 0)
    out = [b"\x78\x01", b""]  # zlib header: deflate, 32 KiB window, no dictionary
    remaining = size
    if remaining > 258:
        bits.code(0b10, 2)  # literal 0
        matches, remaining = divmod(remaining - 1, 258)
        while matches and bits.count % 8:
            bits.code(0, 2)  # length 258, distance 1: two zero bits
            matches -= 1
        if bits.count % 8 == 0:
            out[1] = bits.take()
            out.append(bytes(matches // 4))
            matches %= 4
        bits.number(0, 2 * matches)
    for _ in range(remaining):
        bits.code(0b10, 2)
    bits.code(0b11, 2)  # end of block
    out.append(bits.flush())
    out.append(struct.pack(">I", ((size % 65521) << 16) | 1))  # Adler-32 of zeros
    return b"".join(out)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_header(width: int, height: int, color_type: int = 2, bit_depth: int = 8) -> bytes:
    """The PNG signature and an IHDR chunk."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)


def zero_png(
    width: int, height: int, color_type: int = 2, bit_depth: int = 8, extra: bytes = b""
) -> bytes:
    """A complete PNG whose every pixel (and filter byte) is zero: black, or index 0."""
    row = 1 + (width * PNG_CHANNELS[color_type] * bit_depth + 7) // 8
    chunks = [png_header(width, height, color_type, bit_depth), extra]
    if color_type == 3:
        chunks.append(png_chunk(b"PLTE", b"\x00\x00\x00"))
    chunks.append(png_chunk(b"IDAT", zlib_zeros(row * height)))
    chunks.append(png_chunk(b"IEND", b""))
    return b"".join(chunks)


def _ifd_entry(tag: int, kind: int, count: int, value: int) -> bytes:
    return struct.pack("<HHII", tag, kind, count, value)


def zero_tiff(width: int, height: int, rows_per_strip: int | None = None) -> bytes:
    """A little-endian RGB TIFF, deflate-compressed, every pixel black, in one strip."""
    strip = zlib_zeros(width * height * 3)
    entries = 10
    ifd_offset = 8
    bits_offset = ifd_offset + 2 + entries * 12 + 4
    data_offset = bits_offset + 6
    ifd = b"".join(
        [
            struct.pack("<H", entries),
            _ifd_entry(256, 4, 1, width),
            _ifd_entry(257, 4, 1, height),
            _ifd_entry(258, 3, 3, bits_offset),
            _ifd_entry(259, 3, 1, 8),  # Adobe deflate
            _ifd_entry(262, 3, 1, 2),  # RGB
            _ifd_entry(273, 4, 1, data_offset),
            _ifd_entry(277, 3, 1, 3),
            _ifd_entry(278, 4, 1, rows_per_strip or height),
            _ifd_entry(279, 4, 1, len(strip)),
            _ifd_entry(284, 3, 1, 1),
            struct.pack("<I", 0),
        ]
    )
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + struct.pack("<HHH", 8, 8, 8) + strip


def riff_webp(chunks: bytes) -> bytes:
    """Wrap WebP chunks in their RIFF header."""
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def webp_chunk(kind: bytes, data: bytes) -> bytes:
    """One RIFF chunk, padded to an even size."""
    return kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2)


def _tiny_webp_frame() -> bytes:
    """The VP8L chunk of a real 1 x 1 lossless WebP."""
    output = io.BytesIO()
    Image.new("RGBA", (1, 1), (10, 200, 30, 255)).save(output, "WEBP", lossless=True)
    data = output.getvalue()
    assert data[12:16] == b"VP8L", data[:16]
    return data[12:]


def animated_webp_canvas(width: int, height: int) -> bytes:
    """A few-dozen-byte animated WebP: a huge canvas holding one 1 x 1 frame.

    libwebp's animation decoder allocates (and clears) the whole canvas,
    twice, before the first frame is drawn; Pillow copies it twice more.
    """
    vp8x = struct.pack("<B3x", 0x02 | 0x10)  # animation, alpha
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    anim = struct.pack("<IH", 0xFFFFFFFF, 0)
    frame = b"\x00" * 6 + b"\x00\x00\x00" + b"\x00\x00\x00"  # offset 0,0; 1 x 1
    frame += struct.pack("<I", 100)[:3] + b"\x00"  # duration, flags
    anmf = webp_chunk(b"ANMF", frame + _tiny_webp_frame())
    return riff_webp(webp_chunk(b"VP8X", vp8x) + webp_chunk(b"ANIM", anim) + anmf)


def vp8l_header(width: int, height: int, tail: bytes = b"") -> bytes:
    """A simple lossless WebP whose header claims ``width`` x ``height`` (1 to 16,384)."""
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)  # alpha hint, version 0
    return riff_webp(webp_chunk(b"VP8L", b"\x2f" + struct.pack("<I", bits) + tail))


def pillow_encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved by Pillow in ``fmt``."""
    output = io.BytesIO()
    image.save(output, fmt, **options)
    return output.getvalue()


def gradient_16bit_png(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG: a horizontal ramp over the full 0..65535 range."""
    row = b"".join(struct.pack(">H", x * 65535 // (width - 1)) for x in range(width))
    raw = b"".join(b"\x00" + row for _ in range(height))
    chunks = [png_header(width, height, 0, 16), png_chunk(b"IDAT", zlib.compress(raw, 6))]
    return b"".join([*chunks, png_chunk(b"IEND", b"")])


def quadrants(size: tuple[int, int], colors: tuple[tuple[int, int, int], ...]) -> Image.Image:
    """An RGB picture of four flat quadrants: top-left, top-right, bottom-left, bottom-right."""
    width, height = size
    image = Image.new("RGB", size)
    boxes = [
        (0, 0, width // 2, height // 2),
        (width // 2, 0, width, height // 2),
        (0, height // 2, width // 2, height),
        (width // 2, height // 2, width, height),
    ]
    for box, color in zip(boxes, colors, strict=True):
        image.paste(color, box)
    return image


QUADRANT_COLORS = ((220, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 40))


def large_jpeg(width: int = 12000, height: int = 9000) -> bytes:
    """A baseline 4:2:0 JPEG of four coloured quadrants (a 108-megapixel photo by default)."""
    return pillow_encoded(quadrants((width, height), QUADRANT_COLORS), "JPEG", quality=85)


MEMORY_CASES: dict[str, Callable[[], bytes]] = {
    "png-rgb-under-warning": lambda: zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 2),
    "png-rgba-under-warning": lambda: zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 6),
    "png-rgb-under-error": lambda: zero_png(UNDER_ERROR_SIDE, UNDER_ERROR_SIDE, 2),
    "png-grey-under-error": lambda: zero_png(UNDER_ERROR_SIDE, UNDER_ERROR_SIDE, 0),
    "webp-canvas-under-warning": lambda: animated_webp_canvas(
        UNDER_WARNING_SIDE, UNDER_WARNING_SIDE
    ),
    "tiff-rgb-under-warning": lambda: zero_tiff(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE),
    "png-16bit-grey-24mp": lambda: zero_png(6000, 4000, 0, 16),
    "png-rgba-near-budget": lambda: zero_png(5100, 5100, 6),
    "webp-12mp-photo": lambda: pillow_encoded(
        quadrants((4032, 3024), QUADRANT_COLORS), "WEBP", quality=80
    ),
    "jpeg-108mp": large_jpeg,
}
"""The crafted inputs of the memory proof, by name."""


def write_memory_cases(directory: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Write the memory proof's inputs into ``directory``; return their paths by name."""
    paths = {}
    for name in names or list(MEMORY_CASES):
        path = directory / f"{name}.bin"
        if not path.exists():
            path.write_bytes(MEMORY_CASES[name]())
        paths[name] = path
    return paths
