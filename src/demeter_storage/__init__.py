"""demeter-storage: photo storage for the Demeter plant-counting app.

Everything a host app or its tests name is importable from here: the
composition root (:func:`build_service` from :class:`StorageSettings`), the
service and its requests and responses, every error, every store and
metadata repository, and the lifecycle policy. ``ObstoreImageStore`` is
loaded on first use, since its extra (``fast``) is optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demeter_storage.adapters.local import LocalImageStore
from demeter_storage.adapters.memory import InMemoryImageStore, InMemoryMetadataRepository
from demeter_storage.adapters.pillow import PillowThumbnailMaker
from demeter_storage.adapters.resilience import (
    BreakerEvent,
    BreakerStatus,
    CircuitBreaker,
    ResilientImageStore,
)
from demeter_storage.adapters.s3 import S3Config, S3ImageStore, TemporaryCredentials
from demeter_storage.adapters.sql import SqlAlchemyMetadataRepository, create_engine, create_schema
from demeter_storage.bootstrap import build_metadata, build_service, build_stores
from demeter_storage.domain.errors import (
    ConfigurationError,
    ImageAlreadyExists,
    ImageNotFound,
    IntegrityError,
    InvalidSignature,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    UploadAlreadyCompleted,
    ValidationError,
)
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.domain.objects import ObjectInfo, PresignedPost, PresignedUrl
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import (
    ImageStore,
    MetadataRepository,
    ProvisionsBucket,
    RemovesLeftovers,
    ServesSignedUrls,
    ThumbnailMaker,
    UrlVerifier,
)
from demeter_storage.ports.streams import Payload, PutData
from demeter_storage.service import (
    DirectUpload,
    ImagePage,
    ImageResponse,
    ImageService,
    S3ImageService,
    ServiceConfig,
    UploadRequest,
)
from demeter_storage.service.audit import AuditReport, OrphanSweep
from demeter_storage.service.maintenance import ReconcileReport
from demeter_storage.service.ownership import LostOwnership
from demeter_storage.settings import StorageSettings

if TYPE_CHECKING:
    from demeter_storage.adapters.s3.obstore import ObstoreImageStore

__all__ = [
    "AuditReport",
    "BreakerEvent",
    "BreakerStatus",
    "CircuitBreaker",
    "ConfigurationError",
    "DirectUpload",
    "ImageAlreadyExists",
    "ImageKind",
    "ImageNotFound",
    "ImagePage",
    "ImageRecord",
    "ImageResponse",
    "ImageService",
    "ImageState",
    "ImageStore",
    "InMemoryImageStore",
    "InMemoryMetadataRepository",
    "IntegrityError",
    "InvalidSignature",
    "LifecyclePolicy",
    "LifecycleRule",
    "LocalImageStore",
    "LostOwnership",
    "MetadataRepository",
    "ObjectChanged",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObstoreImageStore",
    "OrphanSweep",
    "Payload",
    "PillowThumbnailMaker",
    "PresignedPost",
    "PresignedUrl",
    "ProvisionsBucket",
    "PutData",
    "ReconcileReport",
    "RemovesLeftovers",
    "ResilientImageStore",
    "S3Config",
    "S3ImageService",
    "S3ImageStore",
    "Secret",
    "ServesSignedUrls",
    "ServiceConfig",
    "SqlAlchemyMetadataRepository",
    "StorageError",
    "StorageSettings",
    "StorageUnavailable",
    "TemporaryCredentials",
    "ThumbnailMaker",
    "UploadAlreadyCompleted",
    "UploadRequest",
    "UrlVerifier",
    "ValidationError",
    "build_metadata",
    "build_service",
    "build_stores",
    "create_engine",
    "create_schema",
]


def __getattr__(name: str) -> Any:
    """Load ``ObstoreImageStore`` on first use: obstore is an optional extra."""
    if name == "ObstoreImageStore":
        from demeter_storage.adapters.s3.obstore import ObstoreImageStore  # noqa: PLC0415

        return ObstoreImageStore
    raise AttributeError(f"module 'demeter_storage' has no attribute {name!r}")
