"""Hostile image headers: the thumbnail maker never raises and never decodes a big canvas.

The strategies write image files around headers with huge, zero or odd
canvases (PNG IHDR, WebP VP8/VP8L/VP8X, TIFF directories, JPEG frame
headers patched into real JPEGs) and junk after a valid signature, with
pixel data that is missing, short, random or valid zeros. For every example
``make()`` returns None or a small JPEG, and every decode it starts fits the
budget: each canvas Pillow decodes, and each WebP canvas libwebp allocates
when the file opens, is recorded and checked against the cost model. A
subset runs again in a child process whose address space is capped, so that
an allocation outside Pillow's view would fail there and be seen.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import resource
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from PIL import Image, ImageFile

from demeter_storage.adapters.pillow import decoding as image_decoding
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from tests.proof.strategies import fuzz_settings
from tests.support.crafted_images import (
    UNDER_ERROR_SIDE,
    UNDER_WARNING_SIDE,
    animated_webp_canvas,
    pillow_encoded,
    png_chunk,
    riff_webp,
    webp_chunk,
    zero_png,
    zero_tiff,
    zlib_zeros,
)

REPO = Path(__file__).resolve().parents[2]
ADDRESS_LIMIT_ENV = "DEMETER_FUZZ_ADDRESS_LIMIT_MIB"
BUDGET = image_decoding.DECODE_BUDGET_BYTES
MAX_RAW_ZEROS = 512 * 1024
"""Valid pixel data is written for small canvases only (a big valid one is a real decode)."""

# -- strategies -------------------------------------------------------------------

sides = st.one_of(
    st.integers(1, 48),
    st.integers(1000, 20000),
    st.integers(1, 2**31 - 1),
    st.sampled_from(
        [0, 1, UNDER_WARNING_SIDE, UNDER_ERROR_SIDE, 16383, 16384, 65535, 2**31 - 1, 2**32 - 1]
    ),
)
"""Canvas sides: small, large, anything, just under Pillow's thresholds, format limits, zero."""

tails = st.one_of(st.just(b""), st.binary(max_size=64))


def _raw_size(width: int, height: int, bits_per_pixel: int) -> int:
    return height * (1 + (width * bits_per_pixel + 7) // 8)


@st.composite
def png_files(draw: st.DrawFn) -> bytes:
    """An IHDR of any size, depth and colour type; some chunks; pixel data or not."""
    width, height = draw(sides), draw(sides)
    depth, color = draw(
        st.one_of(
            st.sampled_from([(8, 2), (8, 6), (8, 0), (8, 3), (16, 0), (16, 2), (16, 6), (1, 0)]),
            st.tuples(st.sampled_from([1, 2, 4, 8, 16, 0, 3, 32]), st.integers(0, 7)),
        )
    )
    interlace = draw(st.sampled_from([0, 1, 2]))
    header = struct.pack(">IIBBBBB", width % 2**32, height % 2**32, depth, color, 0, 0, interlace)
    chunks = [b"\x89PNG\r\n\x1a\n", png_chunk(b"IHDR", header)]
    extras = st.lists(st.sampled_from(["PLTE", "tRNS", "zTXt", "acTL", "prVt"]), max_size=2)
    for extra in draw(extras):
        body = {
            "PLTE": bytes(range(48)),
            "tRNS": b"\x00",
            "zTXt": b"k\x00\x00" + zlib_zeros(draw(st.integers(0, 2_000_000))),
            "acTL": struct.pack(">II", 1, 0),
            "prVt": draw(st.binary(max_size=32)),
        }[extra]
        chunks.append(png_chunk(extra.encode("ascii"), body))
    raw = _raw_size(width, height, depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 4))
    pixels = draw(st.sampled_from(["zeros", "short", "random", "none"]))
    if pixels == "zeros" and raw <= MAX_RAW_ZEROS:
        chunks.append(png_chunk(b"IDAT", zlib_zeros(raw)))
    elif pixels in ("zeros", "short"):
        chunks.append(png_chunk(b"IDAT", zlib_zeros(draw(st.integers(0, 4096)))))
    elif pixels == "random":
        chunks.append(png_chunk(b"IDAT", draw(st.binary(max_size=64))))
    if draw(st.booleans()):
        chunks.append(png_chunk(b"IEND", b""))
    return b"".join(chunks) + draw(tails)


