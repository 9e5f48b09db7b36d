"""Fixtures shared by the adapters' tests."""

from tests.adapters.fake_s3 import fake_s3

__all__ = ["fake_s3"]
