"""Run every benchmark and write one markdown page (for ``docs/benchmarks.md``).

Run: ``python benchmarks/run_all.py [--quick] [--skip-SECTION ...] [--output FILE]``
(default output ``benchmarks/results.md``). Sections: presign, small, large,
service, local, breaker, hop. Each benchmark that needs S3 gets its own fresh
SeaweedFS server, stopped when it is done.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import breaker
import large_object
import local_store
import presign
import s3_throughput
import service_overhead
import thread_hop
from common import Section, Stopwatch, Target, log, markdown_table, marked_section
from machine import machine_markdown, now_utc
from peers import s3fs_environment

DEFAULT_OUTPUT: Final = Path(__file__).resolve().parent / "results.md"


class Benchmark:
    """One section of the page: its module, its option prefix, and its targets if skipped."""

    def __init__(
        self,
        name: str,
        module: Any,
        title: str,
        skipped_targets: list[tuple[str, str]],
    ) -> None:
        self.name = name
        self.module = module
        self.title = title
        self.skipped_targets = skipped_targets

    @property
    def prefix(self) -> str:
        return f"{self.name}-"

    def run(self, args: argparse.Namespace) -> Section:
        runner: Callable[..., Section] = self.module.run
        return runner(**self.module.options(args, prefix=self.prefix))


BENCHMARKS: Final = [
    Benchmark(
        "presign",
        presign,
        "presigned URLs per second",
        [("Presigned GET URLs/s, one thread, `S3ImageStore.presign`", ">= 100,000/s")],
    ),
    Benchmark(
        "small",
        s3_throughput,
        "small objects up and down",
        [
            (s3_throughput.RESILIENT_TARGET_NAME, ">= 0.95x in every case"),
            (s3_throughput.OBSTORE_TARGET_NAME, ">= 0.90x up and down, both"),
        ],
    ),
    Benchmark(
        "large",
        large_object,
        "one large object up and down",
        [
            (f"`{store}` 512 MiB {what}", goal)
            for store in ("S3ImageStore", "ObstoreImageStore")
            for what, goal in (
                ("upload speed", ">= 250 MiB/s"),
                ("upload peak RSS (fresh process)", "<= 150 MiB"),
                ("download vs boto3's best configuration", ">= 0.95x"),
            )
        ],
    ),
    Benchmark(
        "service",
        service_overhead,
        "`upload_original` against the bare store",
        [("`upload_original` with PostgreSQL, 16 concurrent, vs bare `put`", ">= 0.80x")],
    ),
    Benchmark("local", local_store, "the local store against raw file writes", []),
    Benchmark("breaker", breaker, "the open circuit breaker's fail-fast latency", []),
    Benchmark("hop", thread_hop, "the hop from the event loop to a thread and back", []),
]

METHOD: Final = """\
## Method

- **One real S3 server**, SeaweedFS (`weed mini`) on loopback with signature
  checks on, started fresh for each benchmark that needs S3. Client and server
  share the machine's cores, so uploads are mostly bound by the server's CPU:
  read the figures as **ratios between clients measured in the same run**, not
  as what S3 itself would do.
- **Interleaved rounds**: in every round each contender runs each case once,
  in a freshly shuffled order, so a drift of the machine (another process, a
  warming cache, the server compacting) touches every contender alike. The S3
  small-object section goes finer at concurrency 1: a case's objects are
  moved in slices, the contenders taking turns slice by slice, so that two
  contenders compared in one round ran within seconds of each other.
- **Medians** over rounds, with the min-max spread; the ratio column divides a
  contender's median by the baseline's (raw boto3 for S3) in the same case.
- **Ratio targets are judged per round**: each round's figure is divided by
  the baseline's from the same round, and the median of those ratios is held
  to the target (the two ran side by side, so the machine's drift between
  rounds, which widens every spread here, drops out). The target lines give
  that median, its range over the rounds and the ratio of medians beside it;
  a ratio in a limit line, or "outside the target", is such a per-round
  median too, so it may differ from the section table's ratio of medians.
  The large-download target is the exception: a ratio of medians against
  the best of boto3's configurations, picked after the run.
- **Fresh processes for memory**: each large transfer runs in its own child
  process that imports only its own client, and reports its peak RSS
  (`VmHWM` in `/proc/self/status`; unlike `ru_maxrss` it is not inherited
  across fork and exec).
- **Peers**: raw boto3, raw obstore (its async API) and s3fs (in a virtual
  environment of its own, `.bench-venvs/s3fs`, since it pins an older
  botocore; its passes run in child processes that time themselves).
- Each contender writes to its own bucket and reads back what it wrote; every
  download is checked against what was uploaded.
