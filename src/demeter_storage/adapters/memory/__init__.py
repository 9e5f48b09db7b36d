"""The in-memory driver: a store and a metadata repository for tests and examples."""

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore

__all__ = ["InMemoryImageStore", "InMemoryMetadataRepository"]
