"""What the command-line tests share: a clean working directory and ways to run a command.

In process through ``run``; as ``python -m demeter_storage.cli`` through
``cli`` and ``clean_env``, with ``no_traceback`` to check what it wrote.
"""

from __future__ import annotations

import os
import sys
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


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without storage settings, storing under ``tmp_path / "data"``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMETER_", "S3_", "AWS_"))}
    env.update(DEMETER_STORAGE_ROOT=str(tmp_path / "data"), DEMETER_THUMBNAILS="0", **extra)
    return env


def cli(*argv: str) -> list[str]:
    """The command line that runs the command in a fresh interpreter."""
    return [sys.executable, "-m", "demeter_storage.cli", *argv]


def no_traceback(stderr: bytes | str) -> None:
    """Fail if ``stderr`` holds a traceback or an ignored exception."""
    text = stderr if isinstance(stderr, str) else stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "Exception ignored" not in text, text
