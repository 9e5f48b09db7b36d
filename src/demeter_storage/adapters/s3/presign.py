"""Presigned URLs and form POSTs for one S3 bucket.

GET and PUT URLs are always SigV4, whatever signature version the client was
built with: botocore presigns with SigV2 by default (a client without a
``signature_version``, in ``us-east-1``), which AWS refuses for new buckets
and which signs no header. They come from the fast query signer
(:class:`~demeter_storage.adapters.s3.sigv4.QuerySigner`, byte-identical to
botocore's SigV4), built once with the store from the client's own
credentials; when the client has none it can use, botocore signs each URL,
still with SigV4. Form POSTs (direct uploads) are botocore's.

A PUT URL signs ``content-type;host;if-none-match``, so the server refuses it
without the pinned ``Content-Type`` and ``If-None-Match: *``.
"""

from __future__ import annotations

import contextvars
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

_SIGNING: Final = contextvars.ContextVar("demeter_sigv4_presign", default=False)
_CHOOSE_SIGNER_ID: Final = "demeter-sigv4-presigned-urls"


def _sigv4_for_our_presigns(**_: Any) -> str | None:
    """Answer botocore's ``choose-signer``: SigV4 for the URLs this module presigns."""
    # botocore appends "-query" itself for a presigned URL.
    return "s3v4" if _SIGNING.get() else None


class S3Presigner:
    """Signs URLs and POST forms for keys of ``bucket`` with ``client``'s credentials."""

    def __init__(
        self, bucket: str, client: S3Client, config: S3Config, clock: Callable[[], datetime]
    ) -> None:
        self.bucket = bucket
        self.client = client
        self.config = config
        self._clock = clock
        # First, so that botocore's own default (SigV2 presigns) never wins when asked.
        # The stubs type every handler as returning None; choose-signer's return value is its point.
        client.meta.events.register_first(
            "choose-signer.s3",
            cast("Callable[..., None]", _sigv4_for_our_presigns),
            unique_id=_CHOOSE_SIGNER_ID,
        )
        self._signer = self._fast_signer()

    def _fast_signer(self) -> QuerySigner | None:
        """The fast signer, or None to let botocore sign (no credentials, an odd client)."""
        # botocore keeps a client's credentials on its request signer and has
        # no public accessor; without them botocore signs (or says why it cannot).
        signer = getattr(self.client, "_request_signer", None)
        credentials = getattr(signer, "_credentials", None)
        if credentials is None or not hasattr(credentials, "get_frozen_credentials"):
            return None
        try:
            shape = url_shape(self._with_botocore)
        except Exception:  # a client whose URLs show no shape to learn: botocore signs
            return None
        return QuerySigner(shape, credentials.get_frozen_credentials)

    def url(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        """A URL for ``method`` on ``key`` for ``expires_in`` seconds (or a stable window)."""
        now = self._clock().replace(microsecond=0)  # X-Amz-Date has whole seconds
        signed_at, lifetime = now, expires_in
        window = self.config.presign_stable_seconds
        if window is not None and expires_in + window <= MAX_PRESIGN_SECONDS:
            # Sign at the window's start and live a window longer: every URL of
            # the window is the same, and none ends before the asked expiry.
            start = int(now.timestamp()) // window * window
            signed_at = datetime.fromtimestamp(start, UTC)
            lifetime = expires_in + window
        try:
            if self._signer is not None:
                url = self._signer.sign(method, key, signed_at, lifetime)
            else:
                url = self._with_botocore(method, key, lifetime)
        except Exception as exc:
            raise translate(exc, operation="presign", bucket=self.bucket, key=key) from exc
        return PresignedUrl(
            url=url, method=method, expires_at=signed_at + timedelta(seconds=lifetime)
        )

    def put_url(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        """A PUT URL for ``key`` that pins ``content_type`` and only creates the object.

        The URL signs ``Content-Type`` and ``If-None-Match: *`` (the
        :attr:`~PresignedUrl.headers` a request must carry): without them, or
        with other values, the server refuses the signature (403); with them,
        it refuses to replace an object (412).
        """
        now = self._clock().replace(microsecond=0)  # X-Amz-Date has whole seconds
        headers = put_url_headers(content_type)
        try:
            if self._signer is not None:
                url = self._signer.sign_with_headers("PUT", key, now, expires_in, headers)
            else:
                url = self._with_botocore("PUT", key, expires_in, headers)
        except Exception as exc:
            raise translate(exc, operation="presign", bucket=self.bucket, key=key) from exc
        return PresignedUrl(
            url=url, method="PUT", expires_at=now + timedelta(seconds=expires_in), headers=headers
        )

    def post(self, key: str, content_type: str, max_size: int, expires_in: int) -> PresignedPost:
        """A form POST for ``key``: this content type and 1 to ``max_size`` bytes only."""
        now = self._clock().replace(microsecond=0)  # X-Amz-Date has whole seconds
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

    def _with_botocore(
        self,
        method: str,
        key: str,
        expires_in: int = 3600,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Botocore's SigV4 URL (for a PUT, pinning ``headers`` as :meth:`put_url` does)."""
        params = {"Bucket": self.bucket, "Key": key}
        if headers is not None:
            params |= {
                "ContentType": headers["Content-Type"],
                "IfNoneMatch": headers["If-None-Match"],
            }
        signing = _SIGNING.set(True)
        try:
            return self.client.generate_presigned_url(
                "get_object" if method == "GET" else "put_object",
                Params=params,
                ExpiresIn=expires_in,
            )
        finally:
            _SIGNING.reset(signing)
