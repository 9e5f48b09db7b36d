"""The S3 bucket itself: created when missing, its lifecycle configuration, its listing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from demeter_storage.adapters.s3.errors import error_code
from demeter_storage.adapters.s3.lifecycle import managed_policy, merged_rules
from demeter_storage.domain.errors import ConfigurationError, StorageError
from demeter_storage.domain.keys import is_addressable
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.objects import ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Call = Callable[..., Awaitable[Any]]
"""The store's way to run a boto3 call: ``call(operation, fn, **kwargs)``, errors translated."""


class S3Bucket:
    """Bucket-level calls for one bucket, run through the store's ``call``."""

    def __init__(
        self,
        name: str,
        client: S3Client,
        call: Call,
        *,
        endpoint_url: str | None,
        sort_listings_here: bool,
    ) -> None:
        self.name = name
        self.client = client
        self._call = call
        self._endpoint_url = endpoint_url
        self._sort_listings_here = sort_listings_here

    async def ensure(self) -> bool:
        """Create the bucket if it does not exist; return whether it was created.

        Raises:
            ConfigurationError: the credentials may not read or create the bucket.
        """
        try:
            await self._call("HeadBucket", self.client.head_bucket, Bucket=self.name)
            return False
        except ConfigurationError as exc:
            if not _is_missing_bucket(exc):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.name}
        region = self.client.meta.region_name
        if region and region != "us-east-1" and self._endpoint_url is None:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._call("CreateBucket", self.client.create_bucket, **kwargs)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and error_code(cause) in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                return False
            if isinstance(exc, ConfigurationError):
                raise ConfigurationError(
                    f"bucket {self.name!r} does not exist and these credentials may not create "
                    f"it ({exc}); create it once with an admin identity, or grant s3:CreateBucket"
                ) from exc
            raise
        return True

    async def lifecycle(self) -> LifecyclePolicy:
        """The policy the bucket's managed lifecycle rules make."""
        return managed_policy(await self._lifecycle_rules())

    async def apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        """Replace the managed rules with ``policy``'s, keeping everyone else's."""
        existing = await self._lifecycle_rules()
        wanted = LifecyclePolicy(rules=sorted(policy.rules, key=lambda rule: rule.id))
        if managed_policy(existing) == wanted:
            return  # applying twice changes nothing, not even the bucket's configuration
        rules = merged_rules(existing, wanted)
        if rules:
            await self._call(
                "PutBucketLifecycleConfiguration",
                self.client.put_bucket_lifecycle_configuration,
                Bucket=self.name,
                LifecycleConfiguration={"Rules": rules},
            )
        else:
            await self._call(
                "DeleteBucketLifecycle", self.client.delete_bucket_lifecycle, Bucket=self.name
            )

    async def objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """The objects under ``prefix`` in UTF-8 order of their keys (sorted here if need be)."""
        if not self._sort_listings_here:
            async for info in self._pages(prefix):
                yield info
            return
        collected = [info async for info in self._pages(prefix)]
        collected.sort(key=lambda info: info.key)
        for info in collected:
            yield info

    async def _pages(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("ListObjectsV2", self.client.list_objects_v2, **kwargs)
            for item in page.get("Contents", []):
                key = item["Key"]
                if not is_addressable(key):
                    continue  # written by another tool; no method of ours can address it
                yield ObjectInfo(
                    key=key,
                    size=int(item["Size"]),
                    content_type=None,
                    etag=item.get("ETag"),
                    last_modified=item["LastModified"],
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _lifecycle_rules(self) -> list[dict[str, Any]]:
        try:
            response = await self._call(
                "GetBucketLifecycleConfiguration",
                self.client.get_bucket_lifecycle_configuration,
                Bucket=self.name,
            )
        except StorageError as exc:
            cause = exc.__cause__
            missing = "NoSuchLifecycleConfiguration"
            if isinstance(cause, ClientError) and error_code(cause) == missing:
                return []
            raise
        return [dict(rule) for rule in response.get("Rules", [])]


def _is_missing_bucket(exc: ConfigurationError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ClientError) and error_code(cause) in (
        "NoSuchBucket",
        "404",
        "NotFound",
    )
