"""Fixtures shared by the adapters' tests."""

from tests.adapters.s3.fake_s3 import fake_s3
from tests.adapters.sql.postgres_schema import admin, schema

__all__ = ["admin", "fake_s3", "schema"]
