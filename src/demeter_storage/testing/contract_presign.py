"""The URL contract checked for real: a server that verifies signatures honours the store's URLs.

:class:`~demeter_storage.testing.contract_urls.PresignContract` checks what a
store signs; this contract sends the URLs and forms over HTTP to the server
that must honour them (as go-cloud's ``drivertest`` does with the HTTP client
its harness supplies). It is written for SigV4 (S3-compatible servers): the
tampering checks edit the ``X-Amz-*`` query parameters.

Subclass :class:`ServerCheckedUrlContract` and give it a ``signed_urls``
fixture yielding a :class:`SignedUrlHarness`: an empty store, and an HTTP
client that reaches the server its URLs point to::

    class TestMyStoreUrls(ServerCheckedUrlContract):
        @pytest.fixture
        async def signed_urls(self, seaweedfs_server):
            store = MyStore(...)
            async with httpx.AsyncClient(timeout=10) as http:
                yield SignedUrlHarness(store, http)
            await store.aclose()
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pytest

from demeter_storage.ports import ImageStore

PINNED = {"Content-Type": "image/jpeg", "If-None-Match": "*"}
"""The headers a create-only PUT URL for a JPEG pins."""


@attrs.frozen
class SignedUrlHarness:
    """What :class:`ServerCheckedUrlContract` runs against.

    Attributes:
        store: the store under test, empty.
        http: a client that reaches the server the store's URLs point to (it
            sends exactly the headers a test gives, beside its own defaults).
    """

    store: ImageStore
    http: httpx.AsyncClient

    async def send(
        self,
        url: str,
        method: str = "GET",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send one request; return its status and body."""
        response = await self.http.request(method, url, content=data, headers=dict(headers or {}))
        return response.status_code, response.content


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


@pytest.mark.asyncio
class ServerCheckedUrlContract:
    """Presigned URLs and forms sent to a real server; subclasses provide ``signed_urls``."""

    @pytest.fixture
    def signed_urls(self) -> SignedUrlHarness:
        """Override: return (or yield) the harness, its store empty."""
        raise NotImplementedError(
            "subclasses of ServerCheckedUrlContract provide a `signed_urls` fixture"
        )

    async def test_get_and_put_urls_work_and_unsigned_requests_do_not(
        self, signed_urls: SignedUrlHarness
    ) -> None:
        store, send = signed_urls.store, signed_urls.send
        await store.put("s/a b+c.jpg", b"jpeg bytes", content_type="image/jpeg")
        get_url = await store.presign("s/a b+c.jpg", expires_in=60)
        assert await send(get_url.url) == (200, b"jpeg bytes")
        put_url = await store.presign(
            "s/uploaded.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
        )
        assert (await send(put_url.url, "PUT", b"from a phone", put_url.headers))[0] == 200
        assert await store.get("s/uploaded.jpg") == b"from a phone"
        assert (await send(get_url.url.split("?")[0]))[0] == 403  # no signature at all

    async def test_a_url_expires_its_lifetime_after_it_was_signed(
        self, signed_urls: SignedUrlHarness
    ) -> None:
        before = datetime.now(UTC).replace(microsecond=0)
        url = await signed_urls.store.presign("s/a.jpg", expires_in=60)
        query = _query(url.url)
        assert query["X-Amz-Expires"] == "60"
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert before <= signed_at <= datetime.now(UTC)
        assert url.expires_at == signed_at + timedelta(seconds=60)

    async def test_put_urls_only_create_with_their_pinned_headers(
        self, signed_urls: SignedUrlHarness
    ) -> None:
        store, send = signed_urls.store, signed_urls.send
        url = await store.presign(
            "s/new.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
        )
        assert dict(url.headers) == PINNED
        signed = _query(url.url)["X-Amz-SignedHeaders"].split(";")
        assert signed == ["content-type", "host", "if-none-match"]
        refused = [
            {"Content-Type": "image/jpeg"},  # without If-None-Match
            {"Content-Type": "image/png", "If-None-Match": "*"},  # another type
            {"Content-Type": "image/jpeg", "If-None-Match": '"0123456789abcdef"'},
            {"If-None-Match": "*"},  # no type at all
        ]
        for headers in refused:
            status, body = await send(url.url, "PUT", b"intruder", headers)
            assert (status, b"SignatureDoesNotMatch" in body) == (403, True), headers
        assert not await store.exists("s/new.jpg")
        assert (await send(url.url, "PUT", b"from a phone", PINNED))[0] == 200
        assert await store.get("s/new.jpg") == b"from a phone"
        assert (await store.head("s/new.jpg")).content_type == "image/jpeg"
        # The same URL, or a fresh one, never replaces what is there.
        again = await store.presign(
            "s/new.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
        )
        for each in (url, again):
            status, body = await send(each.url, "PUT", b"replacement", PINNED)
            assert (status, b"PreconditionFailed" in body) == (412, True)
        for headers in refused:
            assert (await send(url.url, "PUT", b"replacement", headers))[0] == 403
        assert await store.get("s/new.jpg") == b"from a phone"

    async def test_tampered_and_reused_urls_are_refused(
        self, signed_urls: SignedUrlHarness
    ) -> None:
        store, send = signed_urls.store, signed_urls.send
        await store.put("s/a.jpg", b"a", content_type="image/jpeg")
        url = (await store.presign("s/a.jpg", expires_in=60)).url
        signature = _query(url)["X-Amz-Signature"]
        flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        assert (await send(url.replace(signature, flipped)))[0] == 403
        assert (await send(url.replace("s/a.jpg", "s/b.jpg")))[0] == 403
        assert (await send(url.replace("X-Amz-Expires=60", "X-Amz-Expires=600")))[0] == 403
        assert (await send(url, "PUT", b"overwrite"))[0] == 403  # a GET URL is not a PUT URL
        assert await store.get("s/a.jpg") == b"a"

    async def test_upload_forms_store_the_file_they_pin_and_nothing_else(
        self, signed_urls: SignedUrlHarness
    ) -> None:
        store, http = signed_urls.store, signed_urls.http
        form = await store.presign_post(
            "s/form.jpg", content_type="image/jpeg", max_size=100, expires_in=60
        )

        async def post(fields: Mapping[str, str], file: bytes) -> int:
            response = await http.post(
                form.url, data=dict(fields), files={"file": ("form.jpg", file, "image/jpeg")}
            )
            return response.status_code

        assert await post({**form.fields, "key": "s/elsewhere.jpg"}, b"x") == 403
        assert await post({**form.fields, "Content-Type": "image/png"}, b"x") == 403
        assert await post(form.fields, b"x" * 101) in (400, 403)  # larger than allowed
        assert [info.key async for info in store.list()] == []
        assert 200 <= await post(form.fields, b"from a form") < 300
        assert await store.get("s/form.jpg") == b"from a form"
        assert (await store.head("s/form.jpg")).content_type == "image/jpeg"
