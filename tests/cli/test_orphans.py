"""``demeter-storage reconcile --orphans``: a dry run by default, ``--delete`` to act."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.support import SAMPLE, run, workdir

__all__ = ["workdir"]  # the autouse fixture, for this module


def test_the_orphan_sweep_is_a_dry_run_until_told_to_delete(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(capsys, "upload", str(SAMPLE), "--session", "s")[0] == 0
    stray = workdir / "demeter-data" / "demeter-photos-original" / "s" / "stray.jpg"
    stray.write_bytes(SAMPLE.read_bytes())  # written behind the package's back
    old = stray.stat().st_mtime - 2 * 86400
    os.utime(stray, (old, old))

    code, out, _ = run(capsys, "reconcile", "--orphans")
    assert code == 0
    assert "would delete demeter-photos-original/s/stray.jpg" in out
    assert out.rstrip().endswith("run again with --delete to delete them")
    assert stray.exists()
    assert run(capsys, "audit")[0] == 1  # the orphan is still there

    code, out, _ = run(capsys, "reconcile", "--orphans", "--older-than", "72", "--json")
    report = json.loads(out)
    assert (code, report["removed"], report["dry_run"]) == (0, [], True)
    assert report["kept"][0][1] == "s/stray.jpg"

    code, out, _ = run(capsys, "reconcile", "--orphans", "--delete")
    assert (code, out.splitlines()[0]) == (0, "deleted demeter-photos-original/s/stray.jpg")
    assert not stray.exists()
    assert run(capsys, "audit")[0] == 0
    assert run(capsys, "download", "s/sample-leaf.jpg", "-o", "copy.jpg")[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ("reconcile", "--delete"),
        ("reconcile", "--older-than", "3"),
        ("reconcile", "--orphans", "--older-than", "-1"),
        ("reconcile", "--orphans", "--older-than", "nan"),
    ],
)
def test_orphan_options_need_each_other_and_sane_values(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1
