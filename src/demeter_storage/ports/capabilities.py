"""Optional store capabilities, each a small protocol a store may fulfil.

The :class:`~demeter_storage.ports.ImageStore` port is what every store does;
these are what only some do. Code that needs one asks with ``isinstance``
(the protocols are runtime-checkable) instead of reaching for attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol, runtime_checkable

from demeter_storage.domain.objects import Grant, PostPolicy


@runtime_checkable
class ProvisionsBucket(Protocol):
    """A store that can create its own bucket (the S3 stores)."""

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; return whether it was created."""
        ...


@runtime_checkable
class RemovesLeftovers(Protocol):
    """A store whose crashed writes can leave hidden files behind (the local store)."""

    async def remove_leftovers(self, older_than: timedelta) -> int:
        """Remove hidden leftovers older than ``older_than``; return how many went."""
        ...


class UrlVerifier(Protocol):
    """Checks the signed URLs and upload forms a store issued."""

    @property
    def base_url(self) -> str:
        """The URL that signed object URLs start with."""
        ...

    def verify_grant(self, quoted_key: str, query: str, method: str = "GET") -> Grant:
        """What a signed URL's path and query allow, or ``InvalidSignature``."""
        ...

    def verify_post(self, fields: Mapping[str, str]) -> PostPolicy:
        """What an upload form's fields allow, or ``InvalidSignature``."""
        ...


@runtime_checkable
class ServesSignedUrls(Protocol):
    """A store whose signed URLs our web app serves (the local and in-memory stores)."""

    name: str

    async def url_signer(self) -> UrlVerifier:
        """The verifier behind the store's ``presign`` and ``presign_post``."""
        ...
