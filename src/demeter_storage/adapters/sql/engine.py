"""The async SQLAlchemy engine the metadata repository runs on, set up for its access pattern.

SQLite gets the pragmas the embedded default needs; other databases get a
liveness ping only for connections that sat idle, instead of SQLAlchemy's
``pool_pre_ping`` round trip on every checkout.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.urls import mask_url, redact

_SQLITE_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


IDLE_PING_SECONDS: Final = 1.0
"""Connections idle longer than this are pinged before use (see :func:`create_engine`)."""


def create_engine(
    url: str, *, ping_idle_after: float = IDLE_PING_SECONDS, **options: Any
) -> AsyncEngine:
    """An async engine for ``url``, set up for this package's access pattern.

    SQLite gets WAL mode (readers never wait for the writer), a 30 s busy
    timeout, full fsync and foreign keys. Other databases get a liveness ping
    on checkout for connections idle more than ``ping_idle_after`` seconds
    (0: every reuse, like SQLAlchemy's ``pool_pre_ping``). A connection in
    steady use skips it: the ping was a round trip per statement, as costly
    as the statement itself; one that dies under a statement is invalidated
    and the statement fails with ``StorageUnavailable``.

    Raises:
        ConfigurationError: the URL or its driver is unusable.
    """
    try:
        engine = create_async_engine(url, **options)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        # The library may quote the URL: its password never reaches the message.
        raise ConfigurationError(
            f"cannot use the database URL {mask_url(url)!r} ({type(exc).__name__}: "
            f"{redact(str(exc), url)}); check DEMETER_DATABASE_URL and install the driver "
            "(asyncpg for PostgreSQL)"
        ) from None
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

    else:
        _ping_idle_connections(engine, ping_idle_after)
    return engine


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < idle_seconds:
            return  # just connected, or in steady use
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool's documented way to say "discard this one and connect anew".
            raise DisconnectionError(f"the idle connection is gone ({exc})") from exc


_LAST_USED: Final = "demeter_last_used"
