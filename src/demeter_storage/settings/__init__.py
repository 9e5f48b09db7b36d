"""Settings from the environment, checked before anything is built."""

from demeter_storage.settings.storage import StorageSettings, settings_markdown, settings_table

__all__ = ["StorageSettings", "settings_markdown", "settings_table"]
