"""demeter-storage: photo storage for the Demeter plant-counting app.

One :class:`ImageStore` port with S3, local file-system and in-memory adapters.
"""

from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.store import InMemoryImageStore
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
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.ports.streams import Payload, PutData
from demeter_storage.service.schemas import DirectUpload

__all__ = [
    "ConfigurationError",
    "DirectUpload",
    "ImageAlreadyExists",
    "ImageNotFound",
    "ImageStore",
    "InMemoryImageStore",
    "IntegrityError",
    "InvalidSignature",
    "LifecyclePolicy",
    "LifecycleRule",
    "LocalImageStore",
    "ObjectChanged",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "Payload",
    "PresignedPost",
    "PresignedUrl",
    "PutData",
    "Secret",
    "StorageError",
    "StorageUnavailable",
    "UploadAlreadyCompleted",
    "ValidationError",
]
