"""What the fuzzers found, kept as regression tests (each failed when it was found).

1. ``StorageSettings.from_env`` raised ``RuntimeError`` (from ``Path.expanduser``)
   for ``~unknown-user/...`` in ``DEMETER_STORAGE_ROOT`` / ``DEMETER_LIFECYCLE_FILE``.
2. Lifecycle days above 36,500 passed ``from_env``; ``lifecycle_policy()`` (so
   ``build_service``) then raised ``ValidationError``, not ``ConfigurationError``.
3. A non-ASCII signature (URL or form) or form policy made ``UrlSigner`` raise
   ``TypeError`` / ``UnicodeEncodeError``: ``verify_url`` broke its contract and
   ``SignedUrlApp`` answered 500 instead of 403.
"""

from __future__ import annotations

import httpx
import pytest

from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.domain.errors import ConfigurationError, InvalidSignature
from demeter_storage.settings.storage import StorageSettings
from demeter_storage.web.app import SignedUrlApp

JPEG = b"\xff\xd8\xff\xe0 a photo"


@pytest.mark.parametrize("variable", ["DEMETER_STORAGE_ROOT", "DEMETER_LIFECYCLE_FILE"])
def test_a_path_under_an_unknown_users_home_is_a_configuration_error(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        StorageSettings.from_env({variable: "~no-such-user-demeter/data"})


@pytest.mark.parametrize(
    "variable",
    [
        "DEMETER_VIZ_EXPIRE_DAYS",
        "DEMETER_ORIGINALS_EXPIRE_DAYS",
        "DEMETER_ABORT_INCOMPLETE_UPLOADS_DAYS",
    ],
)
def test_lifecycle_days_beyond_100_years_are_a_configuration_error(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        StorageSettings.from_env({variable: "36501"}).lifecycle_policy()


async def _signed_url(store: InMemoryImageStore) -> str:
    await store.put("s/a.jpg", JPEG, content_type="image/jpeg")
    return (await store.presign("s/a.jpg", expires_in=60)).url


async def test_a_non_ascii_signature_is_an_invalid_signature() -> None:
    store = InMemoryImageStore("viz", base_url="http://testserver/viz")
    url = await _signed_url(store)
    with pytest.raises(InvalidSignature):
        await store.verify_url(url[:-2] + "%C3%A9")


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
async def test_the_server_answers_403_to_a_non_ascii_signature(method: str) -> None:
    store = InMemoryImageStore("viz", base_url="http://testserver/viz")
    url = await _signed_url(store)
    transport = httpx.ASGITransport(SignedUrlApp({"viz": store}))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.request(method, url[:-2] + "%C3%A9", content=b"x")
    assert response.status_code == 403


@pytest.mark.parametrize(
    "field",
    [
        "x-demeter-signature",  # was: TypeError from hmac.compare_digest on non-ASCII str
        "policy",  # was: UnicodeEncodeError from encoding the policy as ASCII
    ],
)
async def test_the_server_answers_403_to_a_non_ascii_form_field(field: str) -> None:
    store = InMemoryImageStore("viz", base_url="http://testserver/viz")
    form = await store.presign_post(
        "s/b.jpg", content_type="image/jpeg", max_size=99, expires_in=60
    )
    fields = {**form.fields, field: form.fields[field] + "\u00e9"}
    transport = httpx.ASGITransport(SignedUrlApp({"viz": store}))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/viz", data=fields, files={"file": ("b.jpg", JPEG, "image/jpeg")}
        )
    assert response.status_code == 403
    assert not await store.exists("s/b.jpg")
