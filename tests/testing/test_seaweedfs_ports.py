"""free_port_pairs: ports for SeaweedFS's roles, none of them another role's gRPC port."""

from __future__ import annotations

from unittest import mock

from demeter_storage.testing import seaweedfs
from demeter_storage.testing.seaweedfs import GRPC_OFFSET, free_port_pairs


def test_no_port_is_another_ports_grpc_port() -> None:
    # The OS offers a port, then that port's gRPC port (and the reverse), then free ones.
    offered = iter([30000, 30000 + GRPC_OFFSET, 41000, 41000 - GRPC_OFFSET, 30001, 30002])
    with (
        mock.patch.object(seaweedfs, "_port_from_the_os", side_effect=offered),
        mock.patch.object(seaweedfs, "_port_is_free", return_value=True),
        mock.patch.object(seaweedfs.secrets, "randbelow", side_effect=[1, 1, 2, 3]),
    ):
        ports = free_port_pairs(4)
    grpc = {port + GRPC_OFFSET for port in ports}
    assert len(set(ports)) == 4
    assert not grpc & set(ports)


def test_real_ports_are_free_pairs() -> None:
    ports = free_port_pairs(5)
    assert len(set(ports)) == 5
    assert not {port + GRPC_OFFSET for port in ports} & set(ports)