_TINY_VP8L = pillow_encoded(Image.new("RGBA", (1, 1), (1, 2, 3, 4)), "WEBP", lossless=True)[12:]
_TINY_VP8 = pillow_encoded(Image.new("RGB", (16, 16), (90, 20, 30)), "WEBP", quality=50)[12:]


@st.composite
def webp_files(draw: st.DrawFn) -> bytes:
    """VP8, VP8L and VP8X headers claiming any canvas, over real, junk or no frames."""
    kind = draw(st.sampled_from(["VP8 ", "VP8L", "VP8X", "VP8X-animated"]))
    width, height = draw(sides), draw(sides)
    if kind == "VP8 ":
        frame = bytearray(_TINY_VP8[8:])
        start = b"\x9d\x01\x2a" if draw(st.booleans()) else draw(st.binary(min_size=3, max_size=3))
        frame[3:10] = start + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
        return riff_webp(webp_chunk(b"VP8 ", bytes(frame[: draw(st.integers(0, len(frame)))])))
    if kind == "VP8L":
        bits = ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
        bits |= draw(st.integers(0, 15)) << 28
        body = b"\x2f" + struct.pack("<I", bits) + draw(st.one_of(tails, st.just(_TINY_VP8L[13:])))
        return riff_webp(webp_chunk(b"VP8L", body))
    canvas = ((width - 1) % 2**24).to_bytes(3, "little") + ((height - 1) % 2**24).to_bytes(
        3, "little"
    )
    flags = draw(st.integers(0, 255)) | (0x02 if kind == "VP8X-animated" else 0)
    chunks = webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + canvas)
    if kind == "VP8X-animated":
        anmf = bytes(6) + bytes(6) + struct.pack("<I", 100)[:3] + b"\x00"
        chunks += webp_chunk(b"ANIM", bytes(6)) + webp_chunk(b"ANMF", anmf + _TINY_VP8L)
    else:
        chunks += draw(st.sampled_from([_TINY_VP8L, _TINY_VP8, webp_chunk(b"ALPH", b"\x00")]))
    return riff_webp(chunks + draw(tails))


_TIFF_TYPES = {3: "H", 4: "I"}


def tiff_file(order: str, entries: list[tuple[int, int, list[int]]], data: bytes) -> bytes:
    """A TIFF with one directory (values too long for an entry follow it), then ``data``."""
    count = len(entries)
    extra_offset = 8 + 2 + 12 * count + 4
    extra = b""
    body = struct.pack(order + "H", count)
    data_offset = extra_offset + sum(
        len(values) * struct.calcsize(_TIFF_TYPES[kind])
        for _, kind, values in entries
        if len(values) * struct.calcsize(_TIFF_TYPES[kind]) > 4
    )
    for tag, kind, given_values in sorted(entries):
        values = [data_offset if value == -1 else value for value in given_values]
        packed = struct.pack(order + _TIFF_TYPES[kind] * len(values), *values)
        if len(packed) > 4:
            body += struct.pack(order + "HHII", tag, kind, len(values), extra_offset + len(extra))
            extra += packed
        else:
            body += struct.pack(order + "HHI", tag, kind, len(values))[:8] + packed.ljust(4, b"\0")
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    return head + body + struct.pack(order + "I", 0) + extra + data


