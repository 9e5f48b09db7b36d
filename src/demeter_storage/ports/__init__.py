"""The contracts every adapter fulfils.

:class:`ImageStore` is the object-storage port; :class:`MetadataRepository` the
port for the records that point at objects (kept apart so that database
deletes and object deletes never depend on one another); :class:`ThumbnailMaker`
makes previews; ``capabilities`` holds the optional extras some stores
offer. Each lives in its own module; all are importable from here.
"""

from demeter_storage.ports.capabilities import (
    ProvisionsBucket,
    RemovesLeftovers,
    ServesSignedUrls,
    UrlVerifier,
)
from demeter_storage.ports.images import ImageStore
from demeter_storage.ports.records import MetadataRepository
from demeter_storage.ports.thumbnails import ThumbnailMaker

__all__ = [
    "ImageStore",
    "MetadataRepository",
    "ProvisionsBucket",
    "RemovesLeftovers",
    "ServesSignedUrls",
    "ThumbnailMaker",
    "UrlVerifier",
]
