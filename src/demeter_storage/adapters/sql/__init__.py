"""The SQLAlchemy driver for image records: SQLite and PostgreSQL."""

from demeter_storage.adapters.sql.engine import create_engine
from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.adapters.sql.schema import create_schema

__all__ = ["SqlAlchemyMetadataRepository", "create_engine", "create_schema"]
