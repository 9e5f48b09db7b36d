"""PillowThumbnailMaker: decodes within a budget, a bound on decodes at once, right colours.

Colours and orientation are checked against a reference made independently:
the whole image decoded at full size, oriented, converted and composited there
with Pillow's plain operations, then box-averaged to the thumbnail's size; the
two must agree in per-channel means and in the mean colour of each quadrant.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import threading
from collections.abc import Callable

import pytest
from PIL import Image, ImageOps, ImageStat, JpegImagePlugin, features

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.pillow import decoding as image_decoding
from demeter_storage.adapters.pillow import headers as image_headers
from demeter_storage.adapters.pillow import thumbnails
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from tests.support.crafted_images import (
    QUADRANT_COLORS,
    UNDER_ERROR_SIDE,
    UNDER_WARNING_SIDE,
    animated_webp_canvas,
    gradient_16bit_png,
    pillow_encoded,
    png_chunk,
    png_header,
    quadrants,
    vp8l_header,
    zero_png,
    zero_tiff,
    zlib_zeros,
)

WHITE = (255, 255, 255)

HUGE_CANVASES: dict[str, Callable[[], bytes]] = {
    "png-rgb": lambda: zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 2),
    "png-rgba": lambda: zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 6),
    "png-rgb-16bit": lambda: zero_png(9000, 9000, 2, 16),
    "png-palette": lambda: zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 3),
    "webp-animated-canvas": lambda: animated_webp_canvas(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE),
    "webp-lossless-header": lambda: vp8l_header(9000, 9000, b"\x00" * 64),
    "tiff-rgb": lambda: zero_tiff(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE),
    "tiff-one-huge-strip": lambda: zero_tiff(6000, 6000),
}
"""Small files whose decode would take 250 MiB to 2 GiB (before the fix, it did)."""


def make(data: bytes | io.BytesIO, **options: int) -> bytes | None:
    maker = PillowThumbnailMaker(**options)
    try:
        return asyncio.run(maker.make(data))
    finally:
        maker.close()


def opened(thumbnail: bytes | None) -> Image.Image:
    assert thumbnail is not None, "no thumbnail was made"
    image = Image.open(io.BytesIO(thumbnail))
    assert image.format == "JPEG"
    assert max(image.size) <= 256
    return image


def quadrant_means(image: Image.Image) -> list[list[float]]:
    rgb = image.convert("RGB")
    width, height = rgb.size
    boxes = [
        (0, 0, width // 2, height // 2),
        (width // 2, 0, width, height // 2),
        (0, height // 2, width // 2, height),
        (width // 2, height // 2, width, height),
    ]
    # The middle half of each quadrant: JPEG ringing at the borders is not the point.
    inner = [
        (x0 + (x1 - x0) // 4, y0 + (y1 - y0) // 4, x1 - (x1 - x0) // 4, y1 - (y1 - y0) // 4)
        for x0, y0, x1, y1 in boxes
    ]
    return [ImageStat.Stat(rgb.crop(box)).mean for box in inner]


def reference(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The plain full-size pipeline: decode, orient, to 8-bit RGB on white, then shrink."""
    image = Image.open(io.BytesIO(data))
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    if image.mode in ("P", "PA", "LA", "RGBA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (*WHITE, 255)), rgba)
    return image.convert("RGB").resize(size, Image.Resampling.BOX)


def assert_looks_like(thumbnail: Image.Image, expected: Image.Image, tolerance: float) -> None:
    assert thumbnail.size == expected.size
    got = ImageStat.Stat(thumbnail.convert("RGB")).mean
    want = ImageStat.Stat(expected).mean
    assert got == pytest.approx(want, abs=tolerance), (got, want)
    for got_quadrant, want_quadrant in zip(
        quadrant_means(thumbnail), quadrant_means(expected), strict=True
    ):
        assert got_quadrant == pytest.approx(want_quadrant, abs=tolerance), (
            quadrant_means(thumbnail),
            quadrant_means(expected),
        )


def assert_matches_reference(data: bytes, tolerance: float = 4.0) -> Image.Image:
    thumbnail = opened(make(data))
    assert_looks_like(thumbnail, reference(data, thumbnail.size), tolerance)
    return thumbnail


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, int]]]:
    """Every decode started, with the mode and size it decodes to.

    Every plugin's ``load`` (libtiff's too) starts with ``Image.Image.load``
    while the file's tiles are still to be decoded.
    """
    started: list[tuple[str, tuple[int, int]]] = []
    original = Image.Image.load

    def spy(self: Image.Image) -> object:
        if getattr(self, "tile", None):
            started.append((self.mode, self.size))
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    return started