@st.composite
def tiff_files(draw: st.DrawFn) -> bytes:
    """A directory with any size, layout, compression and sample format, and some data."""
    order = draw(st.sampled_from(["<", ">"]))
    width, height = draw(sides) % 2**32, draw(sides) % 2**32
    # Mostly layouts Pillow knows (RGB, grey 8 and 16, bilevel, palette, CMYK), then any.
    samples, bits, photometric = draw(
        st.one_of(
            st.sampled_from([(3, 8, 2), (1, 8, 1), (1, 16, 1), (1, 1, 0), (1, 8, 3), (4, 8, 5)]),
            st.tuples(
                st.sampled_from([1, 3, 4, 2, 0, 200]),
                st.sampled_from([8, 16, 1, 32, 0, 12]),
                st.sampled_from([2, 1, 0, 3, 5, 6, 8, 32844]),
            ),
        )
    )
    compression = draw(st.sampled_from([8, 8, 1, 5, 32773, 7, 6, 34712, 99]))
    raw = width * height * max(samples, 1) * max(bits, 1) // 8
    layout = draw(st.sampled_from(["strip", "strips", "tiles"]))
    size = draw(st.integers(0, 2**32 - 1)) if draw(st.booleans()) else min(raw, MAX_RAW_ZEROS)
    zeros = zlib_zeros(min(raw, MAX_RAW_ZEROS))
    data = zeros if compression == 8 else draw(st.binary(max_size=256))
    entries: list[tuple[int, int, list[int]]] = [
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [bits] * max(1, min(samples, 4))),
        (259, 3, [compression]),
        (262, 3, [photometric]),
        (277, 3, [samples]),
        (284, 3, [draw(st.sampled_from([1, 2]))]),
    ]
    if layout == "tiles":
        tile = draw(st.sampled_from([16, 256, 65536, 2**31]))
        entries += [(322, 4, [tile]), (323, 4, [tile]), (324, 4, [-1]), (325, 4, [size])]
    else:
        strips = 1 if layout == "strip" else draw(st.integers(2, 64))
        rows = draw(st.one_of(st.just(height), st.integers(1, 2**32 - 1)))
        entries += [(273, 4, [-1] * strips), (278, 4, [rows]), (279, 4, [size] * strips)]
    return tiff_file(order, entries, data)


_SOF_TYPES = [0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xC5]


def _jpeg_with_frame(jpeg: bytes, marker: int, frame: bytes) -> bytes:
    """``jpeg`` with its frame header replaced by ``marker`` and ``frame``."""
    position = 2
    while position < len(jpeg) - 4:
        code = jpeg[position + 1]
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if code in (0xC0, 0xC2):
            segment = bytes([0xFF, marker]) + struct.pack(">H", len(frame) + 2) + frame
            return jpeg[:position] + segment + jpeg[position + 2 + length :]
        position += 2 + length
    raise AssertionError("no frame header")


_JPEGS = [
    pillow_encoded(Image.new(mode, (32, 24), color), "JPEG", **options)
    for mode, color, options in [
        ("RGB", (200, 30, 40), {}),
        ("RGB", (20, 130, 40), {"progressive": True}),
        ("L", 90, {}),
        ("CMYK", (10, 200, 30, 40), {}),
    ]
]


@st.composite
def jpeg_files(draw: st.DrawFn) -> bytes:
    """Real small JPEGs whose frame header claims another size, precision or sampling."""
    jpeg = draw(st.sampled_from(_JPEGS))
    width, height = draw(sides) & 0xFFFF, draw(sides) & 0xFFFF
    components = draw(st.sampled_from([1, 3, 4, 2, 0]))
    sampling = draw(st.lists(st.sampled_from([0x11, 0x22, 0x21, 0x12, 0x44, 0x00, 0xFF])))
    layers = b"".join(
        bytes([index + 1, sampling[index] if index < len(sampling) else 0x11, 0])
        for index in range(components)
    )
    precision = draw(st.sampled_from([8, 8, 12, 16, 0]))
    frame = struct.pack(">BHHB", precision, height, width, components) + layers
    patched = _jpeg_with_frame(jpeg, draw(st.sampled_from(_SOF_TYPES)), frame)
    if draw(st.booleans()):  # metadata before the frame, as Pillow keeps it
        app = b"Exif\x00\x00" + draw(st.binary(max_size=64))
        patched = patched[:2] + b"\xff\xe1" + struct.pack(">H", len(app) + 2) + app + patched[2:]
    if draw(st.integers(0, 3)) == 0:
        patched = patched[: draw(st.integers(2, len(patched)))]
    return patched


MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00\x08\x00\x00\x00",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
]
FOREIGN = [
    b"GIF89a\xff\xff\xff\xff\xf7\x00\x00",
    b"BM" + struct.pack("<IHHIIiiHH", 0, 0, 0, 54, 40, 65535, -65535, 1, 24),
    b"\x00" * 32,
    b"\xff" * 32,
]
junk_after_magic = st.builds(
    lambda magic, junk, tail: magic + junk + tail,
    st.sampled_from(MAGICS),
    st.sampled_from(FOREIGN),
    st.binary(max_size=128),
)

