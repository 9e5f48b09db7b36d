"""A fresh process that thumbnails image files and reports its peak RSS growth.

Usage: ``python -m tests.proof.decode_memory_worker MAKER MAX_CONCURRENT FILE...``
where MAKER is ``current`` (the package's ``PillowThumbnailMaker``) or the
path of another module defining one (the proof measured the code before the
fix this way), and MAX_CONCURRENT is the maker's ``max_concurrent_decodes``
(0: leave it out). Every file is thumbnailed at once (``asyncio.gather``).

The worker warms up first (every Pillow plugin imported, the event loop and
the decode threads started), then resets the peak (``VmHWM``, through
``/proc/self/clear_refs``), and prints one JSON line: the growth of the peak
over the resident size at the reset, in MiB, and what each thumbnail looks
like (size, per-channel mean, quadrant means) or null.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def reset_peak() -> None:
    """Make VmHWM the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")


def load_maker_class(maker: str) -> Any:
    """The ``PillowThumbnailMaker`` of the package, or of the module file ``maker``."""
    if maker == "current":
        from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker  # noqa: PLC0415

        return PillowThumbnailMaker
    spec = importlib.util.spec_from_file_location("measured_thumbnails", maker)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PillowThumbnailMaker


def describe(thumbnail: bytes | None) -> dict[str, Any] | None:
    """What a thumbnail looks like: format, size, channel means, quadrant means."""
    if thumbnail is None:
        return None
    with Image.open(io.BytesIO(thumbnail)) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    boxes = [
        (0, 0, width // 2, height // 2),
        (width // 2, 0, width, height // 2),
        (0, height // 2, width // 2, height),
        (width // 2, height // 2, width, height),
    ]
    return {
        "format": image.format,
        "size": [width, height],
        "mean": ImageStat.Stat(rgb).mean,
        "quadrants": [ImageStat.Stat(rgb.crop(box)).mean for box in boxes],
    }


def _warm_up_inputs() -> list[bytes]:
    small = Image.new("RGB", (64, 48), (10, 120, 30))
    outputs = []
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        output = io.BytesIO()
        small.save(output, fmt)
        outputs.append(output.getvalue())
    return outputs


async def _make_all(maker: Any, inputs: list[bytes]) -> list[bytes | None]:
    return list(await asyncio.gather(*(maker.make(data) for data in inputs)))


def measure(maker_path: str, max_concurrent: int, paths: list[str]) -> dict[str, Any]:
    """Thumbnail ``paths`` at once after a warm-up; the peak RSS growth and the results."""
    maker_class = load_maker_class(maker_path)
    options = {"max_concurrent_decodes": max_concurrent} if max_concurrent else {}
    maker = maker_class(**options)
    inputs = [Path(path).read_bytes() for path in paths]
    with asyncio.Runner() as runner:
        runner.run(_make_all(maker, _warm_up_inputs() * 2))
        gc.collect()
        reset_peak()
        before = status_kib("VmHWM")
        thumbnails = runner.run(_make_all(maker, inputs))
        peak = status_kib("VmHWM")
    return {
        "growth_mib": (peak - before) / 1024,
        "thumbnails": [describe(thumbnail) for thumbnail in thumbnails],
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3:])))