# -- the budget -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HUGE_CANVASES))
def test_a_small_file_with_a_huge_canvas_is_not_decoded(
    name: str, loads: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    data = HUGE_CANVASES[name]()
    assert len(data) < 2_000_000
    with caplog.at_level(logging.WARNING, logger=thumbnails.__name__):
        assert make(data) is None
    assert loads == []
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings
    assert "no thumbnail" in warnings[0]
    assert "budget" in warnings[0] or "limit" in warnings[0]


def test_a_canvas_just_under_the_budget_is_decoded_and_one_just_over_is_not(
    loads: list[tuple[str, tuple[int, int]]],
) -> None:
    # RGBA costs 9 bytes a pixel (canvas, premultiplied copy, a quarter for reduce()).
    assert opened(make(zero_png(5100, 5100, 6))).getpixel((10, 10)) == pytest.approx(WHITE, abs=2)
    assert make(zero_png(5300, 5300, 6)) is None
    assert [size for _, size in loads if size != (256, 256)] == [(5100, 5100)]


def test_above_the_pixel_limit_nothing_is_decoded(
    loads: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    grey = zero_png(UNDER_ERROR_SIDE, UNDER_ERROR_SIDE, 0)  # 179 MB as greyscale
    with caplog.at_level(logging.WARNING, logger=thumbnails.__name__):
        assert make(grey) is None
    assert "over the limit of 89,478,485" in caplog.text
    assert loads == []


def test_a_jpeg_header_beyond_the_header_limit_is_not_decoded(loads: list[object]) -> None:
    # SOI, then a frame header claiming 65535 x 65535 and a scan: no pixel data at all.
    sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    assert make(b"\xff\xd8" + sof + sos + b"\x00" * 64 + b"\xff\xd9") is None
    assert loads == []


def test_large_jpegs_are_decoded_scaled_down(loads: list[tuple[str, tuple[int, int]]]) -> None:
    data = pillow_encoded(quadrants((6000, 4000), QUADRANT_COLORS), "JPEG", quality=85)
    thumbnail = assert_matches_reference(data)
    assert thumbnail.size == (256, 171)
    assert loads[0] == ("RGB", (1500, 1000))  # a quarter of each side, by libjpeg's DCT scaling


def test_a_progressive_jpeg_costs_its_coefficients_whatever_the_scaling() -> None:
    data = pillow_encoded(Image.new("RGB", (3000, 2000), (90, 10, 200)), "JPEG", progressive=True)
    source = image_headers.Source(io.BytesIO(data), shared=True)
    cost = image_headers._jpeg_cost(source)
    # 4:2:0: 1.5 samples a pixel, one 2-byte coefficient each.
    assert cost.decoder_bytes >= 3000 * 2000 * 3
    baseline = pillow_encoded(Image.new("RGB", (3000, 2000), (90, 10, 200)), "JPEG")
    cost = image_headers._jpeg_cost(image_headers.Source(io.BytesIO(baseline), shared=True))
    assert cost.decoder_bytes < 3000 * 2000 // 4


def test_the_png_chunks_pillow_would_hold_count_against_the_budget(loads: list[object]) -> None:
    # 1 x 1 pixel, then a private chunk of 8 MB that Pillow would read and keep.
    chunks = png_header(1, 1, 0) + png_chunk(b"prVt", bytes(8_000_000))
    data = chunks + png_chunk(b"IDAT", zlib_zeros(2)) + png_chunk(b"IEND", b"")
    cost = image_headers._png_cost(image_headers.Source(io.BytesIO(data), shared=True))
    assert cost.held_bytes >= 16_000_000
    with pytest.raises(image_decoding.DecodeRefused, match="budget"):
        image_decoding.open_within_budget(
            io.BytesIO(data),
            draft_side=512,
            copies_bytes_per_pixel=thumbnails.copies_bytes_per_pixel,
            budget=15 * image_decoding.MIB,
        )
    assert loads == []
    assert make(data) is not None  # within the real budget: a thumbnail


def test_a_tiff_directory_with_millions_of_values_is_not_opened(loads: list[object]) -> None:
    tiff = bytearray(zero_tiff(64, 64))
    # Point StripByteCounts at 8 million SHORTs (Pillow would make 8 million ints of them).
    entry = tiff.index(struct.pack("<HHI", 279, 4, 1))
    tiff[entry : entry + 12] = struct.pack("<HHII", 279, 3, 8_000_000, len(tiff))
    tiff += bytes(16_000_000)
    assert make(bytes(tiff)) is None
    assert loads == []


# -- colours ----------------------------------------------------------------------


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped() -> None:
    thumbnail = assert_matches_reference(gradient_16bit_png(1024, 512))
    left, right = quadrant_means(thumbnail)[0][0], quadrant_means(thumbnail)[1][0]
    assert 40 < left < 90 and 165 < right < 215  # a ramp from black to white, not all white


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_tiffs_are_scaled_too(mode: str) -> None:
    ramp = Image.open(io.BytesIO(gradient_16bit_png(600, 300))).convert("I").convert(mode)
    assert ramp.mode == mode
    assert_matches_reference(pillow_encoded(ramp, "TIFF"))


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted(fmt: str) -> None:
    cmyk = Image.merge(
        "CMYK",
        [band.convert("L") for band in quadrants((600, 400), QUADRANT_COLORS).split()]
        + [Image.new("L", (600, 400), 40)],
    )
    data = pillow_encoded(cmyk, fmt)
    if fmt == "JPEG":
        assert Image.open(io.BytesIO(data)).info.get("adobe")  # an Adobe (inverted) CMYK JPEG
    assert_matches_reference(data)


def test_a_palette_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (400, 300), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30, 20, 20, 220] + [0] * 759)
    palette.paste(1, (200, 0, 400, 150))
    palette.paste(2, (0, 150, 200, 300))
    data = pillow_encoded(palette, "PNG", transparency=0)
    thumbnail = assert_matches_reference(data)
    top_left, top_right, bottom_left, _ = quadrant_means(thumbnail)
    assert top_left == pytest.approx(WHITE, abs=3)  # transparent black shows as white
    assert top_right == pytest.approx((200, 30, 30), abs=6)
    assert bottom_left == pytest.approx((20, 20, 220), abs=6)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode: str) -> None:
    picture = quadrants((400, 300), QUADRANT_COLORS).convert(mode[:-1] or "L")
    alpha = Image.linear_gradient("L").resize((400, 300))  # opaque at the bottom
    picture.putalpha(alpha)
    assert picture.mode == mode
    thumbnail = assert_matches_reference(pillow_encoded(picture, "PNG"))
    assert ImageStat.Stat(thumbnail.convert("L").crop((0, 0, 256, 10))).mean[0] > 240


