"""The conditional part of the :class:`~demeter_storage.ports.ImageStore` contract.

Create-only puts and copies, deletes of one version, and PUT URLs that pin
their content type: the store-level guarantees that keep a confirmed image's
bytes from ever changing. Mixed into
:class:`~demeter_storage.testing.contract.ImageStoreContract`; it uses the
same ``store`` fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from demeter_storage.domain.errors import (
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    ValidationError,
)
from demeter_storage.ports import ImageStore


async def _one_shot(data: bytes) -> AsyncIterator[bytes]:
    yield data


class ConditionContract:
    """Conditional writes and deletes; subclasses provide ``store``."""

    async def test_put_if_absent_creates_a_missing_object(self, store: ImageStore) -> None:
        info = await store.put("c1/new.jpg", b"first", content_type="image/jpeg", if_absent=True)
        assert info.size == 5
        assert await store.get("c1/new.jpg") == b"first"

    @pytest.mark.parametrize("source", ["bytes", "stream"])
    async def test_put_if_absent_never_replaces_an_object(
        self, store: ImageStore, source: str
    ) -> None:
        await store.put("c1/kept.jpg", b"confirmed", content_type="image/jpeg")
        data = b"intruder" if source == "bytes" else _one_shot(b"intruder")
        with pytest.raises(ObjectExists) as raised:
            await store.put("c1/kept.jpg", data, content_type="image/png", if_absent=True)
        assert raised.value.key == "c1/kept.jpg"
        assert await store.get("c1/kept.jpg") == b"confirmed"
        assert (await store.head("c1/kept.jpg")).content_type == "image/jpeg"

    async def test_concurrent_create_only_puts_have_one_winner(self, store: ImageStore) -> None:
        async def attempt(index: int) -> bytes | None:
            body = f"writer {index}".encode()
            try:
                await store.put("c1/race.jpg", body, content_type="image/jpeg", if_absent=True)
            except ObjectExists:
                return None
            return body

        results = await asyncio.gather(*(attempt(i) for i in range(6)))
        winners = [body for body in results if body is not None]
        assert len(winners) == 1
        assert await store.get("c1/race.jpg") == winners[0]

    async def test_put_refuses_a_non_bool_if_absent(self, store: ImageStore) -> None:
        with pytest.raises(TypeError, match="if_absent"):
            await store.put("c1/x.jpg", b"x", content_type="image/jpeg", if_absent="yes")  # type: ignore[arg-type]

    async def test_copy_keeps_bytes_type_and_metadata(self, store: ImageStore) -> None:
        await store.put(
            "c2/source.jpg", b"source bytes", content_type="image/jpeg", metadata={"row": "7"}
        )
        info = await store.copy("c2/source.jpg", "c2/target.jpg")
        assert info.key == "c2/target.jpg"
        assert info.size == len(b"source bytes")
        assert await store.get("c2/target.jpg") == b"source bytes"
        head = await store.head("c2/target.jpg")
        assert head.content_type == "image/jpeg"
        assert dict(head.metadata) == {"row": "7"}
        assert await store.get("c2/source.jpg") == b"source bytes"

    async def test_copy_if_absent_never_replaces_the_target(self, store: ImageStore) -> None:
        await store.put("c2/a.jpg", b"aaa", content_type="image/jpeg")
        await store.put("c2/b.jpg", b"bbb", content_type="image/jpeg")
        with pytest.raises(ObjectExists):
            await store.copy("c2/a.jpg", "c2/b.jpg", if_absent=True)
        assert await store.get("c2/b.jpg") == b"bbb"
        await store.copy("c2/a.jpg", "c2/b.jpg")
        assert await store.get("c2/b.jpg") == b"aaa"

    async def test_copy_of_a_missing_object_is_not_found(self, store: ImageStore) -> None:
        with pytest.raises(ObjectNotFound):
            await store.copy("c2/missing.jpg", "c2/target.jpg")
        assert not await store.exists("c2/target.jpg")

    async def test_copy_onto_itself_is_refused(self, store: ImageStore) -> None:
        with pytest.raises(ValidationError, match="onto itself"):
            await store.copy("c2/same.jpg", "c2/same.jpg")

    async def test_delete_if_match_deletes_that_version_only(self, store: ImageStore) -> None:
        first = await store.put("c3/v.jpg", b"version one", content_type="image/jpeg")
        etag_one = (await store.head("c3/v.jpg")).etag
        assert etag_one is not None
        assert first.etag is None or first.etag.strip('"') == etag_one.strip('"')
        await store.put("c3/v.jpg", b"version two!", content_type="image/jpeg")
        with pytest.raises(ObjectChanged):
            await store.delete("c3/v.jpg", if_match=etag_one)
        assert await store.get("c3/v.jpg") == b"version two!"
        listed = [info async for info in store.list("c3/")]
        assert listed[0].etag is not None
        await store.delete("c3/v.jpg", if_match=listed[0].etag)
        assert not await store.exists("c3/v.jpg")

    async def test_delete_if_match_of_a_missing_key_is_fine(self, store: ImageStore) -> None:
        await store.delete("c3/never.jpg", if_match='"0123456789abcdef0123456789abcdef"')

    async def test_delete_refuses_an_empty_if_match(self, store: ImageStore) -> None:
        with pytest.raises(ValidationError, match="if_match"):
            await store.delete("c3/v.jpg", if_match='""')

    async def test_put_urls_pin_their_content_type_and_only_create(self, store: ImageStore) -> None:
        url = await store.presign(
            "c4/upload.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
        )
        assert url.method == "PUT"
        assert dict(url.headers) == {"Content-Type": "image/jpeg", "If-None-Match": "*"}
        with pytest.raises(ValidationError, match="content_type"):
            await store.presign("c4/upload.jpg", expires_in=60, method="PUT")
        with pytest.raises(ValidationError, match="content type"):
            await store.presign("c4/a.jpg", expires_in=60, content_type="image/jpeg")
        with pytest.raises(ValidationError):
            await store.presign("c4/a.jpg", expires_in=60, method="PUT", content_type="not a type")
        get_url = await store.presign("c4/a.jpg", expires_in=60)
        assert dict(get_url.headers) == {}
