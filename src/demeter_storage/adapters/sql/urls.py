"""Database URLs as the SQL driver reads them: checked before any engine is made.

Settings call these, so that a URL SQLAlchemy cannot use is one line of the
settings' ``ConfigurationError`` rather than a failure at start-up.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def database_url_problem(url: str) -> str | None:
    """Why SQLAlchemy cannot open ``url`` with an installed asyncio driver, or None.

    The answer never quotes the URL, so it never holds its password.
    """
    if "\x00" in url:
        return "must not contain a NUL character"
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError, or ValueError from a port that is not a number
        return "is not a SQLAlchemy URL (dialect+driver://user:password@host:port/database)"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return "the port must be from 1 to 65535"
    try:
        dialect = parsed.get_dialect()
    except Exception:  # NoSuchModuleError, or a plugin that fails to load
        return f"SQLAlchemy has no dialect {parsed.drivername!r} (use postgresql+asyncpg)"
    if not getattr(dialect, "is_async", False):
        return (
            f"{parsed.drivername!r} is not an asyncio driver: use postgresql+asyncpg or "
            "sqlite+aiosqlite"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        return (
            f"the driver of {parsed.drivername!r} is not installed ({exc.name}); for "
            "PostgreSQL: pip install 'demeter-storage[postgres]'"
        )
    return None


def sqlite_file_url(path: str) -> str:
    """The ``sqlite+aiosqlite`` URL of the database file at ``path``."""
    # Built, not formatted: a '?', '#' or '%' in the path must stay part of the path.
    url = URL.create("sqlite+aiosqlite", database=path)
    return url.render_as_string(hide_password=False)
