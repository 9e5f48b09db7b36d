"""A hypothesis state machine: the in-memory store is the model, your store must agree.

Every rule runs the same operation on both stores and compares the outcomes
(the value, or the type of error); after every step the full listings must
match. Build a test case from a factory of empty stores::

    TestMyStoreMachine = image_store_state_machine(my_store_factory).TestCase

where ``my_store_factory()`` returns an async context manager yielding an empty
store (and cleaning up after it).
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import StorageError
from demeter_storage.domain.objects import ObjectInfo
from demeter_storage.ports import ImageStore

StoreFactory = Callable[[], AbstractAsyncContextManager[ImageStore]]

# A few keys that share prefixes, sort awkwardly and need normalising.
KEYS = (
    "s1/a.jpg",
    "s1/b.jpg",
    "s1/a.jpg.bak",
    "s10/a.jpg",
    "s1-x/a.jpg",
    "s2/ä.jpg",
    unicodedata.normalize("NFD", "s2/ä.jpg"),
    "s2/日本.png",
    "s2/space name.jpg",
    "s2/a+b=c&d%20.jpg",
)
PREFIXES = ("", "s", "s1", "s1/", "s1/a", "s2/", "s10/", "zzz", "s1-")
CONTENT_TYPES = ("image/jpeg", "image/png", "application/octet-stream")

keys = st.sampled_from(KEYS)
metadata = st.dictionaries(
    st.sampled_from(("camera", "row", "x-1")),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool),
    max_size=2,
)


async def _outcome(call: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "ok", await call
    except StorageError as exc:
        return "error", type(exc).__name__


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


def image_store_state_machine(factory: StoreFactory) -> type[RuleBasedStateMachine]:
    """Return a state machine class checking stores made by ``factory`` against the model."""

    class ImageStoreStateMachine(RuleBasedStateMachine):
        """Random sequences of operations; the store under test must match the model."""

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.context = factory()
            self.store = self.runner.run(self.context.__aenter__())
            self.model = InMemoryImageStore("model")

        def run(self, call: Coroutine[Any, Any, Any]) -> Any:
            return self.runner.run(call)

        def both(self, operation: Callable[[ImageStore], Awaitable[Any]]) -> tuple[Any, Any]:
            """Run ``operation`` on the model and the store; their outcomes must agree."""
            expected = self.run(_outcome(operation(self.model)))
            actual = self.run(_outcome(operation(self.store)))
            assert actual[0] == expected[0], f"model {expected}, store {actual}"
            if expected[0] == "error":
                assert actual == expected
            return expected[1], actual[1]

        @rule(
            key=keys,
            data=st.binary(max_size=3000),
            content_type=st.sampled_from(CONTENT_TYPES),
            meta=metadata,
        )
        def put(self, key: str, data: bytes, content_type: str, meta: dict[str, str]) -> None:
            expected, actual = self.both(
                lambda s: s.put(key, data, content_type=content_type, metadata=meta)
            )
            assert isinstance(expected, ObjectInfo)
            assert (actual.key, actual.size, actual.sha256) == (
                expected.key,
                expected.size,
                expected.sha256,
            )

        @rule(key=keys, chunks=st.lists(st.binary(min_size=1, max_size=700), max_size=5))
        def put_streamed(self, key: str, chunks: list[bytes]) -> None:
            async def source() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            expected, actual = self.both(lambda s: s.put(key, source(), content_type="image/jpeg"))
            assert isinstance(expected, ObjectInfo)
            assert (actual.size, actual.sha256) == (expected.size, expected.sha256)

        @rule(key=keys)
        def get(self, key: str) -> None:
            expected, actual = self.both(lambda s: s.get(key))
            assert actual == expected

        @rule(key=keys, chunk_size=st.integers(min_value=1, max_value=4096))
        def stream(self, key: str, chunk_size: int) -> None:
            expected, actual = self.both(lambda s: _collect(s.stream(key, chunk_size=chunk_size)))
            if isinstance(expected, list):
                assert b"".join(actual) == b"".join(expected)
                assert all(0 < len(chunk) <= chunk_size for chunk in actual)

        @rule(key=keys)
        def head(self, key: str) -> None:
            expected, actual = self.both(lambda s: s.head(key))
            if not isinstance(expected, str):
                assert (actual.size, actual.content_type, actual.sha256) == (
                    expected.size,
                    expected.content_type,
                    expected.sha256,
                )
                assert dict(actual.metadata) == dict(expected.metadata)

        @rule(key=keys)
        def exists(self, key: str) -> None:
            expected, actual = self.both(lambda s: s.exists(key))
            assert actual == expected

        @rule(key=keys)
        def delete(self, key: str) -> None:
            self.both(lambda s: s.delete(key))

        @rule(chosen=st.lists(keys, max_size=4))
        def delete_many(self, chosen: list[str]) -> None:
            self.both(lambda s: s.delete_many(chosen))

        @rule(prefix=st.sampled_from(PREFIXES))
        def list_prefix(self, prefix: str) -> None:
            expected, actual = self.both(lambda s: _collect(s.list(prefix)))
            assert [(i.key, i.size) for i in actual] == [(i.key, i.size) for i in expected]

        @invariant()
        def listings_agree(self) -> None:
            expected = self.run(_collect(self.model.list()))
            actual = self.run(_collect(self.store.list()))
            assert [(i.key, i.size) for i in actual] == [(i.key, i.size) for i in expected]

        def teardown(self) -> None:
            try:
                self.run(self.context.__aexit__(None, None, None))
            finally:
                self.runner.close()

    return ImageStoreStateMachine
