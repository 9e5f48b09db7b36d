"""Presigned URLs and form POSTs for one S3 bucket.

GET and PUT URLs come from the fast SigV4 query signer
(:class:`~demeter_storage.adapters.s3.sigv4.QuerySigner`, byte-identical to
botocore's), built once from the client's own credentials; botocore signs
when the client has none the signer can use. Form POSTs (direct uploads) are
botocore's.

A PUT URL is always SigV4 and signs ``content-type;host;if-none-match``, so
the server refuses it without the pinned ``Content-Type`` and
``If-None-Match: *``, whatever signature version the client was built with:
botocore presigns with SigV2 by default (a client without a
``signature_version``, in ``us-east-1``), which signs neither header and
which AWS refuses for new buckets. GET URLs keep the client's choice.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from demeter_storage.adapters.s3.config import MAX_PRESIGN_SECONDS, S3Config
from demeter_storage.adapters.s3.errors import translate
from demeter_storage.adapters.s3.sigv4 import QuerySigner, url_shape
from demeter_storage.domain.objects import (
    HttpMethod,
    PresignedPost,
    PresignedUrl,
    put_url_headers,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_FORCE_SIGV4: Final = contextvars.ContextVar("demeter_force_sigv4_presign", default=False)
_CHOOSE_SIGNER_ID: Final = "demeter-sigv4-presigned-puts"


def _sigv4_when_asked(**_: Any) -> str | None:
    """Answer botocore's ``choose-signer``: SigV4 for the presigns this module forces."""
    # botocore appends "-query" itself for a presigned URL.
    return "s3v4" if _FORCE_SIGV4.get() else None


class S3Presigner:
    """Signs URLs and POST forms for keys of ``bucket`` with ``client``'s credentials."""

    def __init__(
        self, bucket: str, client: S3Client, config: S3Config, clock: Callable[[], datetime]
    ) -> None:
        self.bucket = bucket
        self.client = client
        self.config = config
        self._clock = clock
        self._signer: QuerySigner | None = None
        self._put_signer: QuerySigner | None = None
        # First, so that botocore's own default (SigV2 presigns) never wins when asked.
        # The stubs type every handler as returning None; choose-signer's return value is its point.
        client.meta.events.register_first(
            "choose-signer.s3",
            cast("Callable[..., None]", _sigv4_when_asked),
            unique_id=_CHOOSE_SIGNER_ID,
        )

    def url(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        """A URL for ``method`` on ``key`` for ``expires_in`` seconds (or a stable window)."""
        now = self._clock()
        signed_at, lifetime = now, expires_in
        window = self.config.presign_stable_seconds
        if window is not None and expires_in + window <= MAX_PRESIGN_SECONDS:
            # Sign at the window's start and live a window longer: every URL of
            # the window is the same, and none ends before the asked expiry.
            start = int(now.timestamp()) // window * window
            signed_at = datetime.fromtimestamp(start, UTC)
            lifetime = expires_in + window
        signer = self._signer or self._build_signer()
        try:
            if signer is not None:
                url = signer.sign(method, key, signed_at, lifetime)
            else:
                url = self._presign_with_botocore(method, key, lifetime)
        except Exception as exc:
            raise translate(exc, operation="presign", bucket=self.bucket, key=key) from exc
        return PresignedUrl(
            url=url, method=method, expires_at=signed_at + timedelta(seconds=lifetime)
        )

    def put_url(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        """A SigV4 PUT URL for ``key`` that pins ``content_type`` and only creates the object.

        The URL signs ``Content-Type`` and ``If-None-Match: *`` (the
        :attr:`~PresignedUrl.headers` a request must carry): without them, or
        with other values, the server refuses the signature (403); with them,
        it refuses to replace an object (412).
        """
        now = self._clock()
        headers = put_url_headers(content_type)
        signer = self._put_signer or self._build_put_signer()
        try:
            if signer is not None:
                url = signer.sign_with_headers("PUT", key, now, expires_in, headers)
            else:
                url = self._put_with_botocore(key, expires_in, headers)
        except Exception as exc:
            raise translate(exc, operation="presign", bucket=self.bucket, key=key) from exc
        return PresignedUrl(
            url=url, method="PUT", expires_at=now + timedelta(seconds=expires_in), headers=headers
        )

    def post(self, key: str, content_type: str, max_size: int, expires_in: int) -> PresignedPost:
        """A form POST for ``key``: this content type and 1 to ``max_size`` bytes only."""
        now = self._clock()
        try:
            form = self.client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields={"Content-Type": content_type},
                Conditions=[
                    {"Content-Type": content_type},
                    ["content-length-range", 1, max_size],
                ],
                ExpiresIn=expires_in,
            )
        except Exception as exc:
            raise translate(exc, operation="presign_post", bucket=self.bucket, key=key) from exc
        return PresignedPost(
            url=form["url"], fields=form["fields"], expires_at=now + timedelta(seconds=expires_in)
        )

    def _presign_with_botocore(
        self, method: str, key: str, expires_in: int = 3600, *, sigv4: bool = False
    ) -> str:
        client_method = "get_object" if method == "GET" else "put_object"
        forced = _FORCE_SIGV4.set(sigv4)
        try:
            return self.client.generate_presigned_url(
                client_method, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
        finally:
            _FORCE_SIGV4.reset(forced)

    def _put_with_botocore(self, key: str, expires_in: int, headers: Mapping[str, str]) -> str:
        forced = _FORCE_SIGV4.set(True)
        try:
            return self.client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ContentType": headers["Content-Type"],
                    "IfNoneMatch": headers["If-None-Match"],
                },
                ExpiresIn=expires_in,
            )
        finally:
            _FORCE_SIGV4.reset(forced)

    def _credentials(self) -> Any:
        # botocore keeps a client's credentials on its request signer and has
        # no public accessor; without them botocore signs (or says why it cannot).
        credentials = getattr(getattr(self.client, "_request_signer", None), "_credentials", None)
        if credentials is None or not hasattr(credentials, "get_frozen_credentials"):
            return None
        return credentials

    def _build_signer(self) -> QuerySigner | None:
        """The fast signer, or None to let botocore sign (no credentials, an odd client)."""
        credentials = self._credentials()
        if credentials is None:
            return None
        try:
            # A SigV2 client's URL has no SigV4 credential to learn the shape from.
            shape = url_shape(self._presign_with_botocore)
        except Exception:
            return None
        self._signer = QuerySigner(shape, credentials.get_frozen_credentials)
        return self._signer

    def _build_put_signer(self) -> QuerySigner | None:
        """The fast signer of PUT URLs: SigV4 even if the client presigns GETs otherwise."""
        signer = self._signer or self._build_signer()
        if signer is None:
            credentials = self._credentials()
            if credentials is None:
                return None
            try:
                shape = url_shape(functools.partial(self._presign_with_botocore, sigv4=True))
            except Exception:
                return None
            signer = QuerySigner(shape, credentials.get_frozen_credentials)
        self._put_signer = signer
        return signer
