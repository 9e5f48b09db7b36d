"""What the command-line tests share: a clean working directory and one way to run a command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from demeter_storage.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "assets" / "sample-leaf.jpg"


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory, no storage settings from the environment, thumbnails off."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("DEMETER_", "S3_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEMETER_THUMBNAILS", "0")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run one command in process: its exit code, stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
