"""``demeter-storage serve`` as a process: PUT URLs from ``presign --put``, and stopping it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import clean_env, cli, no_traceback

pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Serving:
    """``demeter-storage serve`` in a subprocess on a temporary root."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = clean_env(workdir, DEMETER_PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}")
        self.process = subprocess.Popen(
            cli("serve", "--port", str(self.port), *extra),
            cwd=workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline().decode()  # printed once the store is open
        assert first.startswith("serving "), first
        deadline = time.monotonic() + 20
        while True:  # the banner comes just before uvicorn binds: poll until it accepts
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start listening"
                assert self.process.poll() is None, self.process.communicate()
                time.sleep(0.02)

    def command(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli(*argv),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=60)
        assert out == b""
        return self.process.returncode, err.decode()


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    running = Serving(tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate()


def put(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_on_a_signal_with_exit_0_and_no_traceback(
    serving: Serving, sig: signal.Signals
) -> None:
    code, err = serving.stop(sig)
    no_traceback(err)
    assert code == 0, err
    assert err.endswith(f"demeter-storage: stopped ({sig.name}); the stores are closed\n"), err


def test_serve_stops_on_sigterm_even_with_an_upload_stalled_mid_body(tmp_path: Path) -> None:
    serving = Serving(tmp_path, "--shutdown-timeout", "0")
    try:
        signed = json.loads(
            serving.command(
                "presign", "s/new.jpg", "--put", "--content-type", "image/jpeg", "--json"
            ).stdout
        )
        path = "/" + signed["url"].split("/", 3)[3]
        bucket_dir = tmp_path / "data" / "demeter-photos-original"
        with socket.create_connection(("127.0.0.1", serving.port), timeout=10) as stalled:
            stalled.sendall(
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                "If-None-Match: *\r\nContent-Length: 1000000\r\n\r\n".encode()
                + b"\xff\xd8\xff" * 1000
            )
            deadline = time.monotonic() + 20
            while not any(p.is_file() for p in bucket_dir.rglob("*") if ".demeter" not in p.parts):
                assert time.monotonic() < deadline, "the upload never reached the store"
                time.sleep(0.02)
            code, err = serving.stop(signal.SIGTERM)
            answer = stalled.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"shutting down" in answer
        no_traceback(err)
        assert code == 0, err
        assert err.endswith("demeter-storage: stopped (SIGTERM); the stores are closed\n"), err
        # The cut-off upload left nothing behind: no object, no temporary file.
        assert [p for p in bucket_dir.rglob("*") if p.is_file() and ".demeter" not in p.parts] == []
    finally:
        if serving.process.poll() is None:
            serving.process.kill()
            serving.process.communicate()


def test_a_presigned_put_from_the_command_uploads_once(serving: Serving) -> None:
    made = serving.command("presign", "s/new.png", "--put", "--content-type", "image/png")
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    headers = dict(part.strip(" '\n").split(": ", 1) for part in made.stderr.split("-H")[1:])
    assert headers == {"Content-Type": "image/png", "If-None-Match": "*"}
    assert put(url, b"\x89PNG first", headers) == 200
    assert put(url, b"\x89PNG second", headers) == 412
    assert put(url, b"\x89PNG third", {**headers, "Content-Type": "image/gif"}) == 403
    assert put(url, b"\x89PNG fourth", {"Content-Type": "image/png"}) == 428
    stored = tmp_root_object(serving, "s/new.png")
    assert stored == b"\x89PNG first"
    code, err = serving.stop(signal.SIGTERM)
    assert code == 0, err


def tmp_root_object(serving: Serving, key: str) -> bytes:
    path = serving.workdir / "data" / "demeter-photos-original" / key
    return path.read_bytes()


def test_serve_on_the_s3_backend_is_refused_in_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path, DEMETER_STORAGE_BACKEND="s3", S3_ENDPOINT_URL="http://127.0.0.1:9")
    done = subprocess.run(
        cli("serve", "--port", str(free_port())),
        cwd=tmp_path,
        env={**env, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    no_traceback(done.stderr)
    assert done.returncode == 2
    assert "S3 serves its own" in done.stderr
