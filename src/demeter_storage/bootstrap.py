"""The composition root: settings in, a ready :class:`ImageService` out.

This is the only place that chooses adapters. An S3 store is always wrapped in
:class:`~demeter_storage.adapters.resilience.store.ResilientImageStore`, and both
buckets share one circuit (they share one backend).

Every builder checks its settings first (:meth:`StorageSettings.check`), so a
bad value is one ``ConfigurationError`` before anything is built or written,
whether the settings came from the environment or from code. URLs that may
hold a password reach errors and logs only masked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

from demeter_storage.adapters.local.store import DEFAULT_PUBLIC_BASE_URL, LocalImageStore
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker, pillow_available
from demeter_storage.adapters.resilience.breaker import BreakerEvent, CircuitBreaker
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3 import log_redaction
from demeter_storage.adapters.s3.config import S3Config, build_s3_client
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.domain.errors import ConfigurationError, StorageError, StorageUnavailable
from demeter_storage.domain.urls import endpoint_identity, redact
from demeter_storage.ports import ImageStore, MetadataRepository, ProvisionsBucket, ThumbnailMaker
from demeter_storage.service.config import ServiceConfig
from demeter_storage.service.image_service import ImageService
from demeter_storage.settings.storage import StorageSettings

logger = logging.getLogger(__name__)


def s3_config(settings: StorageSettings) -> S3Config:
    """The S3 adapter's configuration from the settings."""
    return S3Config(
        region=settings.aws_region,
        endpoint_url=settings.s3_endpoint_url,
        addressing_style=settings.s3_addressing_style,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
        session_token=settings.aws_session_token,
        profile=settings.aws_profile,
        max_concurrency=settings.s3_max_concurrency,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        multipart_threshold=settings.s3_multipart_threshold,
        part_size=settings.s3_part_size,
        multipart_concurrency=settings.s3_multipart_concurrency,
        presign_stable_seconds=settings.s3_presign_stable_seconds,
    )


def build_stores(
    settings: StorageSettings,
    *,
    on_breaker_event: Callable[[BreakerEvent], None] | None = None,
) -> tuple[ImageStore, ImageStore]:
    """The originals' and visualizations' stores for the configured backend.

    Args:
        settings: what to build.
        on_breaker_event: called with every event of the S3 stores' shared
            circuit breaker (state changes, failures, recoveries), for metrics
            and alerts. The local and in-memory backends have no breaker.

    Raises:
        ConfigurationError: invalid settings (all of their problems).
    """
    settings.check()
    buckets = (settings.bucket_original, settings.bucket_visualization)
    if settings.backend == "memory":
        return InMemoryImageStore(buckets[0]), InMemoryImageStore(buckets[1])
    if settings.backend == "local":
        base = (settings.public_base_url or DEFAULT_PUBLIC_BASE_URL).rstrip("/")
        local = [
            LocalImageStore(
                settings.storage_root / bucket,
                name=bucket,
                base_url=f"{base}/{bucket}",
                signing_secret=settings.signing_secret,
            )
            for bucket in buckets
        ]
        return local[0], local[1]
    config = s3_config(settings)
    inner_store = (
        _obstore_stores(config) if settings.s3_engine == "obstore" else _boto3_stores(config)
    )
    breaker = CircuitBreaker(
        circuit_name(settings),
        threshold=settings.breaker_failure_threshold,
        reset_timeout=settings.breaker_reset_seconds,
        redis_url=settings.redis_url,
        on_event=on_breaker_event,
    )
    resilient = [
        ResilientImageStore(
            inner_store(bucket),
            retry_attempts=settings.retry_attempts,
            retry_backoff=settings.retry_backoff_seconds,
            retry_max_backoff=settings.retry_max_backoff_seconds,
            breaker=breaker,
        )
        for bucket in buckets
    ]
    return resilient[0], resilient[1]


def circuit_name(settings: StorageSettings) -> str:
    """The S3 stores' circuit: ``demeter-storage:s3:`` and the endpoint's scheme, host and port.

    The name becomes Redis keys (``cbr::{name}``) and appears in errors, so it
    holds no credentials and no path: processes that reach one server through
    differently written URLs share one circuit.
    """
    endpoint = settings.s3_endpoint_url
    return f"demeter-storage:s3:{endpoint_identity(endpoint) if endpoint else 'aws'}"


def _boto3_stores(config: S3Config) -> Callable[[str], ImageStore]:
    """A factory of boto3 stores sharing one client (and its connection pool)."""
    client = build_s3_client(config)
    return lambda bucket: S3ImageStore(bucket, client=client, config=config)


