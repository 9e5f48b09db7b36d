"""Settings of the S3 adapter and the boto3 client built from them.

Credentials come from boto3's standard chain by default (environment, shared
config and profiles, container and instance roles), which refreshes temporary
credentials by itself. Explicit keys, a profile, or a callable that fetches
fresh credentials (rotation) can be given instead. Secrets are held as
:class:`~demeter_storage.domain.secrets.Secret` so they never show in a repr.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from demeter_storage.adapters.s3.timestamps import parse_timestamps_directly
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.secrets import Secret
from demeter_storage.domain.urls import mask_url, redact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB: Final = 1024 * 1024
MIN_PART_SIZE: Final = 5 * MiB
"""S3 refuses parts smaller than this (except the last one)."""
MAX_PART_SIZE: Final = 5 * 1024 * MiB
MAX_PARTS: Final = 10_000
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600
"""SigV4's limit on a presigned URL's lifetime."""

AddressingStyle = Literal["auto", "path", "virtual"]
ListingOrder = Literal["auto", "server", "sorted"]


@attrs.frozen
class TemporaryCredentials:
    """Credentials returned by a rotation callback.

    Attributes:
        access_key_id: the access key id.
        secret_access_key: the secret key.
        session_token: the session token of temporary credentials, if any.
        expires_at: when they stop working (timezone-aware); boto3 calls the
            callback again shortly before.
    """

    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None
    expires_at: datetime


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ConfigurationError(f"{attribute.name} must be positive, got {value}")


def _part_size(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not MIN_PART_SIZE <= value <= MAX_PART_SIZE:
        raise ConfigurationError(
            f"{attribute.name} must be between 5 MiB and 5 GiB (S3's limits), got {value}"
        )


@attrs.frozen(kw_only=True)
class S3Config:
    """How the S3 adapter connects, and how it moves data.

    Attributes:
        region: the AWS region (``AWS_REGION``); None lets boto3 decide.
        endpoint_url: an S3-compatible server (``S3_ENDPOINT_URL``), e.g.
            ``http://127.0.0.1:8333`` for SeaweedFS, or None for AWS.
        addressing_style: ``"path"`` for most S3-compatible servers, ``"virtual"``
            or ``"auto"`` (boto3's choice) for AWS.
        access_key_id: explicit access key id (``AWS_ACCESS_KEY_ID``); None uses
            boto3's credential chain.
        secret_access_key: explicit secret key (``AWS_SECRET_ACCESS_KEY``).
        session_token: session token of explicit temporary credentials.
        profile: a named profile of the shared AWS config files.
        credentials_provider: called for fresh credentials whenever the current
            ones are about to expire (credential rotation); overrides the others.
        max_concurrency: threads calling S3 at once, and botocore's connection
            pool size (the two must match to avoid reconnecting).
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for data on a connection.
        multipart_threshold: streamed puts larger than this use multipart upload.
        part_size: the size of each multipart part (5 MiB to 5 GiB).
        multipart_concurrency: parts uploaded at once; peak memory of a streamed
            put is about ``multipart_threshold + part_size * multipart_concurrency``.
            ``stream`` also reads an object larger than ``part_size`` in
            parts, this many at once after the first.
        listing_order: ``"server"`` trusts the server to list keys in UTF-8 order
            (AWS does); ``"sorted"`` collects a listing and sorts it (some
            S3-compatible servers, SeaweedFS among them, list directory by
            directory); ``"auto"``: ``"server"`` on AWS, ``"sorted"`` with an
            ``endpoint_url``.
        presign_stable_seconds: sign presigned URLs at the start of a window of
            this many seconds (e.g. 3600), so one object keeps one URL for the
            window and browsers and CDNs can cache it. Such a URL lives a window
            longer than asked, so it never expires early. None: sign at now.
    """

    region: str | None = None
    # Host apps may build the config themselves: its repr never shows a password.
    endpoint_url: str | None = attrs.field(
        default=None, repr=lambda url: "None" if url is None else repr(mask_url(url))
    )
    addressing_style: AddressingStyle = "auto"
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    profile: str | None = None
    credentials_provider: Callable[[], TemporaryCredentials] | None = attrs.field(
        default=None, repr=lambda value: "<callable>" if value else "None"
    )
    max_concurrency: int = attrs.field(default=16, validator=_positive)
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    read_timeout: float = attrs.field(default=60.0, validator=_positive)
    multipart_threshold: int = attrs.field(default=8 * MiB, validator=_part_size)
    part_size: int = attrs.field(default=8 * MiB, validator=_part_size)
    multipart_concurrency: int = attrs.field(default=4, validator=_positive)
    listing_order: ListingOrder = "auto"
    presign_stable_seconds: int | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigurationError(
                "give both access_key_id and secret_access_key, or neither (to use "
                "boto3's credential chain)"
            )
        if self.listing_order not in ("auto", "server", "sorted"):
            raise ConfigurationError(
                f"listing_order must be 'auto', 'server' or 'sorted', got {self.listing_order!r}"
            )
        if self.presign_stable_seconds is not None and not (
            1 <= self.presign_stable_seconds <= MAX_PRESIGN_SECONDS // 2
        ):
            raise ConfigurationError(
                "presign_stable_seconds must be from 1 second to 3.5 days, "
                f"got {self.presign_stable_seconds}"
            )
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ConfigurationError(
                f"addressing_style must be 'auto', 'path' or 'virtual', "
                f"got {self.addressing_style!r}"
            )

    @property
    def sorts_listings(self) -> bool:
        """Whether listings are sorted here rather than trusted to the server."""
        if self.listing_order == "auto":
            return self.endpoint_url is not None
        return self.listing_order == "sorted"

    def botocore_config(self) -> Config:
        """The botocore client configuration: pool, timeouts, no botocore retries."""
        return Config(
            region_name=self.region,
            max_pool_connections=self.max_concurrency,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # One attempt: the resilience layer (tenacity) is the only retry layer.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": self.addressing_style},
            signature_version="s3v4",
        )


def _refresh_metadata(
    provider: Callable[[], TemporaryCredentials],
) -> Callable[[], dict[str, Any]]:
    def refresh() -> dict[str, Any]:
        fresh = provider()
        return {
            "access_key": fresh.access_key_id,
            "secret_key": fresh.secret_access_key.reveal(),
            "token": fresh.session_token.reveal() if fresh.session_token else "",
            "expiry_time": fresh.expires_at.isoformat(),
        }

    return refresh


def build_s3_client(config: S3Config) -> S3Client:
    """Build a boto3 S3 client for ``config``.

    Raises:
        ConfigurationError: the profile does not exist or the settings are inconsistent.
    """
    try:
        core = botocore.session.get_session()
        parse_timestamps_directly(core)
        if config.credentials_provider is not None:
            refresh = _refresh_metadata(config.credentials_provider)
            # botocore has no public setter for refreshable credentials.
            core._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]
                metadata=refresh(), refresh_using=refresh, method="demeter-provider"
            )
            session = boto3.Session(botocore_session=core, region_name=config.region)
        else:
            session = boto3.Session(
                botocore_session=core, profile_name=config.profile, region_name=config.region
            )
        return session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=(
                config.secret_access_key.reveal() if config.secret_access_key else None
            ),
            aws_session_token=config.session_token.reveal() if config.session_token else None,
            config=config.botocore_config(),
        )
    except ConfigurationError:
        raise
    except Exception as exc:  # botocore raises many kinds for bad profiles and settings
        raise ConfigurationError(
            f"cannot build an S3 client: {type(exc).__name__}: "
            f"{redact(str(exc), config.endpoint_url)}; check the region, profile and "
            "endpoint settings"
        ) from None
