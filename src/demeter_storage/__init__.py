"""demeter-storage: photo storage for the Demeter plant-counting app.

One :class:`ImageStore` port with S3, local file-system and in-memory adapters.
"""

from demeter_storage.adapters.local import LocalImageStore
from demeter_storage.adapters.memory import InMemoryImageStore
from demeter_storage.domain.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidSignature,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.domain.objects import ObjectInfo, PresignedUrl
from demeter_storage.domain.secrets import Secret
from demeter_storage.ports import ImageStore
from demeter_storage.streams import Payload, PutData

__all__ = [
    "ConfigurationError",
    "ImageStore",
    "InMemoryImageStore",
    "IntegrityError",
    "InvalidSignature",
    "LifecyclePolicy",
    "LifecycleRule",
    "LocalImageStore",
    "ObjectInfo",
    "ObjectNotFound",
    "Payload",
    "PresignedUrl",
    "PutData",
    "Secret",
    "StorageError",
    "StorageUnavailable",
    "ValidationError",
]
