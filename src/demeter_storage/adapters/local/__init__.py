"""The local file-system driver: objects as files, signed URLs served by our web app."""

from demeter_storage.adapters.local.store import LocalImageStore

__all__ = ["LocalImageStore"]