def test_a_colour_key_is_composited_on_white() -> None:
    picture = quadrants((400, 300), ((0, 0, 0), *QUADRANT_COLORS[1:]))
    data = pillow_encoded(picture, "PNG", transparency=(0, 0, 0))
    top_left = quadrant_means(assert_matches_reference(data))[0]
    assert top_left == pytest.approx(WHITE, abs=3)


def test_one_bit_images_are_smoothed_to_grey() -> None:
    checks = Image.new("1", (512, 512), 0)
    checks.paste(1, (0, 0, 256, 512))
    assert_matches_reference(pillow_encoded(checks, "PNG"))


# -- orientation ------------------------------------------------------------------


def oriented_file(orientation: int, fmt: str, size: tuple[int, int] = (300, 200)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = quadrants(size, QUADRANT_COLORS)
    if fmt == "TIFF":
        return pillow_encoded(picture, fmt, tiffinfo={0x0112: orientation})
    return pillow_encoded(picture, fmt, exif=exif.tobytes())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int, fmt: str) -> None:
    data = oriented_file(orientation, fmt)
    thumbnail = assert_matches_reference(data, tolerance=8)
    assert thumbnail.size == ((256, 171) if orientation < 5 else (171, 256))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_is_applied_to_drafted_jpegs(orientation: int) -> None:
    data = oriented_file(orientation, "JPEG", (4000, 3000))
    assert_matches_reference(data, tolerance=8)


# -- never an error ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40,
        b"II*\x00\x08\x00\x00\x00" + b"\xff" * 40,
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 40,
        b"GIF89a" + b"\x00" * 40,
        b"",
    ],
    ids=["jpeg", "png", "webp", "tiff", "heic", "gif", "empty"],
)
def test_undecodable_data_gets_none(data: bytes) -> None:
    assert make(data) is None


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_an_avif_photo_goes_through_the_heif_plugins() -> None:
    # AVIF files carry the mif1 brand: the service accepts them as image/heif.
    data = pillow_encoded(quadrants((640, 480), QUADRANT_COLORS), "AVIF", quality=90)
    assert_matches_reference(data, tolerance=8)


