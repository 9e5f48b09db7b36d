"""A fast SigV4 query signer for presigned S3 URLs, byte-identical to botocore's.

botocore builds each presigned URL through its whole request pipeline (events,
endpoint rules, a fresh signing-key derivation). A presigned GET or PUT of one
bucket differs from the next only in the key, the time, the expiry and the
headers it pins, so :class:`QuerySigner` asks botocore once for the URL's shape
(scheme, host, path prefix: whatever the endpoint and addressing style make of
it), then signs each URL itself with the standard library, keeping the day's
signing key as an HMAC keyed once and copied for each URL. A URL may sign
headers besides ``host`` (a PUT's ``Content-Type`` and ``If-None-Match``): the
request must then carry them with those values, or the server refuses its
signature. The tests check it against botocore's own URL, byte for byte, over
awkward keys, expiries, regions, endpoints, session tokens and signed headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, NamedTuple, Protocol
from urllib.parse import quote, urlsplit

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_SHAPE_PROBE: Final = "demeter-shape-probe"
_DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}
_UNRESERVED_PATH: Final = re.compile(r"[A-Za-z0-9/_.~-]*")
"""Keys that ``quote(key, safe="/~")`` leaves as they are."""
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class FrozenCredentials(Protocol):
    """What botocore's ``Credentials.get_frozen_credentials()`` returns."""

    @property
    def access_key(self) -> str: ...  # noqa: D102
    @property
    def secret_key(self) -> str: ...  # noqa: D102
    @property
    def token(self) -> str | None: ...  # noqa: D102


class UrlShape(NamedTuple):
    """Everything of a presigned URL that does not depend on the key or the time.

    Attributes:
        base: the URL up to the key (``https://bucket.s3.amazonaws.com/``).
        path_prefix: the path part of ``base`` (``/`` or ``/bucket/``).
        host: the ``host`` header botocore signs (default ports dropped).
        region: the region in the credential scope.
    """

    base: str
    path_prefix: str
    host: str
    region: str


class _PresignsWithBotocore(Protocol):
    def __call__(self, method: str, key: str) -> str: ...


def url_shape(presign_with_botocore: _PresignsWithBotocore) -> UrlShape:
    """Learn the URL's shape from one URL botocore presigned for a probe key."""
    url = presign_with_botocore("GET", _SHAPE_PROBE)
    before_query, _, query = url.partition("?")
    if not before_query.endswith("/" + _SHAPE_PROBE):
        raise ValueError(f"unexpected presigned URL shape: {before_query}")
    base = before_query[: -len(_SHAPE_PROBE)]
    parts = urlsplit(base)
    host = parts.netloc
    default_port = _DEFAULT_PORTS.get(parts.scheme)
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    credential = next(
        value
        for name, _, value in (p.partition("=") for p in query.split("&"))
        if name == "X-Amz-Credential"
    )
    # AKID%2F20260101%2Fregion%2Fs3%2Faws4_request: the region is fourth from the end.
    region = credential.split("%2F")[-3]
    return UrlShape(base=base, path_prefix=parts.path, host=host, region=region)


def _quote(value: str) -> str:
    return quote(value, safe="-_.~")


class _Context(NamedTuple):
    """What every URL signed in one second with one set of credentials shares."""

    credentials: FrozenCredentials
    second: int
    signing_mac: hmac.HMAC
    front: str
    canonical_tail: str
    url_tail: str
    string_to_sign_head: str
    token: str | None


