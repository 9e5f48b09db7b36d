"""``demeter-storage db upgrade|current|check``: the metadata database's schema migrations.

The database is the one the app uses (``DEMETER_DATABASE_URL``, or the
embedded SQLite under ``DEMETER_STORAGE_ROOT``); its URL is shown masked, and
a driver's error reaches the terminal with its password masked too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from demeter_storage.adapters.sql import migrations
from demeter_storage.adapters.sql.admin import Database, database, missing_sqlite_file
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.urls import mask_url
from demeter_storage.settings.storage import StorageSettings

ACTIONS: Final = ("upgrade", "current", "check")
UPGRADE_HINT: Final = "run `demeter-storage db upgrade`"


async def run_db(args: argparse.Namespace) -> int:
    """Run ``db upgrade``, ``db current`` or ``db check``; return the exit code.

    Raises:
        ConfigurationError: invalid settings, the ``memory`` backend without a
            database, or (``upgrade``) a database a newer release migrated.
        StorageUnavailable: the database cannot be reached or refused a statement.
    """
    settings = StorageSettings.from_env()
    settings.check()
    if settings.database_url is None and settings.backend == "memory":
        raise ConfigurationError(
            "the memory backend keeps its records in memory: there is no database to "
            "migrate; set DEMETER_DATABASE_URL"
        )
    url = settings.database_url or settings.embedded_database_url
    missing = missing_sqlite_file(url)
    if missing is not None and args.action != "upgrade":
        # Connecting would create an empty file: say what is there instead.
        print(f"{mask_url(url)}: no database yet ({missing} does not exist); {UPGRADE_HINT}")
        return 0 if args.action == "current" else 1
    if missing is not None:
        _make_directory(missing.parent)
    async with database(url) as engine:
        if args.action == "upgrade":
            return await _upgrade(engine, url)
        if args.action == "current":
            return await _current(engine, url)
        return await _check(engine, url)


async def _upgrade(engine: Database, url: str) -> int:
    before = await migrations.current(engine)
    await migrations.upgrade(engine)
    head = migrations.head()
    if before == (head,):
        print(f"{mask_url(url)} is up to date ({head})")
    else:
        print(f"{mask_url(url)} upgraded from {_shown(before)} to {head}")
    return 0


async def _current(engine: Database, url: str) -> int:
    status = await migrations.status(engine)
    print(f"{mask_url(url)}: {_shown(status.current)} ({_where(status)})")
    return 0


async def _check(engine: Database, url: str) -> int:
    status = await migrations.status(engine)
    shown = mask_url(url)
    if status.ok:
        print(f"{shown} is at the head ({status.head}) and matches the models")
        return 0
    print(f"{shown}: {_shown(status.current)} ({_where(status)})")
    for difference in status.differences:
        print(f"  {difference}")
    return 1


def _where(status: migrations.SchemaStatus) -> str:
    if status.unknown:
        return (
            f"unknown to this release, whose head is {status.head}: a newer release "
            "migrated it; upgrade demeter-storage"
        )
    if status.differences:
        return (
            f"the head, but {len(status.differences)} difference(s) from the models: "
            "changed by hand, or a migration is missing"
        )
    if status.at_head:
        return "the head"
    if not status.current and status.table_exists:
        return f"made before migrations; {UPGRADE_HINT} to adopt it, its rows stay"
    return f"behind the head {status.head}; {UPGRADE_HINT}"


def _shown(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) or "no revision"


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create {str(path)!r} for the database ({exc.strerror or exc}); "
            "point DEMETER_STORAGE_ROOT or DEMETER_DATABASE_URL at a writable place"
        ) from None
