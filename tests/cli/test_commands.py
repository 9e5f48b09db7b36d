"""The demeter-storage command on the embedded default (local store + SQLite)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from demeter_storage.cli import main
from tests.cli.support import SAMPLE, run, workdir

__all__ = ["workdir"]  # the autouse fixture, for this module
from demeter_storage.cli.progress import CountingFile, Progress


def test_upload_presign_download_info_and_delete(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, err = run(capsys, "upload", str(SAMPLE), "--session", "demo", "--json")
    assert (code, err) == (0, "")
    uploaded = json.loads(out)
    assert (uploaded["s3_key"], uploaded["size"]) == ("demo/sample-leaf.jpg", SAMPLE.stat().st_size)
    image_id = uploaded["image_id"]

    code, out, _ = run(capsys, "presign", "demo/sample-leaf.jpg", "--hours", "2")
    assert code == 0
    assert out.startswith("http://127.0.0.1:8765/demeter-photos-original/demo/sample-leaf.jpg?")
    assert "X-Demeter-Expires=7200" in out
    code, out, err = run(
        capsys, "presign", "demo/other.jpg", "--put", "--content-type", "image/jpeg"
    )
    assert code == 0
    assert out.count("\n") == 1
    assert "X-Demeter-Signature=" in out
    assert "-H 'Content-Type: image/jpeg' -H 'If-None-Match: *'" in err

    code, _, _ = run(capsys, "download", "demo/sample-leaf.jpg", "-o", "copy.jpg")
    assert code == 0
    assert (workdir / "copy.jpg").read_bytes() == SAMPLE.read_bytes()

    code, out, _ = run(capsys, "ls", "--session", "demo")
    assert (code, out.split()[0]) == (0, image_id)
    code, out, _ = run(capsys, "info", "demo/sample-leaf.jpg")
    assert (code, json.loads(out)["image_id"]) == (0, image_id)
    code, out, _ = run(capsys, "info", image_id)
    assert json.loads(out)["sha256"] == uploaded["sha256"]

    assert run(capsys, "delete", image_id)[:2] == (0, f"deleted {image_id}\n")
    code, _, err = run(capsys, "delete", image_id)
    assert code == 1
    assert "no image" in err
    code, out, _ = run(capsys, "audit")
    assert code == 0
    assert "orphan objects: 0" in out


def test_a_directory_upload_skips_what_is_not_an_image(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    photos = workdir / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(SAMPLE.read_bytes())
    (photos / "notes.txt").write_text("not a photo")
    (photos / "nested").mkdir()
    (photos / "nested" / "b.jpg").write_bytes(SAMPLE.read_bytes())
    code, out, err = run(capsys, "upload", str(photos), "--session", "s1", "--concurrency", "2")
    assert code == 1
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == ["s1/a.jpg", "s1/b.jpg"]
    assert err.count("\n") == 1
    assert "skipped" in err
    assert "notes.txt: not an image" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["upload", "missing.jpg", "--session", "s"], "no such file or directory: missing.jpg"),
        (["upload", "SAMPLE", "--session", "../etc"], "session"),
        (["upload", "SAMPLE", "--session", "s", "--concurrency", "0"], "--concurrency"),
        (["frobnicate"], "invalid choice"),
        (["ls", "--colour"], "unrecognized arguments"),
        (["upload", "SAMPLE"], "--session"),
        (["presign", "s/a.jpg", "--hours", "500"], "168"),
        (["delete", "not-a-uuid"], "not an image id"),
        (["download", "../x.jpg"], "invalid"),
        (["presign", "s/a.jpg", "--put"], "--content-type"),
        (["presign", "s/a.jpg", "--content-type", "image/png"], "--put"),
        (["presign", "s/a.jpg", "--put", "--content-type", "jpeg"], "content type"),
    ],
)
def test_bad_usage_and_input_get_one_line_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [str(SAMPLE) if part == "SAMPLE" else part for part in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("demeter-storage")
    assert ": error: " in err
    assert message in err


def test_a_missing_object_is_a_failed_operation(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "download", "s/none.jpg")
    assert code == 1
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_a_download_that_fails_verification_leaves_no_file(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(capsys, "upload", str(SAMPLE), "--session", "s")[0] == 0
    stored = workdir / "demeter-data" / "demeter-photos-original" / "s" / "sample-leaf.jpg"
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF
    stored.write_bytes(bytes(data))
    code, _, err = run(capsys, "download", "s/sample-leaf.jpg", "-o", "out.jpg")
    assert code == 1
    assert "SHA-256" in err or "sha256" in err.lower()
    assert not (workdir / "out.jpg").exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".out.jpg")] == []


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match=r"none\.jpg"):
        main(["--debug", "download", "s/none.jpg"])


def test_lifecycle_apply_show_sweep_and_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor")
    assert code == 0, out  # on the local store, an unapplied policy is only a note
    assert "note    lifecycle of demeter-photos-viz is not the configured policy yet" in out
    assert "fix: run `demeter-storage lifecycle apply`" in out
    assert run(capsys, "lifecycle", "apply")[0] == 0
    code, out, _ = run(capsys, "lifecycle", "show")
    shown = json.loads(out)
    assert shown["applied"]["demeter-photos-viz"]["rules"][1]["expire_after_days"] == 90
    assert run(capsys, "lifecycle", "sweep", "--dry-run")[1].endswith("would remove 0 object(s)\n")
    code, out, _ = run(capsys, "doctor")
    assert code == 0, out
    assert "everything looks right" in out
    assert "note" not in out
    code, out, _ = run(capsys, "reconcile", "--json")
    assert (code, json.loads(out)["abandoned_uploads"]) == (0, [])


def test_doctor_reports_invalid_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMETER_STORAGE_BACKEND", "ftp")
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "PROBLEM the settings are invalid" in out
    assert "DEMETER_STORAGE_BACKEND" in out


def test_the_progress_bar_draws_on_terminals_only(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(2048, 2, stream)
        (tmp_path / "f").write_bytes(b"x" * 2048)
        with (tmp_path / "f").open("rb") as raw:
            counting = CountingFile(raw, progress)
            counting.read(1024)
            counting.readinto(bytearray(4096))
        progress.file_done()
        progress.finish()
    assert pipe.getvalue() == ""
    assert "2.0 KiB / 2.0 KiB  1/2 files" in terminal.getvalue()
    assert terminal.getvalue().startswith("\r[############################]")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli(workdir: Path, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demeter_storage.cli", *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_answers_signed_urls_and_refuses_a_taken_port(workdir: Path) -> None:
    pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
    port = _free_port()
    env = {**os.environ, "DEMETER_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    assert _cli(workdir, "upload", str(SAMPLE), "--session", "s", env=env).returncode == 0
    url = _cli(workdir, "presign", "s/sample-leaf.jpg", env=env).stdout.strip()
    server = subprocess.Popen(
        [sys.executable, "-m", "demeter_storage.cli", "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.read() == SAMPLE.read_bytes()
                    break
            except urllib.error.URLError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                url.replace("X-Demeter-Expires=86400", "X-Demeter-Expires=86401")
            )
        refused.value.close()
        assert refused.value.code == 403
        taken = _cli(workdir, "serve", "--port", str(port), env=env)
        assert taken.returncode == 2
        assert taken.stderr.count("\n") == 1
        assert "in use" in taken.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_doctor_is_content_with_the_memory_backend(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMETER_STORAGE_BACKEND", "memory")
    code, out, _ = run(capsys, "doctor")
    assert code == 0, out
    assert "lifecycle" not in out


def test_presign_put_refuses_a_key_an_image_owns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "upload", str(SAMPLE), "--session", "s", "--json")
    image_id = json.loads(out)["image_id"]
    code, out, err = run(
        capsys, "presign", "s/sample-leaf.jpg", "--put", "--content-type", "image/jpeg"
    )
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert f"image {image_id}" in err
    assert "X-Demeter" not in err


def test_presign_put_json_lists_the_headers_to_send(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "presign", "s/new.png", "--put", "--content-type", "image/png", "--json"
    )
    assert (code, err) == (0, "")
    shown = json.loads(out)
    assert shown["method"] == "PUT"
    assert shown["headers"] == {"Content-Type": "image/png", "If-None-Match": "*"}
    assert "X-Demeter-Content-Type=image%2Fpng" in shown["url"]
    assert shown["expires_in"] == 24 * 3600
