"""The peers that are not in the project's environment: s3fs in a virtual environment of its own.

s3fs pins an older botocore (through aiobotocore) than boto3 needs, so it gets
its own virtual environment, ``.bench-venvs/s3fs`` at the repository root
(ignored by git), created on first use with ``pip install s3fs``. Its parts of
the benchmarks run there as child processes (``transfer_child.py``) that print
JSON. If it cannot be created (no network to PyPI, say), the benchmarks leave
s3fs out and say why.

Run: ``python benchmarks/peers.py`` creates (or checks) the environment and
prints the s3fs version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common import REPO_ROOT, log

VENVS: Final = REPO_ROOT / ".bench-venvs"
S3FS_VENV: Final = VENVS / "s3fs"
S3FS_REQUIREMENT: Final = "s3fs"
INSTALL_TIMEOUT: Final = 900


@dataclass(frozen=True)
class S3fsEnvironment:
    """Where s3fs runs (``python`` is None when it is unavailable, ``note`` says why)."""

    python: str | None
    version: str
    note: str


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _s3fs_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import s3fs, aiobotocore, botocore; "
            "print(s3fs.__version__, aiobotocore.__version__, botocore.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode != 0:
        return None
    s3fs_version, aiobotocore_version, botocore_version = probe.stdout.split()
    return f"{s3fs_version} (aiobotocore {aiobotocore_version}, botocore {botocore_version})"


def _run(command: list[str]) -> str | None:
    """Run an install step; return None on success, else the reason it failed."""
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        return f"exit {completed.returncode}: {' / '.join(tail)}"
    return None


def s3fs_environment(*, install: bool = True, venv: Path = S3FS_VENV) -> S3fsEnvironment:
    """The s3fs environment, created with ``pip install s3fs`` when missing and ``install``."""
    python = _venv_python(venv)
    version = _s3fs_version(python)
    if version is not None:
        return S3fsEnvironment(str(python), version, f"s3fs {version} in `{_shown(venv)}`")
    if not install:
        return S3fsEnvironment(None, "not installed", "s3fs left out (not installed; skipped)")
    log(f"creating the s3fs environment in {venv} (pip install {S3FS_REQUIREMENT})")
    shutil.rmtree(venv, ignore_errors=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    problem = _run([sys.executable, "-m", "venv", str(venv)]) or _run([*pip, S3FS_REQUIREMENT])
    version = None if problem else _s3fs_version(python)
    if version is None:
        reason = problem or "s3fs does not import after installing it"
        log(f"s3fs is unavailable: {reason}")
        return S3fsEnvironment(
            None, "unavailable", f"s3fs left out: could not install it in `{venv}` ({reason})"
        )
    return S3fsEnvironment(str(python), version, f"s3fs {version} in `{_shown(venv)}`")


def s3fs_python(use: bool, notes: list[str]) -> str | None:
    """The s3fs environment's python when ``use`` and available (else None); notes say which."""
    if not use:
        notes.append("s3fs left out (skipped)")
        return None
    environment = s3fs_environment()
    notes.append(environment.note)
    return environment.python


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return os.fspath(path)


def main() -> None:
    environment = s3fs_environment()
    print(environment.note)
    if environment.python is None:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