"""


def _met(target: Target) -> str:
    if target.met is None:
        return "not measured"
    return "yes" if target.met else "**no**"


def targets_markdown(targets: list[Target], *, quick: bool) -> str:
    """The targets table: target, goal, measured, met."""
    rows = [[t.name, t.goal, t.measured, _met(t)] for t in targets]
    met = sum(t.met is True for t in targets)
    measured = sum(t.met is not None for t in targets)
    caveat = (
        " **A `--quick` run**: few rounds and small sizes, a smoke check of the suite; "
        "its figures are not results."
        if quick
        else ""
    )
    limits = "".join(
        f"- {t.name}: {t.limit}\n" for t in targets if t.met is False and t.limit is not None
    )
    if limits:
        limits = f"\nWhat limits the missed targets, from the same run's figures:\n\n{limits}"
    return (
        "## Targets\n\n"
        f"{markdown_table(['target', 'goal', 'measured (median)', 'met?'], rows)}\n\n"
        f"{met} of {measured} measured targets met; the sections below have the details."
        f"{caveat}\n{limits}"
    )


def _load() -> str:
    """The 1-minute load average (other processes share the machine's cores)."""
    return f"{os.getloadavg()[0]:.2f}"


def runs_markdown(runs: list[list[str]]) -> str:
    """How long each section took, and how busy the machine was around it."""
    headers = ["section", "minutes", "load average at start", "at end"]
    return (
        f"{markdown_table(headers, runs, right=3)}\n\n"
        f"The load average counts every process on the machine's {os.cpu_count()} cores, "
        "the benchmark's own included (its server and client run side by side): above "
        "about 2, other work competed for the CPU and the spreads widen.\n"
    )


def page(
    sections: list[tuple[Benchmark, Section]],
    targets: list[Target],
    command: str,
    extra: dict[str, str],
    runs: list[list[str]],
    *,
    quick: bool = False,
    notes_given: list[str] | None = None,
) -> str:
    """The whole markdown page: header, targets, machine, method, then each section."""
    ran = {benchmark.name for benchmark, _ in sections}
    titles = "; ".join(b.title for b in BENCHMARKS if b.name in ran)
    notes = "".join(f"\n\n{note}" for note in notes_given or [])
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"Measured {now_utc()} with `{command}`. Cases: {titles}.{notes}",
            "",
            targets_markdown(targets, quick=quick),
            "## Machine",
            "",
            machine_markdown(extra),
            "",
            runs_markdown(runs),
            METHOD,
            # Marked, so that one benchmark run on its own with --output replaces its section.
            *[marked_section(section.name, section.markdown) for _, section in sections],
        ]
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: shared options, a skip flag per section, each section's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: few rounds, few and small objects"
    )
    parser.add_argument(
        "--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run only these sections"
    )
    parser.add_argument("--skip-s3fs", action="store_true", help="leave s3fs out")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a paragraph for the top of the page (say, that other work shared the machine)",
    )
    for benchmark in BENCHMARKS:
        parser.add_argument(
            f"--skip-{benchmark.name}", action="store_true", help=f"skip {benchmark.title}"
        )
    for benchmark in BENCHMARKS:
        benchmark.module.add_arguments(parser, prefix=benchmark.prefix)
    return parser.parse_args(argv)


def _without_notes(arguments: list[str]) -> list[str]:
    """The command line without its ``--note`` options (the page shows the notes apart)."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--note":
            skip = True
        elif not argument.startswith("--note="):
            kept.append(argument)
    return kept


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    chosen = [
        b
        for b in BENCHMARKS
        if not getattr(args, f"skip_{b.name}") and (args.only is None or b.name in args.only)
    ]
    extra: dict[str, str] = {}
    if any(b.name in ("small", "large") for b in chosen):
        environment = s3fs_environment(install=not args.skip_s3fs)
        extra["s3fs (own environment)"] = environment.version
    sections: list[tuple[Benchmark, Section]] = []
    targets: list[Target] = []
    runs: list[list[str]] = []
    with Stopwatch() as total:
        for benchmark in BENCHMARKS:
            if benchmark not in chosen:
                targets += [
                    Target(name, goal, "not measured (section skipped)", None)
                    for name, goal in benchmark.skipped_targets
                ]
                continue
            load = _load()
            log(f"== {benchmark.name}: {benchmark.title} (load average {load})")
            with Stopwatch() as watch:
                section = benchmark.run(args)
            log(f"== {benchmark.name} took {watch.seconds / 60:.1f} min")
            runs.append([benchmark.name, f"{watch.seconds / 60:.1f}", load, _load()])
            sections.append((benchmark, section))
            targets += section.targets
    log(f"all sections took {total.seconds / 60:.1f} min")
    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/run_all.py", *_without_notes(arguments)])
    extra["run time"] = f"{total.seconds / 60:.1f} min, every section below"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        page(sections, targets, command, extra, runs, quick=args.quick, notes_given=args.note)
    )
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
