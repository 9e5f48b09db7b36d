"""Turn ``benchmarks/results/*.json`` into the tables of ``docs/benchmarks.md``.

Run: ``python benchmarks/render.py [PAGE]`` (default ``docs/benchmarks.md``). Only the
blocks between ``<!-- generated:NAME:start -->`` and ``<!-- generated:NAME:end -->``
are rewritten; the paragraphs people wrote around them, and the A/B block
between ``<!-- ab-optimisations:start -->`` and ``<!-- ab-optimisations:end -->``,
are kept as they are. A block the page lacks is added under its title before
the A/B block (whose markers are added at the end when absent).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

BENCH_DIR: Final = Path(__file__).resolve().parent
SECTIONS: Final = ("presign", "small", "large", "service", "local", "fastapi_upload")
AB_START: Final = "<!-- ab-optimisations:start -->"
AB_END: Final = "<!-- ab-optimisations:end -->"


def figure(value: float, unit: str = "") -> str:
    """``0.97x``, ``1,234`` or ``5.3``."""
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 0) -> str:
    """A markdown table; the last ``right`` columns are right-aligned."""
    aligns = ["---"] * (len(headers) - right) + ["---:"] * right
    lines = [headers, aligns, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def verdict(entry: dict[str, Any]) -> str:
    """``met``, ``**missed**`` or ``not measured``."""
    value, goal = entry["value"], entry["goal"]
    if value is None:
        return "not measured"
    met = value >= goal if entry["op"] == ">=" else value <= goal
    return "met" if met else "**missed**"


def measured_figure(entry: dict[str, Any]) -> str:
    """A target's figure; a ratio that two decimals would round onto its goal gets three."""
    rounded = verdict({**entry, "value": round(entry["value"], 2)})
    if entry["unit"] == "x" and rounded != verdict(entry):
        return f"{entry['value']:.3f}x"  # 0.896x is no 0.90x: a missed target must not look met
    return figure(entry["value"], entry["unit"])


def targets_block(results: Sequence[dict[str, Any]]) -> str:
    """Every section's targets: the figure, the goal, met or missed."""
    rows = []
    for result in results:
        for entry in result.get("targets", []):
            unit = entry["unit"]
            suffix = "" if unit == "x" else f" {unit}"
            measured = "—"
            if entry["value"] is not None:
                low = figure(entry["low"], unit).removesuffix("x")
                spread = f"{low}-{figure(entry['high'], unit)}"
                measured = f"{measured_figure(entry)}{suffix} ({spread}; {entry['basis']})"
            goal = f"{entry['op']} {entry['goal']:,g}{unit if unit == 'x' else suffix}"
            rows.append([entry["name"], measured, goal, verdict(entry)])
    return table(["target", "measured", "goal", "met?"], rows)


def section_block(result: dict[str, Any]) -> str:
    """A section's table (median, min-max over rounds, ratios, extra columns) and parameters."""
    rows = result["rows"]
    with_case = any(each["case"] for each in rows)
    bases = list(dict.fromkeys(name for each in rows for name in each["ratios"]))
    extras = list(dict.fromkeys(name for each in rows for name in each["extra"]))
    unit = result["unit"]
    headers = [*(["case"] if with_case else []), "contender", f"{unit} (median)", "min-max"]
    headers += [f"vs {name}" for name in bases] + extras
    lines = []
    for each in rows:
        cells = [*([each["case"]] if with_case else []), each["contender"]]
        cells += [figure(each["median"]), f"{figure(each['low'])}-{figure(each['high'])}"]
        cells += [
            figure(each["ratios"][name], "x") if name in each["ratios"] else "" for name in bases
        ]
        cells += [figure(each["extra"][name]) if name in each["extra"] else "" for name in extras]
        lines.append(cells)
    parameters = ", ".join(
        f"{name} {figure(value) if isinstance(value, int | float) else value}"
        for name, value in result.get("parameters", {}).items()
    )
    text = f"{table(headers, lines, right=len(headers) - (2 if with_case else 1))}\n\n"
    text += f"Median and min-max over interleaved rounds. Parameters: {parameters}."
    for name, reason in result.get("absent", {}).items():
        text += f"\n\nNot measured: {name} ({reason})."
    return text


def machine_block(run: dict[str, Any]) -> str:
    """When and how the run went, and the machine it ran on."""
    machine = table(["", ""], [[key, str(value)] for key, value in run["machine"].items()])
    minutes = table(
        ["section", "minutes", "load average before", "after"],
        [[name, f"{m:.1f}", f"{a:.2f}", f"{b:.2f}"] for name, m, a, b in run["sections"]],
        right=3,
    )
    return f"Measured {run['measured']} with `{run['command']}`.\n\n{machine}\n\n{minutes}"


def blocks(results_dir: Path) -> dict[str, tuple[str, str]]:
    """Each generated block by name: (its title, its markdown), for the results present."""
    found = [
        json.loads((results_dir / f"{name}.json").read_text())
        for name in SECTIONS
        if (results_dir / f"{name}.json").exists()
    ]
    out = {"targets": ("Targets", targets_block(found))} if found else {}
    if (results_dir / "run.json").exists():
        run = json.loads((results_dir / "run.json").read_text())
        out["machine"] = ("Machine", machine_block(run))
    out.update({result["section"]: (result["title"], section_block(result)) for result in found})
    return out


def replaced(text: str, start: str, end: str, block: str) -> str:
    """``text`` with everything from ``start`` to ``end`` replaced by ``block``."""
    before, _, rest = text.partition(start)
    return before + block + rest.partition(end)[2]


def update(page: str, generated: dict[str, tuple[str, str]]) -> str:
    """``page`` with each generated block replaced (or added); the A/B block kept verbatim."""
    if AB_START not in page:
        page = f"{page.rstrip()}\n\n{AB_START}\n{AB_END}\n"
    head, _, rest = page.partition(AB_START)
    ab, _, tail = rest.partition(AB_END)
    if not head.strip():
        head = "# Benchmarks\n\n"
    for name, (title, body) in generated.items():
        start, end = f"<!-- generated:{name}:start -->", f"<!-- generated:{name}:end -->"
        block = f"{start}\n\n{body.strip()}\n\n{end}"
        if start in head:
            head = replaced(head, start, end, block)
        elif start in tail:
            tail = replaced(tail, start, end, block)
        else:
            head = f"{head.rstrip()}\n\n## {title}\n\n{block}\n\n"
    return f"{head}{AB_START}{ab}{AB_END}{tail}"


def render(output: Path, results_dir: Path = BENCH_DIR / "results") -> None:
    """Rewrite ``output``'s generated blocks from ``results_dir``."""
    page = output.read_text() if output.exists() else ""
    output.write_text(update(page, blocks(results_dir)))


if __name__ == "__main__":
    render(Path(sys.argv[1] if len(sys.argv) > 1 else BENCH_DIR.parent / "docs/benchmarks.md"))
