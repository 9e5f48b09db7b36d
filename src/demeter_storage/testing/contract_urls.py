"""The URL part of the :class:`~demeter_storage.ports.ImageStore` contract: URLs and forms.

Mixed into :class:`~demeter_storage.testing.contract.ImageStoreContract`;
it uses the same ``store`` fixture.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from demeter_storage.domain.errors import ValidationError
from demeter_storage.domain.objects import MAX_PRESIGN_SECONDS
from demeter_storage.ports import ImageStore


class PresignContract:
    """Presigned URLs and upload forms; subclasses provide ``store``."""

    async def test_presign_grants_a_method_until_expiry(self, store: ImageStore) -> None:
        await store.put("s1/p.jpg", b"p", content_type="image/jpeg")
        url = await store.presign("s1/p.jpg", expires_in=3600)
        assert url.method == "GET"
        assert url.url.split("?", 1)[0].endswith("s1/p.jpg")
        assert url.expires_at.tzinfo is not None
        put_url = await store.presign(
            "s1/new.jpg", expires_in=60, method="PUT", content_type="image/jpeg"
        )
        assert put_url.method == "PUT"
        assert put_url.url != url.url
        longest = await store.presign("s1/p.jpg", expires_in=MAX_PRESIGN_SECONDS)
        assert longest.expires_at > url.expires_at

    @pytest.mark.parametrize("expires_in", [0, -5, MAX_PRESIGN_SECONDS + 1])
    async def test_presign_refuses_lifetimes_outside_one_second_to_seven_days(
        self, store: ImageStore, expires_in: int
    ) -> None:
        with pytest.raises(ValidationError, match="7 days"):
            await store.presign("s1/p.jpg", expires_in=expires_in)

    async def test_presign_refuses_unknown_methods(self, store: ImageStore) -> None:
        with pytest.raises(ValidationError, match="method"):
            await store.presign("s1/p.jpg", expires_in=60, method="DELETE")  # type: ignore[arg-type]

    async def test_presign_post_pins_key_and_content_type(self, store: ImageStore) -> None:
        form = await store.presign_post(
            "s1/direct.jpg", content_type="image/jpeg", max_size=1000, expires_in=900
        )
        assert form.fields["key"] == "s1/direct.jpg"
        assert form.fields["Content-Type"] == "image/jpeg"
        assert form.url.startswith(("http://", "https://", "memory://"))
        assert form.expires_at.tzinfo is not None
        longer = await store.presign_post(
            "s1/direct.jpg", content_type="image/jpeg", max_size=1000, expires_in=1800
        )
        assert longer.expires_at - form.expires_at >= timedelta(minutes=14)
        assert "fields" in repr(form)
        assert form.fields["policy"] not in repr(form)
        assert not await store.exists("s1/direct.jpg")

    @pytest.mark.parametrize(
        ("key", "content_type", "max_size", "expires_in", "error"),
        [
            ("../x.jpg", "image/jpeg", 10, 60, ValidationError),
            ("s1/x.jpg", "not a type", 10, 60, ValidationError),
            ("s1/x.jpg", "image/jpeg", 0, 60, ValidationError),
            ("s1/x.jpg", "image/jpeg", True, 60, TypeError),
            ("s1/x.jpg", "image/jpeg", 10, 0, ValidationError),
            ("s1/x.jpg", "image/jpeg", 10, MAX_PRESIGN_SECONDS + 1, ValidationError),
        ],
    )
    async def test_presign_post_refuses_bad_arguments(  # noqa: PLR0917 - parametrized
        self,
        store: ImageStore,
        key: str,
        content_type: str,
        max_size: int,
        expires_in: int,
        error: type[Exception],
    ) -> None:
        with pytest.raises(error):
            await store.presign_post(
                key, content_type=content_type, max_size=max_size, expires_in=expires_in
            )
