"""Identifiers of new records."""

from __future__ import annotations

import uuid


def new_id() -> uuid.UUID:
    """A random (version 4) UUID for a new record."""
    return uuid.uuid4()