def test_a_truncated_photo_gets_none() -> None:
    data = pillow_encoded(quadrants((800, 600), QUADRANT_COLORS), "PNG")
    assert make(data[: len(data) // 2]) is None


def test_a_warning_keeps_no_exception_alive(caplog: pytest.LogCaptureFixture) -> None:
    # A kept record must not keep the traceback, whose frames hold the decoded canvas.
    truncated = zero_png(2000, 2000, 2)[:3000]
    with caplog.at_level(logging.WARNING, logger=thumbnails.__name__):
        assert make(truncated) is None
        assert make(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) is None
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert all(isinstance(arg, str) for arg in record.args or ()), record.args
        assert record.exc_info is None


def test_a_seekable_file_is_read_like_bytes() -> None:
    data = oriented_file(6, "PNG")
    assert make(io.BytesIO(data)) == make(data)


# -- concurrency ------------------------------------------------------------------


def test_decodes_run_on_as_many_threads_as_cpus_by_default() -> None:
    maker = PillowThumbnailMaker()
    assert maker.max_concurrent_decodes == (os.cpu_count() or 1)
    maker.close()
    assert PillowThumbnailMaker(128, 70, max_concurrent_decodes=3).max_concurrent_decodes == 3


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), ("2", TypeError), (True, TypeError)])
def test_the_concurrency_bound_is_checked(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        PillowThumbnailMaker(max_concurrent_decodes=value)  # type: ignore[arg-type]


def test_no_more_decodes_run_at_once_than_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    limit, uploads = 2, 6
    state = threading.Condition()
    running, most, entered = 0, 0, 0
    release = threading.Event()

    def blocking_render(image: Image.Image, side: int, quality: int) -> bytes:
        nonlocal running, most, entered
        with state:
            running += 1
            entered += 1
            most = max(most, running)
            state.notify_all()
        release.wait()
        with state:
            running -= 1
        return b"thumbnail"

    monkeypatch.setattr(thumbnails, "render", blocking_render)
    maker = PillowThumbnailMaker(max_concurrent_decodes=limit)
    data = pillow_encoded(Image.new("RGB", (8, 8)), "PNG")

    async def scenario() -> list[bytes | None]:
        tasks = [asyncio.create_task(maker.make(data)) for _ in range(uploads)]

        def both_slots_taken() -> None:
            with state:
                state.wait_for(lambda: entered == limit)

        await asyncio.to_thread(both_slots_taken)  # the loop has handed every upload over
        assert entered == limit  # both threads are held: the rest wait for a slot
        release.set()
        return list(await asyncio.gather(*tasks))

    try:
        assert asyncio.run(scenario()) == [b"thumbnail"] * uploads
    finally:
        release.set()
        maker.close()
    assert most == limit


# -- through the service ----------------------------------------------------------


def test_an_upload_with_a_huge_canvas_is_stored_without_a_thumbnail() -> None:
    data = zero_png(UNDER_WARNING_SIDE, UNDER_WARNING_SIDE, 6)
    maker = PillowThumbnailMaker()
    service = ImageService(
        originals=InMemoryImageStore("demeter-photos-original"),
        visualizations=InMemoryImageStore("demeter-photos-viz"),
        metadata=InMemoryMetadataRepository(),
        thumbnails=maker,
    )

    async def scenario() -> None:
        image = await service.upload_original(
            data, "field-7", UploadRequest("canvas.png", "image/png")
        )
        assert image.thumbnail_key is None
        assert await service.download_original(image.s3_key) == data
        assert [info.key async for info in service.originals.list()] == ["field-7/canvas.png"]
        stored = await service.get_image(image.image_id)
        assert stored is not None and stored.thumbnail_key is None
        photo = await service.upload_original(
            oriented_file(1, "JPEG"), "field-7", UploadRequest("leaf.jpg", "image/jpeg")
        )
        assert photo.thumbnail_key == "field-7/thumb_leaf.jpg.jpg"  # others still get theirs
        await service.aclose()

    try:
        asyncio.run(scenario())
    finally:
        maker.close()


def test_a_multi_picture_jpeg_gets_a_thumbnail_of_its_first_picture() -> None:
    first = quadrants((400, 300), QUADRANT_COLORS)
    output = io.BytesIO()
    first.save(output, "MPO", save_all=True, append_images=[Image.new("RGB", (400, 300))])
    data = output.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image = image_decoding.open_within_budget(
        io.BytesIO(data), draft_side=512, copies_bytes_per_pixel=lambda image: 0
    )
    assert type(image) is JpegImagePlugin.JpegImageFile  # not adopted by the MPO class
    image.close()
    assert_matches_reference(data)


async def test_the_service_stops_the_makers_threads_when_closed() -> None:
    maker = PillowThumbnailMaker(max_concurrent_decodes=1)
    service = ImageService(
        originals=InMemoryImageStore("o"),
        visualizations=InMemoryImageStore("v"),
        metadata=InMemoryMetadataRepository(),
        thumbnails=maker,
    )
    await service.aclose()
    with pytest.raises(RuntimeError, match="shutdown"):
        await maker.make(b"\xff\xd8\xff")