def _obstore_stores(config: S3Config) -> Callable[[str], ImageStore]:
    """A factory of obstore stores; obstore is imported only when asked for."""
    try:
        from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            "S3_ENGINE=obstore needs obstore: pip install 'demeter-storage[fast]', "
            "or set S3_ENGINE=boto3"
        ) from exc
    return lambda bucket: ObstoreImageStore(bucket, config=config)


async def build_metadata(settings: StorageSettings) -> MetadataRepository:
    """The metadata repository, its schema created where the settings say so.

    Raises:
        ConfigurationError: invalid settings, or a database URL the engine refuses
            (the URL's password masked).
        StorageError: creating the schema failed (the password masked).
    """
    settings.check()
    if settings.database_url is None and settings.backend == "memory":
        return InMemoryMetadataRepository()
    url = settings.database_url or settings.embedded_database_url
    log_redaction.watch_url(url)
    if settings.database_url is None:
        try:
            settings.storage_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # checked, but the file system may still say no (/proc, EROFS)
            raise ConfigurationError(
                f"DEMETER_STORAGE_ROOT={str(settings.storage_root)!r} cannot be created "
                f"({exc.strerror or exc}); point it at a writable directory"
            ) from exc
    options = {}
    if not url.startswith("sqlite"):
        # One connection per concurrent upload: a smaller pool makes uploads wait
        # for connections, and its overflow opens and closes them over and over.
        options = {"pool_size": settings.s3_max_concurrency, "max_overflow": 4}
    with _masked_errors(url):
        engine = create_engine(url, **options)
    create = settings.create_schema
    if create is None:
        create = settings.database_url is None
    if create:
        try:
            with _masked_errors(url):
                await create_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
    return SqlAlchemyMetadataRepository(engine, owns_engine=True)


@contextlib.contextmanager
def _masked_errors(url: str) -> Iterator[None]:
    """Re-raise an error whose text (or its causes') holds a password of ``url``, masked.

    Drivers quote what they were given; the masked error drops the chain,
    whose messages still hold the password.
    """
    try:
        yield
    except StorageError as exc:
        chain: list[BaseException] = []
        cause: BaseException | None = exc
        while cause is not None and len(chain) < 10:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if all(redact(str(link), url) == str(link) for link in chain):
            raise
        masked = redact(str(exc), url)
        if isinstance(exc, StorageUnavailable):
            raise StorageUnavailable(masked) from None
        if isinstance(exc, ConfigurationError):
            raise ConfigurationError(masked) from None
        raise StorageError(masked) from None


def build_thumbnails(settings: StorageSettings) -> ThumbnailMaker | None:
    """The thumbnail maker, when enabled and Pillow is installed."""
    wanted = settings.thumbnails
    if wanted is None:
        wanted = pillow_available()
    if not wanted:
        return None
    if not pillow_available():
        logger.warning("DEMETER_THUMBNAILS is on but Pillow is missing: no thumbnails")
        return None
    return PillowThumbnailMaker(max_concurrent_decodes=settings.max_concurrent_decodes)


async def build_service(
    settings: StorageSettings | None = None,
    *,
    on_breaker_event: Callable[[BreakerEvent], None] | None = None,
) -> ImageService:
    """Build the image service from ``settings`` (read from the environment when None).

    Args:
        settings: what to build; None reads ``StorageSettings.from_env()``.
        on_breaker_event: as for :func:`build_stores`.

    Raises:
        ConfigurationError: invalid settings, an unusable database URL, or
            (with ``S3_CREATE_BUCKETS``) buckets that cannot be created.
    """
    settings = settings or StorageSettings.from_env()
    settings.check()  # settings made in code: everything is refused before anything is built
    if settings.redis_url:
        log_redaction.watch_url(settings.redis_url)
    originals, visualizations = build_stores(settings, on_breaker_event=on_breaker_event)
    metadata = await build_metadata(settings)
    if settings.backend == "s3" and settings.s3_create_buckets:
        for store in (originals, visualizations):
            if isinstance(store, ProvisionsBucket):
                await store.ensure_bucket()
    config = ServiceConfig(
        max_upload_bytes=settings.max_upload_bytes,
        default_expiry_hours=settings.presigned_url_expiry_hours,
        stale_upload_after=timedelta(seconds=settings.stale_upload_seconds),
        direct_upload_expiry=timedelta(seconds=settings.direct_upload_expiry_seconds),
        lifecycle=settings.lifecycle_policy(),
        expired_records=settings.expired_records,
        orphan_grace=timedelta(seconds=settings.orphan_grace_seconds),
    )
    return ImageService(
        originals=originals,
        visualizations=visualizations,
        metadata=metadata,
        config=config,
        thumbnails=build_thumbnails(settings),
    )
