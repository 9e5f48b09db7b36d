"""Memory proof: thumbnailing any accepted input grows peak RSS by at most 256 MiB per decode.

Each case runs in a fresh process (``decode_memory_worker.py``), which resets
its peak (``VmHWM``) after warming up and reports how far thumbnailing raised
it. The inputs (``tests/support/crafted_images.py``) are small files with huge
canvases (PNG and WebP just under Pillow's 89,478,485-pixel warning, PNG just
under its 2x error, a TIFF in one huge strip), real decodes near the budget
(an RGBA PNG, a 12-megapixel WebP, a 24-megapixel 16-bit PNG) and a
108-megapixel JPEG, whose thumbnail must also be right. Three at once must
stay within the bound times the decodes allowed at once. The figures before
and after the fix are in ``docs/thumbnails.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.crafted_images import MEMORY_CASES, QUADRANT_COLORS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BOUND_MIB = 256
WHITE = [255.0, 255.0, 255.0]
BLACK = [0.0, 0.0, 0.0]

EXPECTED: dict[str, str] = {
    "png-rgb-under-warning": "none",
    "png-rgba-under-warning": "none",
    "png-rgb-under-error": "none",
    "png-grey-under-error": "none",
    "webp-canvas-under-warning": "none",
    "tiff-rgb-under-warning": "none",
    "png-16bit-grey-24mp": "black",
    "png-rgba-near-budget": "white",
    "webp-12mp-photo": "quadrants",
    "jpeg-108mp": "quadrants",
}
"""What each case's thumbnail must be: none, all black, all white, or the four quadrants."""


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The crafted files, written by a child process (the 108 MP JPEG takes 432 MB to encode)."""
    if not _can_reset_peak():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a peak RSS")
    directory = tmp_path_factory.mktemp("decode-memory")
    script = (
        "import sys; from pathlib import Path; from tests.support.crafted_images import "
        "write_memory_cases; write_memory_cases(Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", script, str(directory)], cwd=REPO, check=True)
    return {name: directory / f"{name}.bin" for name in MEMORY_CASES}


def measure(paths: list[Path], max_concurrent: int = 0) -> dict[str, Any]:
    """Thumbnail ``paths`` at once in a fresh process; its peak RSS growth and thumbnails."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.proof.decode_memory_worker",
            "current",
            str(max_concurrent),
            *map(str, paths),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def check_thumbnail(expected: str, thumbnail: dict[str, Any] | None) -> None:
    if expected == "none":
        assert thumbnail is None
        return
    assert thumbnail is not None
    assert thumbnail["format"] == "JPEG"
    assert max(thumbnail["size"]) == 256
    if expected == "quadrants":
        for got, want in zip(thumbnail["quadrants"], QUADRANT_COLORS, strict=True):
            assert got == pytest.approx(want, abs=12)
    else:
        assert thumbnail["mean"] == pytest.approx(WHITE if expected == "white" else BLACK, abs=1)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_one_decode_grows_peak_rss_by_at_most_256_mib(
    case: str, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = measure([inputs[case]])
    with capsys.disabled():
        print(f"\n{case}: peak RSS +{result['growth_mib']:.1f} MiB")
    assert result["growth_mib"] <= BOUND_MIB
    check_thumbnail(EXPECTED[case], result["thumbnails"][0])


def test_the_108_megapixel_jpeg_costs_little_through_draft(inputs: dict[str, Path]) -> None:
    assert measure([inputs["jpeg-108mp"]])["growth_mib"] <= 32


HOSTILE = ["png-rgb-under-warning", "webp-canvas-under-warning", "tiff-rgb-under-warning"]
REAL = ["png-rgba-near-budget", "webp-12mp-photo", "jpeg-108mp"]


def test_three_hostile_files_at_once_are_all_refused_cheaply(inputs: dict[str, Path]) -> None:
    result = measure([inputs[name] for name in HOSTILE])
    assert result["thumbnails"] == [None, None, None]
    assert result["growth_mib"] <= BOUND_MIB


@pytest.mark.parametrize("max_concurrent", [1, 3, 0], ids=["one", "three", "cpu-count"])
def test_three_real_decodes_at_once_stay_within_the_bound_times_the_concurrency(
    max_concurrent: int, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = measure([inputs[name] for name in REAL], max_concurrent)
    at_once = min(3, max_concurrent or os.cpu_count() or 1)
    with capsys.disabled():
        print(f"\n3 at once, {at_once} decoding: peak RSS +{result['growth_mib']:.1f} MiB")
    assert result["growth_mib"] <= BOUND_MIB * at_once
    for name, thumbnail in zip(REAL, result["thumbnails"], strict=True):
        check_thumbnail(EXPECTED[name], thumbnail)
