"""HMAC-signed URLs for stores that have no server of their own to sign for them.

The local and in-memory stores hand out URLs shaped like S3's presigned ones:
``{base_url}/{key}?X-Demeter-Date=...&X-Demeter-Expires=...&X-Demeter-Signature=...``.
The signature is HMAC-SHA256 over the method, the store's scope (its bucket
name), the key, the signing time and the lifetime (and, for a PUT, the content
type it pins), so a URL cannot be bent to another key, store, method, lifetime
or type; it is checked in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from demeter_storage.domain.errors import ConfigurationError, InvalidSignature, ValidationError
from demeter_storage.domain.keys import validate_key
from demeter_storage.domain.objects import (
    MAX_PRESIGN_SECONDS,
    Grant,
    HttpMethod,
    PostPolicy,
    PresignedPost,
    PresignedUrl,
    put_url_headers,
    validate_content_type,
    validate_method,
)

DATE_PARAM = "X-Demeter-Date"
EXPIRES_PARAM = "X-Demeter-Expires"
SIGNATURE_PARAM = "X-Demeter-Signature"
CONTENT_TYPE_PARAM = "X-Demeter-Content-Type"
POLICY_FIELD = "policy"
POST_SIGNATURE_FIELD = "x-demeter-signature"
MIN_SECRET_BYTES = 16
ALLOWED_CLOCK_SKEW = timedelta(seconds=60)
"""How far in the future a signing time may lie (clocks of two processes differ)."""

_SCHEMES = frozenset({"http", "https", "memory"})


def quote_key(key: str) -> str:
    """Percent-encode a key for a URL path, keeping ``/`` (RFC 3986 unreserved kept)."""
    return quote(key, safe="/~")


class UrlSigner:
    """Signs and verifies URLs for one store.

    Args:
        secret: the HMAC key, at least 16 bytes. Anyone holding it can mint URLs.
        base_url: where the URLs point, e.g. ``http://127.0.0.1:8765/demeter-photos-original``.
        scope: what the URLs are scoped to (the store's bucket name).
        clock: returns the current time (timezone-aware); injectable for tests.
    """

    __slots__ = ("_base", "_clock", "_mac", "_prefix", "scope")

    def __init__(
        self,
        secret: bytes,
        base_url: str,
        scope: str,
        clock: Callable[[], datetime],
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the URL signing secret must be at least {MIN_SECRET_BYTES} bytes; "
                "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        parts = urlsplit(base_url)
        if parts.scheme not in _SCHEMES or not parts.netloc or parts.query or parts.fragment:
            raise ConfigurationError(
                f"invalid base URL {base_url!r}: use http(s)://host[:port][/path] "
                "without a query or fragment"
            )
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)  # keyed once, copied per URL
        self._base = parts._replace(path=parts.path.rstrip("/"))
        self._prefix = self._base.geturl() + "/"
        self.scope = scope
        self._clock = clock

    def __repr__(self) -> str:
        return f"UrlSigner(base_url={self._base.geturl()!r}, scope={self.scope!r})"

    @property
    def base_url(self) -> str:
        """The URL every signed URL of this store starts with."""
        return self._base.geturl()

    def _signature(
        self, method: str, key: str, date: int, expires_in: int, content_type: str | None
    ) -> str:
        message = f"demeter-v1\n{method}\n{self.scope}\n{key}\n{date}\n{expires_in}"
        if content_type is not None:
            message += f"\n{content_type}"
        # A content type may hold any text a client sent: never fail on encoding.
        return self._hexdigest(message.encode("utf-8", "replace"))

    def _hexdigest(self, message: bytes) -> str:
        mac = self._mac.copy()
        mac.update(message)
        return mac.hexdigest()

    def sign(
        self, key: str, expires_in: int, method: HttpMethod, content_type: str | None = None
    ) -> PresignedUrl:
        """Return a URL allowing ``method`` on ``key`` for ``expires_in`` seconds.

        A PUT URL pins ``content_type`` (required for PUT, refused for GET); the
        server must also refuse it for a key that holds an object.
        """
        if (method == "PUT") != (content_type is not None):
            raise ValueError("a PUT URL needs a content type, and only a PUT URL takes one")
        date = int(self._clock().timestamp())
        signature = self._signature(method, key, date, expires_in, content_type)
        pinned = (
            "" if content_type is None else f"&{CONTENT_TYPE_PARAM}={quote(content_type, safe='')}"
        )
        url = (
            f"{self._prefix}{quote_key(key)}?{DATE_PARAM}={date}"
            f"&{EXPIRES_PARAM}={expires_in}{pinned}&{SIGNATURE_PARAM}={signature}"
        )
        expires_at = datetime.fromtimestamp(date + expires_in, UTC)
        headers = {} if content_type is None else put_url_headers(content_type)
        return PresignedUrl(url=url, method=method, expires_at=expires_at, headers=headers)

    def _post_signature(self, policy: str) -> str:
        message = f"demeter-post-v1\n{self.scope}\n{policy}"
        # A policy is base64 (ASCII); anything else was tampered with and must not match.
        return self._hexdigest(message.encode("utf-8", "replace"))

    def sign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        """An upload form for ``key``, shaped like S3's presigned POST.

        The fields carry a base64 JSON policy (key, content type, 1 to
        ``max_size`` bytes, expiry) and its HMAC; :meth:`verify_post` checks them.
        """
        now = self._clock().replace(microsecond=0)
        expires_at = now + timedelta(seconds=expires_in)
        document = _policy_document(self.scope, key, content_type, max_size, expires_at)
        policy = base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()
        fields = {
            "key": key,
            "Content-Type": content_type,
            POLICY_FIELD: policy,
            POST_SIGNATURE_FIELD: self._post_signature(policy),
        }
        return PresignedPost(url=self.base_url, fields=fields, expires_at=expires_at)

    def verify_post(self, fields: Mapping[str, str]) -> PostPolicy:
        """Check an upload form's fields; return what its policy allows.

        Raises:
            InvalidSignature: a missing, tampered or expired policy, or a key or
                content type other than the policy's.
        """
        policy = fields.get(POLICY_FIELD, "")
        signature = fields.get(POST_SIGNATURE_FIELD, "")
        if not _same(self._post_signature(policy), signature):
            raise InvalidSignature(
                "the form's policy signature does not match (missing, tampered with, or "
                "signed for another store); request a new upload form"
            )
        try:
            allowed = _read_policy(json.loads(base64.b64decode(policy, validate=True)))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidSignature(f"malformed upload policy ({exc})") from exc
        if self._clock() > allowed.expires_at:
            raise InvalidSignature("the upload form has expired; request a new one")
        if fields.get("key") != allowed.key:
            raise InvalidSignature("the form's key is not the one its policy allows")
        if fields.get("Content-Type") != allowed.content_type:
            raise InvalidSignature("the form's Content-Type is not the one its policy allows")
        return allowed

    def verify(self, url: str, method: str = "GET") -> str:
        """Return the key ``url`` grants ``method`` on, if its signature holds now.

        Raises:
            InvalidSignature: the URL is not this store's, is malformed, tampered
                with, made for another method, dated in the future, or expired.
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (self._base.scheme, self._base.netloc) or (
            not parts.path.startswith(self._base.path + "/")
        ):
            raise InvalidSignature("the URL was not issued by this store; request a new one")
        return self.verify_path(parts.path[len(self._base.path) + 1 :], parts.query, method)

    def verify_path(self, quoted_key: str, query: str, method: str = "GET") -> str:
        """Like :meth:`verify`, for a request already routed to this store.

        Args:
            quoted_key: the URL path below the store's base path, still percent-encoded.
            query: the URL's raw query string.
            method: the HTTP method of the request.
        """
        return self.verify_grant(quoted_key, query, method).key

    def verify_grant(self, quoted_key: str, query: str, method: str = "GET") -> Grant:
        """Like :meth:`verify_path`, with the content type a PUT URL pins.

        Raises:
            InvalidSignature: as :meth:`verify`.
        """
        try:
            valid_method = validate_method(method)
            key = validate_key(unquote(quoted_key, errors="strict"))
            params = parse_qs(query, keep_blank_values=True, strict_parsing=True)
            date_text, expires_text, signature = (
                _single(params, name) for name in (DATE_PARAM, EXPIRES_PARAM, SIGNATURE_PARAM)
            )
            # A PUT URL pins its content type; without one the signature cannot match.
            pinned = params.get(CONTENT_TYPE_PARAM, []) if valid_method == "PUT" else []
            if len(pinned) > 1:
                raise ValueError(f"expected at most one {CONTENT_TYPE_PARAM} parameter")
            content_type = pinned[0] if pinned else None
            if len(date_text) > 20 or len(expires_text) > 20:
                raise ValueError("a time or lifetime is too long")
            date, expires_in = int(date_text), int(expires_text)
        except (ValidationError, ValueError, UnicodeError) as exc:
            raise InvalidSignature(f"malformed signed URL ({exc}); request a new one") from exc
        expected = self._signature(valid_method, key, date, expires_in, content_type)
        if not _same(expected, signature):
            raise InvalidSignature(
                "the URL's signature does not match (tampered, for another key or "
                "method, or signed with another secret); request a new one"
            )
        now = self._clock().timestamp()
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise InvalidSignature("the URL's lifetime is outside 1 s to 7 days")
        if date > now + ALLOWED_CLOCK_SKEW.total_seconds():
            raise InvalidSignature("the URL is dated in the future; check the server's clock")
        if now > date + expires_in:
            raise InvalidSignature("the URL has expired; request a new one")
        return Grant(key=key, content_type=content_type)


def _policy_document(
    scope: str, key: str, content_type: str, max_size: int, expires_at: datetime
) -> dict[str, Any]:
    return {
        "expiration": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [
            {"bucket": scope},
            {"key": key},
            {"Content-Type": content_type},
            ["content-length-range", 1, max_size],
        ],
    }


def _read_policy(document: object) -> PostPolicy:
    """The policy of a decoded document of :func:`_policy_document`'s shape."""
    if not isinstance(document, dict):
        raise ValueError("the policy is not a JSON object")
    expiration = datetime.strptime(str(document["expiration"]), "%Y-%m-%dT%H:%M:%SZ")
    conditions = document["conditions"]
    if not isinstance(conditions, list) or len(conditions) != 4:
        raise ValueError("the policy's conditions are not the four this store writes")
    _bucket, key, content_type, (name, low, high) = conditions
    if name != "content-length-range" or not all(isinstance(n, int) for n in (low, high)):
        raise ValueError("the policy has no content-length-range")
    return PostPolicy(
        key=validate_key(key["key"]),
        content_type=validate_content_type(content_type["Content-Type"]),
        min_size=low,
        max_size=high,
        expires_at=expiration.replace(tzinfo=UTC),
    )


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison of a hex signature with what a client sent (any text)."""
    # compare_digest refuses non-ASCII str: compare the bytes.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _single(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    if len(values) != 1:
        raise ValueError(f"expected exactly one {name} parameter")
    return values[0]
