"""Our revisions, oldest first (Alembic reads them; nothing imports them)."""
