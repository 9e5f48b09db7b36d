"""boto3 calls that read an object in parts (run in the S3 store's threads).

See :mod:`~demeter_storage.adapters.s3.ranged_reads` for how the parts come together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from botocore.exceptions import ClientError

from demeter_storage.adapters.s3.errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@attrs.frozen
class FirstPart:
    """The answer to the first part's GET, its body still open after ``head``.

    Attributes:
        body: the rest of this answer's bytes (close it once read).
        head: its first bytes, already read.
        received: bytes in this answer (the part, or the whole object).
        size: the whole object's size.
        etag: the object's ETag, which the other parts' requests must match.
    """

    body: Any
    head: bytes
    received: int
    size: int
    etag: str


def open_first_part(
    client: S3Client, bucket: str, key: str, *, part_size: int, amount: int
) -> FirstPart:
    """GET the object's first ``part_size`` bytes and read ``amount`` of them."""
    try:
        response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{part_size - 1}")
    except ClientError as exc:
        if error_code(exc) != "InvalidRange":
            raise
        response = client.get_object(Bucket=bucket, Key=key)  # empty: no range fits in it
    body = response["Body"]
    try:
        received = int(response["ContentLength"])
        content_range = response.get("ContentRange")
        # Without a Content-Range the server sent the whole object (HTTP allows it).
        size = int(content_range.rsplit("/", 1)[1]) if content_range else received
        etag = response.get("ETag")
        if received < size and not etag:
            # Nothing to make the other parts' requests conditional on: one GET of it all.
            body.close()
            return open_first_part(client, bucket, key, part_size=size, amount=amount)
        return FirstPart(body, body.read(amount), received, size, etag or "")
    except BaseException:
        body.close()
        raise


def read_part(
    client: S3Client, bucket: str, key: str, *, etag: str, byte_range: tuple[int, int]
) -> bytes:
    """The bytes ``[begin, stop)`` of the object, if its ETag is still ``etag``."""
    begin, stop = byte_range
    body = client.get_object(
        Bucket=bucket, Key=key, Range=f"bytes={begin}-{stop - 1}", IfMatch=etag
    )["Body"]
    try:
        data: bytes = body.read()
    finally:
        body.close()
    return data


def is_replaced(error: BaseException | None) -> bool:
    """Whether ``error`` says the object no longer has the ETag a part asked for."""
    return isinstance(error, ClientError) and error_code(error) in ("PreconditionFailed", "412")
