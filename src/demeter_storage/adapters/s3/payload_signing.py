"""The store's own PUTs: signed with the SHA-256 it computed, and small ones sent at once.

Over plain HTTP (SeaweedFS, MinIO and Ceph inside a cluster, every loopback
test) SigV4 signs the body: botocore hashes each ``PutObject`` body with
SHA-256 for the ``x-amz-content-sha256`` header. The store hashes the same
bytes for the SHA-256 it records in the object's metadata, so every small
upload was hashed twice (about 120 µs per 256 KiB here, on the caller's
critical path). While :func:`known_payload` is active in a thread, that
thread's ``PutObject`` of exactly that body (the same file object, at its
start) is signed with the known digest. botocore turns a ``bytes`` body into
a new ``BytesIO`` of its own, so the store hands it the ``BytesIO``.

Only the body's hash is reused: botocore still builds, checksums (CRC32) and
signs the request itself, and anything else (another body, a presigned URL,
HTTPS, where botocore sends ``UNSIGNED-PAYLOAD`` with a checksum) goes the
usual way.

A known body of up to 2 MiB is also sent straight after its headers.
botocore asks ``Expect: 100-continue`` of every file-like body, whatever its
size, and waits for the server's go-ahead before sending it: a round trip and
about 60 µs of CPU per 256 KiB ``PutObject`` here (4%), to spare a refused
request the upload of a body no bigger than that. The AWS SDK for Go draws
the same line at 2 MB.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.utils import determine_content_length

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SEND_AT_ONCE_MAX_BYTES: Final = 2 * 1024 * 1024
"""Known bodies up to this size go without ``Expect: 100-continue``."""
KNOWN_PAYLOAD_SIGNER: Final = "demeter-s3v4-known-payload"
"""The name botocore's signer registry knows :class:`KnownPayloadSigV4Auth` under."""
_HANDLER_ID: Final = "demeter-storage-known-payload"
_AT_ONCE_HANDLER_ID: Final = "demeter-storage-known-payload-at-once"

_known = threading.local()


class KnownPayloadSigV4Auth(botocore.auth.S3SigV4Auth):
    """botocore's S3 SigV4 signer, taking the body's SHA-256 from :func:`known_payload`."""

    def payload(self, request: AWSRequest) -> str:
        """The hex SHA-256 of the body: the known one when this body is the known body."""
        known: tuple[BinaryIO, str] | None = getattr(_known, "payload", None)
        body: object = request.body  # the stubs say str; for PutObject it is the file given
        if (
            known is None
            or known[0] is not body
            or known[0].tell() != 0
            or (request.url or "").startswith("https")
        ):
            # Over HTTPS botocore sends UNSIGNED-PAYLOAD with a checksum: no hash to save.
            return str(super().payload(request))
        return known[1]


botocore.auth.AUTH_TYPE_MAPS.setdefault(KNOWN_PAYLOAD_SIGNER, KnownPayloadSigV4Auth)


def _choose_signer(signature_version: str, **_: Any) -> str | None:
    """Botocore's choose-signer hook: this signer for SigV4 while a payload is known."""
    if signature_version == "s3v4" and getattr(_known, "payload", None) is not None:
        return KNOWN_PAYLOAD_SIGNER
    return None


def reuse_payload_hashes(client: S3Client) -> None:
    """Let ``client``'s ``PutObject`` calls take their body's hash from :func:`known_payload`."""
    # The stubs type every handler as returning None; choose-signer's return value is its point.
    handler = cast("Callable[..., None]", _choose_signer)
    client.meta.events.register("choose-signer.s3.PutObject", handler, unique_id=_HANDLER_ID)


def _send_small_known_bodies_at_once(params: dict[str, Any], **_: Any) -> None:
    """The before-call hook: no ``Expect: 100-continue`` for a small known body."""
    known: tuple[BinaryIO, str] | None = getattr(_known, "payload", None)
    if known is None or params.get("body") is not known[0]:
        return
    size = determine_content_length(known[0])
    if size is not None and size <= SEND_AT_ONCE_MAX_BYTES:
        params["headers"].pop("Expect", None)


def send_small_payloads_at_once(client: S3Client) -> None:
    """Let ``client`` send a small body from :func:`known_payload` without waiting to be asked."""
    # Registered where botocore's own hook that adds the header is (for all of S3),
    # so that it runs after it: the emitter calls a more specific event's hooks first.
    client.meta.events.register(
        "before-call.s3",
        _send_small_known_bodies_at_once,
        unique_id=_AT_ONCE_HANDLER_ID,
    )


@contextmanager
def known_payload(body: BinaryIO, sha256_hex: str) -> Iterator[None]:
    """In this thread, sign a ``PutObject`` of ``body`` (this file, whole) with ``sha256_hex``."""
    _known.payload = (body, sha256_hex)
    try:
        yield
    finally:
        _known.payload = None
