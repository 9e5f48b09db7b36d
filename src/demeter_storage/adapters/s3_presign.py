"""Presigned URLs and form POSTs for one S3 bucket.

GET and PUT URLs come from the fast SigV4 query signer
(:class:`~demeter_storage.adapters.sigv4.QuerySigner`, byte-identical to
botocore's), built once from the client's own credentials; botocore signs
when the client has none the signer can use. Form POSTs (direct uploads) are
botocore's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from demeter_storage.adapters.s3_config import MAX_PRESIGN_SECONDS, S3Config
from demeter_storage.adapters.s3_errors import translate
from demeter_storage.adapters.sigv4 import QuerySigner, url_shape
from demeter_storage.domain.objects import (
    HttpMethod,
    PresignedPost,
    PresignedUrl,
    put_url_headers,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


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
        """A PUT URL for ``key`` that pins ``content_type`` and only creates the object."""
        now = self._clock()
        headers = put_url_headers(content_type)
        try:
            url = self.client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ContentType": content_type,
                    "IfNoneMatch": headers["If-None-Match"],
                },
                ExpiresIn=expires_in,
            )
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

    def _presign_with_botocore(self, method: str, key: str, expires_in: int = 3600) -> str:
        client_method = "get_object" if method == "GET" else "put_object"
        return self.client.generate_presigned_url(
            client_method, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def _build_signer(self) -> QuerySigner | None:
        """The fast signer, or None to let botocore sign (no credentials, an odd client)."""
        # botocore keeps a client's credentials on its request signer and has
        # no public accessor; without them botocore signs (or says why it cannot).
        credentials = getattr(getattr(self.client, "_request_signer", None), "_credentials", None)
        if credentials is None or not hasattr(credentials, "get_frozen_credentials"):
            return None
        try:
            shape = url_shape(self._presign_with_botocore)
        except Exception:
            return None
        self._signer = QuerySigner(shape, credentials.get_frozen_credentials)
        return self._signer
