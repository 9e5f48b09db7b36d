"""Thumbnails with Pillow, decoding only what fits a memory budget."""

from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker, pillow_available

__all__ = ["PillowThumbnailMaker", "pillow_available"]
