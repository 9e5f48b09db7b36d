"""Memory proof: a 200 MiB upload through the router raises the process's peak RSS by <= 64 MiB.

The upload runs in a fresh process (``upload_memory_worker.py``: uvicorn and
an httpx client streaming a generated form), which resets its peak after a
warm-up upload and reports how far the big one raised it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the fastapi extra is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("upload_memory_worker.py")
BOUND_MIB = 64


def test_a_200_mib_upload_streams_within_64_mib(tmp_path: Path) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    done = subprocess.run(
        [sys.executable, str(WORKER), "200", str(tmp_path / "root")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n200 MiB through the router: {figures}")
    assert figures["growth_mib"] <= BOUND_MIB, figures
