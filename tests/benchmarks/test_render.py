"""The benchmark page's renderer: JSON figures in, markdown tables out (no server, no timing)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
AB_BLOCK = "<!-- ab-optimisations:start -->\n| A/B | kept by hand |\n<!-- ab-optimisations:end -->"


@pytest.fixture(scope="module")
def render() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import render  # noqa: PLC0415 - the benchmarks' own module, from its directory

        yield render
    finally:
        sys.path.remove(str(BENCHMARKS))


def small_result(resilient_ratio: float) -> dict[str, Any]:
    figures = {"median": 500.0, "low": 450.0, "high": 520.0}
    return {
        "section": "small",
        "title": "Small objects up and down",
        "unit": "objects/s",
        "parameters": {"rounds": 5, "objects": 1000},
        "rows": [
            {"case": "up x16", "contender": "raw boto3", **figures, "ratios": {}, "extra": {}},
            {
                "case": "up x16",
                "contender": "resilient",
                **figures,
                "ratios": {"raw boto3": resilient_ratio},
                "extra": {"MiB/s": 125.0},
            },
        ],
        "targets": [
            {
                "name": "resilient vs raw boto3, up, 16 concurrent",
                "op": ">=",
                "goal": 0.95,
                "unit": "x",
                "value": resilient_ratio,
                "low": 0.80,
                "high": 1.02,
                "basis": "median of per-round ratios",
            }
        ],
    }


def write(results: Path, result: dict[str, Any]) -> None:
    results.mkdir(exist_ok=True)
    (results / f"{result['section']}.json").write_text(json.dumps(result))


def test_a_missed_target_is_shown_missed_with_its_figure(
    render: ModuleType, tmp_path: Path
) -> None:
    write(tmp_path / "results", small_result(0.91))
    page = tmp_path / "benchmarks.md"
    render.render(page, tmp_path / "results")
    text = page.read_text()
    assert "| resilient vs raw boto3, up, 16 concurrent | 0.91x (0.80-1.02x; median of " in text
    assert "| >= 0.95x | **missed** |" in text
    assert "| up x16 | resilient | 500 | 450-520 | 0.91x | 125 |" in text


def test_a_figure_just_under_its_goal_is_not_rounded_up_to_it(
    render: ModuleType, tmp_path: Path
) -> None:
    write(tmp_path / "results", small_result(0.9496))
    page = tmp_path / "benchmarks.md"
    render.render(page, tmp_path / "results")
    assert "| 0.950x (0.80-1.02x; median of per-round ratios) | >= 0.95x | **missed** |" in (
        page.read_text()
    )


def test_a_met_target_is_shown_met(render: ModuleType, tmp_path: Path) -> None:
    write(tmp_path / "results", small_result(0.97))
    page = tmp_path / "benchmarks.md"
    render.render(page, tmp_path / "results")
    assert "| >= 0.95x | met |" in page.read_text()


def test_people_s_paragraphs_and_the_ab_block_survive_a_render(
    render: ModuleType, tmp_path: Path
) -> None:
    write(tmp_path / "results", small_result(0.97))
    page = tmp_path / "benchmarks.md"
    render.render(page, tmp_path / "results")
    empty_ab = "<!-- ab-optimisations:start -->\n<!-- ab-optimisations:end -->"
    written = page.read_text().replace(empty_ab, AB_BLOCK)
    page.write_text(written.replace("## Targets\n", "## Targets\n\nA paragraph by a person.\n"))
    write(tmp_path / "results", small_result(0.91))
    render.render(page, tmp_path / "results")
    text = page.read_text()
    assert "A paragraph by a person." in text
    assert AB_BLOCK in text
    assert "**missed**" in text
    assert text.count("<!-- generated:small:start -->") == 1


def test_a_page_without_the_ab_markers_gets_them_at_the_end(
    render: ModuleType, tmp_path: Path
) -> None:
    write(tmp_path / "results", small_result(0.97))
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nBy hand.\n")
    render.render(page, tmp_path / "results")
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nBy hand.\n")
    assert text.rstrip().endswith("<!-- ab-optimisations:start -->\n<!-- ab-optimisations:end -->")