class QuerySigner:
    """Presigns GET and PUT URLs of one bucket with SigV4 query authentication.

    Args:
        shape: the URL's shape (see :func:`url_shape`).
        credentials: returns the current credentials (botocore refreshes
            temporary ones inside ``get_frozen_credentials``).
    """

    def __init__(self, shape: UrlShape, credentials: Callable[[], FrozenCredentials]) -> None:
        self.shape = shape
        self._credentials = credentials
        self._signing_macs: dict[tuple[str, str], hmac.HMAC] = {}
        self._headers_part = f"host:{shape.host}\n\nhost\n{UNSIGNED_PAYLOAD}"
        self._context: _Context | None = None

    def _signing_mac(self, secret_key: str, day: str) -> hmac.HMAC:
        cached = self._signing_macs.get((secret_key, day))
        if cached is None:
            key = f"AWS4{secret_key}".encode()
            for part in (day, self.shape.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            # Only today's key (and one for a rotated secret) are worth keeping.
            if len(self._signing_macs) > 4:
                self._signing_macs.clear()
            self._signing_macs[(secret_key, day)] = cached = hmac.new(key, digestmod=hashlib.sha256)
        return cached

    def _new_context(self, credentials: FrozenCredentials, second: int) -> _Context:
        amz_date = datetime.fromtimestamp(second, UTC).strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        scope = f"{day}/{self.shape.region}/s3/aws4_request"
        credential = _quote(f"{credentials.access_key}/{scope}")
        front = f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date={amz_date}"
        token = None if credentials.token is None else _quote(credentials.token)
        canonical_tail, url_tail = _tails("host", token)
        return _Context(
            credentials=credentials,
            second=second,
            signing_mac=self._signing_mac(credentials.secret_key, day),
            front=front,
            canonical_tail=canonical_tail,
            url_tail=url_tail,
            string_to_sign_head=f"{ALGORITHM}\n{amz_date}\n{scope}\n",
            token=token,
        )

    def _current_context(self, signed_at: datetime) -> _Context:
        credentials = self._credentials()
        second = int(signed_at.timestamp())
        context = self._context
        if context is None or context.second != second or context.credentials != credentials:
            context = self._context = self._new_context(credentials, second)
        return context

    def sign(self, method: str, key: str, signed_at: datetime, expires_in: int) -> str:
        """The presigned URL for ``method`` on ``key``, signed at ``signed_at``.

        ``signed_at`` is timezone-aware; ``expires_in`` is in seconds (1 to 604800).
        """
        # _current_context inlined: this is the hot path of every GET URL.
        credentials = self._credentials()
        second = int(signed_at.timestamp())
        context = self._context
        if context is None or context.second != second or context.credentials != credentials:
            context = self._context = self._new_context(credentials, second)
        path = key if _UNRESERVED_PATH.fullmatch(key) else quote(key, safe="/~")
        front = f"{context.front}&X-Amz-Expires={expires_in}"
        canonical_request = (
            f"{method}\n{self.shape.path_prefix}{path}\n{front}{context.canonical_tail}\n"
            f"{self._headers_part}"
        )
        signature = _signature(context, canonical_request)
        return f"{self.shape.base}{path}?{front}{context.url_tail}&X-Amz-Signature={signature}"

    def sign_with_headers(
        self,
        method: str,
        key: str,
        signed_at: datetime,
        expires_in: int,
        headers: Mapping[str, str],
    ) -> str:
        """Like :meth:`sign`, the URL also signing ``headers`` (besides ``host``).

        The request must then carry each of ``headers`` with its value (SigV4
        compares them with surrounding and repeated spaces trimmed), or the
        server refuses the signature: a PUT URL pins its ``Content-Type`` and
        ``If-None-Match: *`` this way.

        Raises:
            ValueError: a header name that is not an HTTP token, or ``host``.
        """
        context = self._current_context(signed_at)
        canonical: dict[str, str] = {"host": self.shape.host}
        for name, value in headers.items():
            lowered = name.lower()
            if lowered == "host" or not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"cannot sign the header {name!r}")
            canonical[lowered] = " ".join(value.split())
        names = sorted(canonical)
        signed_names = ";".join(names)
        canonical_tail, url_tail = _tails(_quote(signed_names), context.token)
        canonical_headers = "".join(f"{name}:{canonical[name]}\n" for name in names)
        path = key if _UNRESERVED_PATH.fullmatch(key) else quote(key, safe="/~")
        front = f"{context.front}&X-Amz-Expires={expires_in}"
        canonical_request = (
            f"{method}\n{self.shape.path_prefix}{path}\n{front}{canonical_tail}\n"
            f"{canonical_headers}\n{signed_names}\n{UNSIGNED_PAYLOAD}"
        )
        signature = _signature(context, canonical_request)
        return f"{self.shape.base}{path}?{front}{url_tail}&X-Amz-Signature={signature}"


def _signature(context: _Context, canonical_request: str) -> str:
    """The hex signature of a canonical request, with the day's signing key."""
    hashed = hashlib.sha256(canonical_request.encode()).hexdigest()
    mac = context.signing_mac.copy()
    mac.update(f"{context.string_to_sign_head}{hashed}".encode())
    return mac.hexdigest()


def _tails(signed_headers: str, token: str | None) -> tuple[str, str]:
    """The query after ``X-Amz-Expires``: as signed (sorted), and as botocore writes it."""
    # The canonical query is sorted: the token comes before SignedHeaders;
    # in the URL botocore puts it after.
    if token is None:
        tail = f"&X-Amz-SignedHeaders={signed_headers}"
        return tail, tail
    return (
        f"&X-Amz-Security-Token={token}&X-Amz-SignedHeaders={signed_headers}",
        f"&X-Amz-SignedHeaders={signed_headers}&X-Amz-Security-Token={token}",
    )
