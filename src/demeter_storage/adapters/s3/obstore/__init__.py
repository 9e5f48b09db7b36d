"""The S3 driver's obstore engine: obstore moves the bytes, boto3 does the rare control calls."""

from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore

__all__ = ["ObstoreImageStore"]
