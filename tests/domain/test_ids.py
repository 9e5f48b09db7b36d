"""new_id: random version 4 UUIDs from a buffer of the OS's randomness."""

from __future__ import annotations

import os
import uuid
from unittest import mock

import pytest

from demeter_storage.domain import ids
from demeter_storage.domain.ids import BUFFER_BYTES, ID_BYTES, new_id


def test_ids_are_random_version_4_uuids() -> None:
    drawn = [new_id() for _ in range(3 * BUFFER_BYTES // ID_BYTES)]
    assert all(value.version == 4 and value.variant == uuid.RFC_4122 for value in drawn)
    assert len(set(drawn)) == len(drawn)


def test_the_os_is_asked_once_per_buffer() -> None:
    with mock.patch.object(ids.os, "urandom", wraps=os.urandom) as urandom:
        for _ in range(2 * BUFFER_BYTES // ID_BYTES + 1):
            new_id()
    # Up to the rest of the buffer already drawn, then one call per 256 ids.
    assert urandom.call_count in (2, 3)
    assert {call.args for call in urandom.call_args_list} == {(BUFFER_BYTES,)}


def test_a_forked_child_never_repeats_its_parents_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_buffer", ids._RandomBuffer())
    new_id()  # the parent now holds a buffer with 255 ids still to hand out
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(writer, b"".join(new_id().bytes for _ in range(8)))
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        received = pipe.read()
    os.waitpid(child, 0)
    in_child = {
        uuid.UUID(bytes=received[i : i + ID_BYTES]) for i in range(0, len(received), ID_BYTES)
    }
    in_parent = {new_id() for _ in range(8)}
    assert len(in_child) == 8
    assert not in_child & in_parent
