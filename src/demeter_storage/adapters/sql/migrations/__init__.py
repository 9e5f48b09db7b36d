"""The package's Alembic migrations of the image records' schema, and how to run them.

Our revisions live in ``versions/`` beside this file, and their version is kept
in a table of our own, :data:`VERSION_TABLE`, so that a host app's Alembic
environment in the same database never sees them: the host runs its own
migrations with its own ``alembic_version``, and ours with :func:`upgrade`,
``demeter-storage db upgrade`` or ``alembic -n demeter_storage upgrade head``
(an ini section whose ``script_location`` is :data:`SCRIPT_LOCATION`).

Every run holds a lock for its whole transaction, so processes that start at
once upgrade one after the other: a PostgreSQL advisory lock (per schema), and
SQLite's write lock (``BEGIN IMMEDIATE``). A database made before the package
shipped migrations (by ``create_all``) is adopted by the first revisions, which
create only what it lacks: its rows stay.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import attrs
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from demeter_storage.adapters.sql.schema import TABLE_NAME, metadata
from demeter_storage.domain.errors import ConfigurationError

logger = logging.getLogger(__name__)

VERSION_TABLE: Final = "demeter_storage_alembic_version"
"""The table that records our revision (a host app's ``alembic_version`` is left alone)."""

SCRIPT_LOCATION: Final = "demeter_storage.adapters.sql:migrations"
"""Alembic's ``script_location`` of our migrations, in its package-resource form."""

OUR_TABLES: Final = frozenset({TABLE_NAME, VERSION_TABLE})
"""The tables our migrations own: a host app's autogenerate must leave them alone."""

_LOCK_NAMESPACE: Final = 0x0DE3E7E5
"""First key of the PostgreSQL advisory lock; the second is a hash of the schema's name."""


def script_location() -> str:
    """The directory of our migrations (``env.py`` and ``versions/``) on this machine."""
    return str(Path(__file__).resolve().parent)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` of our migrations, without an ini file.

    Args:
        url: the database's SQLAlchemy URL with an asyncio driver, for Alembic's
            own commands (``command.upgrade(config, "head")``); not needed when
            ``config.attributes["connection"]`` holds a connection.
    """
    config = Config()
    config.set_main_option("script_location", script_location())
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def script_directory() -> ScriptDirectory:
    """Our revisions (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this package knows."""
    heads = script_directory().get_heads()
    if len(heads) != 1:  # pragma: no cover - a packaging mistake, caught by the tests
        raise RuntimeError(f"our migrations must have one head, not {heads}")
    return heads[0]


def only_demeter_storage(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic's ``include_name`` hook of our environment: only our tables."""
    return type_ != "table" or name in OUR_TABLES


def not_demeter_storage(name: str | None, type_: str, _parent_names: Any) -> bool:
    """An ``include_name`` hook for a host app's ``env.py``: everything but our tables.

    With it the host's autogenerate and ``alembic check`` neither drop nor
    report our tables (our own migrations look after them).
    """
    return type_ != "table" or name not in OUR_TABLES


def context_options() -> dict[str, Any]:
    """The options of ``context.configure`` (or ``MigrationContext.configure``) for our schema."""
    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "include_name": only_demeter_storage,
        "compare_type": True,
    }


@contextlib.asynccontextmanager
async def locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that holds the migration lock until it commits (or rolls back).

    PostgreSQL: a transaction-level advisory lock keyed by the current
    schema, so deployments in other schemas of the database do not wait.
    SQLite: ``BEGIN IMMEDIATE``, its write lock; the engine's busy timeout
    (30 s with :func:`~demeter_storage.adapters.sql.engine.create_engine`) is
    how long a second process waits. Other databases: the transaction alone.
    """
    async with engine.begin() as connection:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            await connection.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(:namespace, "
                    "hashtext(coalesce(current_schema(), '')))"
                ),
                {"namespace": _LOCK_NAMESPACE},
            )
        elif dialect == "sqlite":
            # The sqlite3 module opens transactions only before DML, so without
            # this the DDL would run (and commit) statement by statement.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (the newest by default), under the lock.

    Nothing runs when the database is there already. A database made before
    the package had migrations keeps its rows: the first revisions create
    only what it lacks.

    Raises:
        ConfigurationError: the database was migrated by a newer release of
            the package (its revision is unknown here): upgrade the package, or
            point it at the right database; nothing is downgraded.
    """
    if revision == "head" and await current(engine) == (head(),):
        return  # the usual start: no lock, so no wait behind a writer's transaction
    async with locked(engine) as connection:
        await connection.run_sync(_upgrade, revision)


async def refuse_newer(engine: AsyncEngine) -> None:
    """Refuse a database that a newer release migrated (one query; changes nothing).

    For apps that start without upgrading (``DEMETER_CREATE_SCHEMA`` off): a
    database behind the head, or never migrated, passes (``db check`` reports
    it); one whose revision this release does not know does not.

    Raises:
        ConfigurationError: the database's revision is unknown here.
    """
    async with engine.connect() as connection:
        await connection.run_sync(_refuse_unknown)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the database to ``revision`` (``"base"``: drop our tables and rows).

    Raises:
        ConfigurationError: the database's revision is unknown here.
    """
    async with locked(engine) as connection:
        await connection.run_sync(_run_command, command.downgrade, revision)


async def current(engine: AsyncEngine) -> tuple[str, ...]:
    """The database's revision (empty when it has none yet)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_heads)


@attrs.frozen
class SchemaStatus:
    """Where a database stands against this package's migrations and models.

    Attributes:
        current: the database's revisions (empty: never migrated).
        head: the newest revision this package knows.
        unknown: revisions of the database this package does not know (a newer
            release migrated it).
        differences: what Alembic's autogenerate finds between the database and
            the models (compared only at the head), one line each.
        table_exists: whether the image records' table exists (with no
            revision: a database made before migrations, upgraded in place).
    """

    current: tuple[str, ...]
    head: str
    unknown: tuple[str, ...]
    differences: tuple[str, ...]
    table_exists: bool

    @property
    def at_head(self) -> bool:
        """Whether the database is at this package's newest revision."""
        return self.current == (self.head,)

    @property
    def ok(self) -> bool:
        """At the head, and no difference from the models."""
        return self.at_head and not self.differences


async def status(engine: AsyncEngine) -> SchemaStatus:
    """Compare the database with our migrations and models (``alembic check``, read only)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_status)


def differences(connection: sa.Connection) -> list[str]:
    """Alembic's autogenerate diff between the database and :data:`metadata`, one line each."""
    context = MigrationContext.configure(connection, opts=context_options())
    return [_describe(diff) for diff in compare_metadata(context, metadata)]


def _describe(diff: Any) -> str:
    """One line of an autogenerate diff: ``add_column demeter_images etag``."""
    if isinstance(diff, list):  # the modifications of one column
        return "; ".join(_describe(item) for item in diff)
    kind, *rest = diff
    words = [kind]
    for item in rest:
        if item is None or isinstance(item, dict):
            continue  # the schema (default) and the existing column's keywords
        if isinstance(item, str):  # a table's or column's name
            words.append(item)
        else:  # a table, column, index or constraint by its name; a type as SQL
            words.append(str(getattr(item, "name", None) or item))
    return " ".join(words)


def _status(connection: sa.Connection) -> SchemaStatus:
    heads = _current_heads(connection)
    unknown = _unknown(heads)
    newest = head()
    found = tuple(differences(connection)) if heads == (newest,) and not unknown else ()
    table_exists = sa.inspect(connection).has_table(TABLE_NAME)
    return SchemaStatus(heads, newest, unknown, found, table_exists)


def _current_heads(connection: sa.Connection) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return tuple(context.get_current_heads())


def _unknown(heads: Iterable[str]) -> tuple[str, ...]:
    script = script_directory()
    missing = []
    for revision in heads:
        try:
            script.get_revision(revision)
        except CommandError:
            missing.append(revision)
    return tuple(missing)


def _refuse_unknown(connection: sa.Connection) -> tuple[str, ...]:
    heads = _current_heads(connection)
    unknown = _unknown(heads)
    if unknown:
        raise ConfigurationError(
            f"the database's schema is at revision {', '.join(unknown)}, which this "
            f"release of demeter-storage does not know (its newest is {head()}): a newer "
            "release migrated it; upgrade demeter-storage, or point it at another database "
            "(nothing was changed)"
        )
    return heads


def _upgrade(connection: sa.Connection, revision: str) -> None:
    heads = _refuse_unknown(connection)
    if revision == "head" and heads == (head(),):
        return  # another process upgraded it while this one waited for the lock
    if not heads and sa.inspect(connection).has_table(TABLE_NAME):
        logger.info("adopting %s, made before migrations: its rows stay", TABLE_NAME)
    _run_command(connection, command.upgrade, revision, checked=True)


def _run_command(
    connection: sa.Connection,
    run: Callable[[Config, str], None],
    revision: str,
    *,
    checked: bool = False,
) -> None:
    if not checked:
        _refuse_unknown(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    run(config, revision)


__all__: Sequence[str] = [
    "OUR_TABLES",
    "SCRIPT_LOCATION",
    "VERSION_TABLE",
    "SchemaStatus",
    "alembic_config",
    "context_options",
    "current",
    "differences",
    "downgrade",
    "head",
    "locked",
    "not_demeter_storage",
    "only_demeter_storage",
    "refuse_newer",
    "script_directory",
    "script_location",
    "status",
    "upgrade",
]
