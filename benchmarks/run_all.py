"""Run every benchmark and write one markdown page (for ``docs/benchmarks.md``).

Run: ``python benchmarks/run_all.py [--output FILE]`` (default ``benchmarks/results.md``).
Each benchmark gets its own fresh SeaweedFS server, stopped when it is done.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Final

import large_object
import s3_throughput
from common import log, machine_markdown, now_utc

DEFAULT_OUTPUT: Final = Path(__file__).resolve().parent / "results.md"

METHOD: Final = """\
## Method

- **One real S3 server**, SeaweedFS (`weed mini`) on loopback with signature
  checks on, started fresh for each benchmark. Client and server share the
  machine's cores, so uploads are mostly bound by the server's CPU: read the
  figures as **ratios between clients measured in the same run**, not as what
  S3 itself would do.
- **Interleaved rounds**: in every round each contender runs each case once,
  in a freshly shuffled order, so a drift of the machine (another process, a
  warming cache, the server compacting) touches every contender alike.
- **Medians** over rounds, with the min-max spread; the ratio column divides a
  contender's median by raw boto3's median in the same case.
- **Fresh processes for memory**: each large transfer runs in its own child
  process, which reports its peak RSS (`VmHWM` in `/proc/self/status`; unlike
  `ru_maxrss` it is not inherited across fork and exec).
- Each contender writes to its own bucket and reads back what it wrote; every
  download is checked against what was uploaded.
"""


def page(sections: list[str], command: str) -> str:
    """The whole markdown page: header, machine, method, then each section."""
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"Measured {now_utc()} with `{command}`: raw boto3 against `S3ImageStore` and "
            "`ResilientImageStore(S3ImageStore)`.",
            "",
            "## Machine",
            "",
            machine_markdown(),
            "",
            METHOD,
            *[section.strip() + "\n" for section in sections],
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument("--skip-small", action="store_true", help="skip the small objects")
    parser.add_argument("--skip-large", action="store_true", help="skip the large object")
    s3_throughput.add_arguments(parser, prefix="small-")
    large_object.add_arguments(parser, prefix="large-")
    args = parser.parse_args()

    sections: list[str] = []
    if not args.skip_small:
        log("small objects")
        sections.append(s3_throughput.run(**s3_throughput.options(args, prefix="small-")))
    if not args.skip_large:
        log("one large object")
        sections.append(large_object.run(**large_object.options(args, prefix="large-")))
    command = shlex.join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page(sections, command))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
