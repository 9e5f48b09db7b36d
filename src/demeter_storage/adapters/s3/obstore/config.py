"""obstore's ``S3Store`` built from the same :class:`~demeter_storage.adapters.s3.config.S3Config`.

The settings mean what they mean for the boto3 adapter: the endpoint, the
region, the addressing style, the timeouts and the credentials (explicit keys,
a rotation callback, or boto3's chain: environment, profiles, container and
instance roles). obstore's own retries are off (``max_retries=0``): the
resilience layer (tenacity) is the only retry layer.

Uploads carry a CRC64-NVME checksum that the server verifies (a mismatch is
``BadDigest``: :class:`~demeter_storage.domain.errors.IntegrityError`) and an
unsigned payload, as AWS's own SDKs send them; an S3-compatible server that
knows no CRC64-NVME needs an ``S3Store`` built by hand (the adapter's ``store``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import boto3
from obstore.store import S3Store

from demeter_storage.adapters.s3.config import S3Config, TemporaryCredentials
from demeter_storage.domain.errors import ConfigurationError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Credential

OVERALL_TIMEOUT: Final = timedelta(days=1)
"""obstore ends any request after 30 s by default, body included, which would
cut large transfers short; stalls are caught by ``read_timeout`` instead."""


class RotatingCredentials:
    """obstore's credential callback on top of an :class:`S3Config` rotation callback.

    obstore calls it again shortly before the credentials it returned expire.
    """

    def __init__(self, provider: Callable[[], TemporaryCredentials]) -> None:
        self._provider = provider

    def __call__(self) -> S3Credential:
        """Fetch fresh credentials."""
        fresh = self._provider()
        return {
            "access_key_id": fresh.access_key_id,
            "secret_access_key": fresh.secret_access_key.reveal(),
            "token": fresh.session_token.reveal() if fresh.session_token else None,
            "expires_at": fresh.expires_at,
        }


def uses_virtual_hosts(config: S3Config) -> bool:
    """Whether requests name the bucket in the host (``"auto"``: on AWS, not elsewhere)."""
    if config.addressing_style == "auto":
        return config.endpoint_url is None
    return config.addressing_style == "virtual"


def _virtual_endpoint(endpoint: str, bucket: str) -> str:
    # obstore expects a virtual-hosted endpoint to name the bucket already.
    parts = urlsplit(endpoint)
    return urlunsplit(parts._replace(netloc=f"{bucket}.{parts.netloc}")).rstrip("/")


def _client_options(config: S3Config) -> ClientConfig:
    options: ClientConfig = {
        "connect_timeout": timedelta(seconds=config.connect_timeout),
        "read_timeout": timedelta(seconds=config.read_timeout),
        "timeout": OVERALL_TIMEOUT,
    }
    if config.endpoint_url is not None and config.endpoint_url.lower().startswith("http://"):
        options["allow_http"] = True
    return options


def _boto3_chain(config: S3Config, settings: dict[str, Any]) -> Callable[[], S3Credential]:
    """Credentials from boto3's chain (or a named profile), as the boto3 adapter finds them."""
    from obstore.auth.boto3 import Boto3CredentialProvider  # noqa: PLC0415 - rarely needed

    session = boto3.Session(profile_name=config.profile, region_name=config.region)
    if "region" not in settings and session.region_name:
        settings["region"] = session.region_name
    return Boto3CredentialProvider(session)


def build_obstore_store(bucket: str, config: S3Config) -> S3Store:
    """An obstore ``S3Store`` for ``bucket`` with the settings of ``config``, never retrying.

    Raises:
        ConfigurationError: no usable credentials, an unknown profile, or settings
            obstore refuses.
    """
    settings: dict[str, Any] = {
        "virtual_hosted_style_request": uses_virtual_hosts(config),
        # The server checks a CRC64 of every upload (as botocore's CRC32 for the
        # boto3 adapter) instead of a SHA-256 of the payload in the signature:
        # the adapter computes the SHA-256 it records itself, and once is enough.
        "unsigned_payload": True,
        "checksum_algorithm": "CRC64NVME",
    }
    if config.region is not None:
        settings["region"] = config.region
    if config.endpoint_url is not None:
        endpoint = config.endpoint_url.rstrip("/")
        settings["endpoint"] = (
            _virtual_endpoint(endpoint, bucket) if uses_virtual_hosts(config) else endpoint
        )
    credential_provider: Callable[[], S3Credential] | None = None
    try:
        if config.credentials_provider is not None:
            credential_provider = RotatingCredentials(config.credentials_provider)
        elif config.access_key_id is not None and config.secret_access_key is not None:
            settings["access_key_id"] = config.access_key_id
            settings["secret_access_key"] = config.secret_access_key.reveal()
            if config.session_token is not None:
                settings["session_token"] = config.session_token.reveal()
        else:
            credential_provider = _boto3_chain(config, settings)
        return S3Store(
            bucket,
            config=settings,  # type: ignore[arg-type]  # built key by key above
            client_options=_client_options(config),
            retry_config={"max_retries": 0},
            credential_provider=credential_provider,
        )
    except Exception as exc:  # boto3 and obstore raise many kinds for bad settings
        raise ConfigurationError(
            f"cannot build an obstore S3 store for bucket {bucket!r}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or run where an instance "
            "or container role exists, and check the region and endpoint settings"
        ) from exc
