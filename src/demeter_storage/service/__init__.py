"""The service layer: uploads, reads, direct uploads and upkeep, spoken through the ports."""

from demeter_storage.service.config import ServiceConfig
from demeter_storage.service.image_service import ImageService, S3ImageService
from demeter_storage.service.schemas import DirectUpload, ImagePage, ImageResponse, UploadRequest

__all__ = [
    "DirectUpload",
    "ImagePage",
    "ImageResponse",
    "ImageService",
    "S3ImageService",
    "ServiceConfig",
    "UploadRequest",
]
