"""The S3 driver: boto3 by default, obstore (``S3_ENGINE=obstore``) in ``s3.obstore``."""

from demeter_storage.adapters.s3.config import S3Config, TemporaryCredentials, build_s3_client
from demeter_storage.adapters.s3.store import S3ImageStore

__all__ = ["S3Config", "S3ImageStore", "TemporaryCredentials", "build_s3_client"]