hostile_images = st.one_of(png_files(), webp_files(), tiff_files(), jpeg_files(), junk_after_magic)

# -- the property -----------------------------------------------------------------


class Decodes:
    """Every canvas Pillow decodes and every WebP canvas opened, recorded from any thread."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, tuple[int, int]]] = []
        self.opened_webp: list[tuple[int, int]] = []

    def clear(self) -> None:
        self.loaded.clear()
        self.opened_webp.clear()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    record = Decodes()
    load, open_image = Image.Image.load, image_decoding._open

    def spy_load(self: Image.Image) -> object:
        if getattr(self, "tile", None):
            record.loaded.append((self.mode, self.size))
        return load(self)

    def spy_open(kind: str, stream: IO[bytes]) -> ImageFile.ImageFile:
        image = open_image(kind, stream)
        if kind == "image/webp":
            record.opened_webp.append(image.size)
        return image

    monkeypatch.setattr(Image.Image, "load", spy_load)
    monkeypatch.setattr(image_decoding, "_open", spy_open)
    return record


@pytest.fixture
def maker() -> Iterator[PillowThumbnailMaker]:
    limit = os.environ.get(ADDRESS_LIMIT_ENV)
    if limit:  # the child run: cap the address space a little above what is mapped now
        with open("/proc/self/status", encoding="ascii") as status:
            mapped = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
        ceiling = mapped * 1024 + int(limit) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, resource.RLIM_INFINITY))
    maker = PillowThumbnailMaker(max_concurrent_decodes=1)
    yield maker
    maker.close()


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# Pillow warns about damaged files (UserWarning); the suite makes warnings errors,
# production does not, and the thumbnail maker only has to turn errors into None.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@fuzz_settings(weight=0.5)
@given(data=hostile_images)
@example(data=zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 2))
@example(data=animated_webp_canvas(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE))
@example(data=zero_tiff(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE))
@example(data=zero_png(8000, 8000, 6)[:200_000])
def test_hostile_headers_get_no_error_and_no_big_canvas(
    loop: asyncio.Runner, maker: PillowThumbnailMaker, decodes: Decodes, data: bytes
) -> None:
    decodes.clear()
    warnings = Warnings()
    logger = logging.getLogger("demeter_storage.adapters.pillow.thumbnails")
    logger.addHandler(warnings)
    try:
        thumbnail = loop.run(maker.make(data))
    finally:
        logger.removeHandler(warnings)
    # The thumbnail's own check below decodes too: judge the maker's decodes first.
    for mode, (width, height) in decodes.loaded:
        assert width * height * image_decoding.bytes_per_pixel(mode) <= BUDGET, (mode, width)
    for width, height in decodes.opened_webp:  # libwebp's two RGBA canvases, made at open
        assert width * height * 8 <= BUDGET, (width, height)
    assert not any("MemoryError" in message for message in warnings.messages), warnings.messages
    if thumbnail is None:
        assert len(warnings.messages) == 1, warnings.messages
        reason = warnings.messages[0].removeprefix("no thumbnail: ").split(" (")[0]
        event("no thumbnail: " + re.sub(r"[0-9][0-9,]*", "N", reason))
        return
    event("thumbnail")
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.format == "JPEG"
        assert max(image.size) <= 256
        image.load()


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
def test_the_strategies_make_thumbnails_and_refusals_alike(
    loop: asyncio.Runner, maker: PillowThumbnailMaker
) -> None:
    outcomes: set[str] = set()

    @fuzz_settings(weight=0.1)
    @given(data=hostile_images)
    def sample(data: bytes) -> None:
        outcomes.add("thumbnail" if loop.run(maker.make(data)) is not None else "none")

    sample()
    assert outcomes == {"thumbnail", "none"}


@pytest.mark.slow
def test_the_property_holds_with_the_address_space_capped() -> None:
    """A child pytest runs the property with 1 GiB of address space to spare."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{__file__}::test_hostile_headers_get_no_error_and_no_big_canvas",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO,
        env={**os.environ, ADDRESS_LIMIT_ENV: "1024", "DEMETER_FUZZ_EXAMPLES": "300"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
