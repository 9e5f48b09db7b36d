"""The command's exit codes and standard streams: pipes, signals, closed outputs, no tracebacks.

In-process runs go through ``demeter_storage.cli.main``; whatever depends on
real file descriptors (stdout as a pipe, a reader that goes away, signals)
runs ``python -m demeter_storage.cli`` in a subprocess on a temporary root.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from demeter_storage.cli import build_parser, main
from demeter_storage.cli.commands import COMMANDS
from tests.cli.support import clean_env, cli, no_traceback

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "assets" / "sample-leaf.jpg"
BIG = 3 * 1024 * 1024 + 5  # more than a pipe holds, and more than one chunk


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("DEMETER_", "S3_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEMETER_STORAGE_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DEMETER_THUMBNAILS", "0")
    return tmp_path


@pytest.fixture
def big_photo(workdir: Path) -> bytes:
    """A JPEG-looking file of BIG bytes, uploaded as ``s/big.jpg``."""
    data = b"\xff\xd8\xff\xe0" + bytes(range(251)) * (BIG // 251) + b"\xd9" * (BIG % 251 - 4)
    assert len(data) == BIG
    (workdir / "big.jpg").write_bytes(data)
    assert main(["upload", "big.jpg", "--session", "s"]) == 0
    return data


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# download -o -: the exact bytes, whatever stdout is.


@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("blocking", [True, False], ids=["blocking-pipe", "non-blocking-pipe"])
def test_download_to_stdout_writes_exactly_the_objects_bytes(
    workdir: Path, big_photo: bytes, unbuffered: str, blocking: bool
) -> None:
    """A pipe another process left non-blocking (node does) or an unbuffered stdout included."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, blocking)
    env = clean_env(workdir, PYTHONUNBUFFERED=unbuffered)
    if not unbuffered:
        del env["PYTHONUNBUFFERED"]
    process = subprocess.Popen(
        cli("download", "s/big.jpg", "-o", "-"),
        cwd=workdir,
        env=env,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        received = reader.read()
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 0, stderr
    assert len(received) == len(big_photo)
    assert received == big_photo
    assert stderr == b""


@pytest.mark.parametrize(
    "argv",
    [
        ["download", "s/big.jpg", "-o", "-"],
        ["ls"],
        ["info", "s/big.jpg"],
        ["presign", "s/big.jpg"],
        ["lifecycle", "show"],
    ],
    ids=lambda argv: argv[0],
)
def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(
    workdir: Path, big_photo: bytes, argv: list[str]
) -> None:
    """As ``| head -c 10`` does: 141 is what a shell reports for a command killed by SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first byte: every write fails
    process = subprocess.run(
        cli(*argv),
        cwd=workdir,
        env=clean_env(workdir),
        stdout=write_end,
        stderr=subprocess.PIPE,
        check=False,
        timeout=60,
    )
    os.close(write_end)
    no_traceback(process.stderr)
    assert process.stderr == b""
    assert process.returncode == 141


def test_a_reader_that_stops_half_way_ends_the_download_with_141(
    workdir: Path, big_photo: bytes
) -> None:
    process = subprocess.Popen(
        cli("download", "s/big.jpg", "-o", "-"),
        cwd=workdir,
        env=clean_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.read(10) == big_photo[:10]
    process.stdout.close()
    stderr = process.communicate(timeout=60)[1]
    no_traceback(stderr)
    assert (process.returncode, stderr) == (141, b"")


def test_download_to_a_closed_stdout_is_bad_usage(workdir: Path, big_photo: bytes) -> None:
    process = subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" >&-', "sh", *cli("download", "s/big.jpg", "-o", "-")],
        cwd=workdir,
        env=clean_env(workdir),
        stderr=subprocess.PIPE,
        check=False,
        timeout=60,
    )
    no_traceback(process.stderr)
    assert process.returncode == 2
    assert process.stderr.decode().count("\n") == 1
    assert "standard output is closed" in process.stderr.decode()


# download -o PATH


@pytest.fixture
def uploaded(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["upload", str(SAMPLE), "--session", "s"]) == 0
    capsys.readouterr()
    return workdir


@pytest.mark.parametrize(
    "target",
    ["afile/x.jpg", "missing/dir/x.jpg", "/proc/version/x.jpg"],
    ids=["under-a-file", "missing-directory", "proc"],
)
def test_an_unwritable_output_path_is_bad_usage_naming_that_path(
    uploaded: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    (uploaded / "afile").write_text("a file, not a directory")
    code = main(["download", "s/sample-leaf.jpg", "-o", target])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert f"cannot write {target}:" in err
    assert ".x.jpg." not in err  # the temporary file is not the user's business
    assert [p.name for p in uploaded.rglob(".x.jpg.*")] == []


def test_an_output_directory_receives_the_file_under_its_name(
    uploaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (uploaded / "out").mkdir()
    assert main(["download", "s/sample-leaf.jpg", "-o", "out"]) == 0
    assert (uploaded / "out" / "sample-leaf.jpg").read_bytes() == SAMPLE.read_bytes()
    assert capsys.readouterr().err == f"wrote {Path('out') / 'sample-leaf.jpg'}\n"


# Configuration problems, interrupts, --debug.


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEMETER_LIFECYCLE_FILE", "/nonexistent/policy.json", "DEMETER_LIFECYCLE_FILE"),
        ("DEMETER_STORAGE_BACKEND", "ftp", "DEMETER_STORAGE_BACKEND"),
        ("DEMETER_DATABASE_URL", "nonsense://", "DEMETER_DATABASE_URL"),
        ("S3_READ_TIMEOUT", "soon", "S3_READ_TIMEOUT"),
    ],
)
def test_a_missing_or_invalid_configuration_is_exit_2_without_a_traceback(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code = main(["lifecycle", "show"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert message in err
    no_traceback(err)


def test_an_interrupt_is_exit_130_in_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, "ls", interrupted)
    assert main(["ls"]) == 130
    assert capsys.readouterr() == ("", "demeter-storage: interrupted\n")
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "ls"])


def test_debug_keeps_the_traceback_of_a_closed_pipe(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(COMMANDS, "ls", broken)
    with pytest.raises(BrokenPipeError):
        main(["--debug", "ls"])


@pytest.fixture
def silent_s3() -> Iterator[socket.socket]:
    """An S3 endpoint that accepts connections and never answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(60)
        yield listener


def s3_env(workdir: Path, listener: socket.socket) -> dict[str, str]:
    return clean_env(
        workdir,
        DEMETER_STORAGE_BACKEND="s3",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{listener.getsockname()[1]}",
        S3_ADDRESSING_STYLE="path",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLEEXAMPLE00",
        AWS_SECRET_ACCESS_KEY="x" * 40,
    )


@pytest.mark.parametrize(
    ("sig", "code", "argv"),
    [
        (signal.SIGINT, 130, ["lifecycle", "show"]),
        (signal.SIGTERM, 143, ["lifecycle", "show"]),
        (signal.SIGINT, 130, ["download", "s/a.jpg", "-o", "out.jpg"]),
        (signal.SIGTERM, 143, ["download", "s/a.jpg", "-o", "out.jpg"]),
    ],
    ids=["sigint-lifecycle", "sigterm-lifecycle", "sigint-download", "sigterm-download"],
)
def test_a_signal_while_waiting_on_the_store_ends_the_command_cleanly(
    workdir: Path, silent_s3: socket.socket, sig: signal.Signals, code: int, argv: list[str]
) -> None:
    """Ctrl-C or ``kill`` while S3 hangs: one line, 128 + the signal, no temporary file left."""
    process = subprocess.Popen(
        cli(*argv),
        cwd=workdir,
        env=s3_env(workdir, silent_s3),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        connection, _ = silent_s3.accept()  # the command is now waiting for S3's answer
    except BaseException:
        process.kill()
        raise
    with connection:
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    no_traceback(err)
    assert (process.returncode, out) == (code, b"")
    assert err.decode() == "demeter-storage: interrupted\n"
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".out.jpg")] == []
    assert not (workdir / "out.jpg").exists()


# The documented table.


def test_every_command_has_a_row_in_the_exit_code_table() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z]+)", table, flags=re.MULTILINE))
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert commands == set(COMMANDS)
    assert documented >= commands, commands - documented
    for code in ("0", "1", "2", "130", "141", "143"):
        assert f"`{code}`" in table, code


def test_presign_json_is_one_object_on_stdout(
    uploaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["presign", "s/sample-leaf.jpg", "--json"]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert (shown["method"], shown["headers"], shown["expires_in"], err) == ("GET", {}, 86400, "")
    assert shown["url"].startswith("http://127.0.0.1:8765/demeter-photos-original/s/sample-leaf")
