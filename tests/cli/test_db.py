"""``demeter-storage db upgrade|current|check`` on the embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from demeter_storage.adapters.sql import migrations
from demeter_storage.adapters.sql.repository import create_engine
from demeter_storage.adapters.sql.schema import TABLE_NAME
from tests.adapters.sql.databases import (
    create_postgres_database,
    database_url,
    drop_postgres_database,
    first_release_table,
    insert_an_image,
)
from tests.cli.support import run, workdir

__all__ = ["workdir"]  # the autouse fixture, for this module

HEAD = migrations.head()
EMBEDDED = Path("demeter-data") / "demeter.sqlite3"


def _on(url: str, *statements: str, before: str | None = None) -> None:
    """Run ``statements`` on ``url`` (after upgrading it to ``before``, if given)."""

    async def go() -> None:
        engine = create_engine(url)
        try:
            if before is not None:
                await migrations.upgrade(engine, before)
            async with engine.begin() as connection:
                for statement in statements:
                    await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


def _embedded_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{workdir / EMBEDDED}"


def test_the_embedded_database_is_upgraded_shown_and_checked(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    code, out, _ = run(capsys, "db", "current")
    assert (code, "no database yet" in out) == (0, True)
    code, out, _ = run(capsys, "db", "check")
    assert (code, "run `demeter-storage db upgrade`" in out) == (1, True)
    assert not (workdir / "demeter-data").exists()  # neither made an empty database

    assert run(capsys, "db", "upgrade") == (
        0,
        f"{_embedded_url(workdir)} upgraded from no revision to {HEAD}\n",
        "",
    )
    assert run(capsys, "db", "current") == (0, f"{_embedded_url(workdir)}: {HEAD} (the head)\n", "")
    code, out, _ = run(capsys, "db", "check")
    assert (code, out.endswith(f"at the head ({HEAD}) and matches the models\n")) == (0, True)
    code, out, _ = run(capsys, "db", "upgrade")
    assert (code, out.endswith(f"is up to date ({HEAD})\n")) == (0, True)


def test_check_fails_behind_the_head_until_upgraded(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "demeter-data").mkdir()
    _on(_embedded_url(workdir), before="demeter_0001")
    code, out, _ = run(capsys, "db", "check")
    assert code == 1
    assert f"demeter_0001 (behind the head {HEAD}; run `demeter-storage db upgrade`)" in out
    code, out, _ = run(capsys, "db", "upgrade")
    assert (code, out.endswith(f"upgraded from demeter_0001 to {HEAD}\n")) == (0, True)
    assert run(capsys, "db", "check")[0] == 0


def test_check_fails_when_the_schema_drifts_from_the_models(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    _on(_embedded_url(workdir), f"ALTER TABLE {TABLE_NAME} ADD COLUMN extra INTEGER")
    code, out, _ = run(capsys, "db", "check")
    assert code == 1
    assert "1 difference(s) from the models" in out
    assert f"  remove_column {TABLE_NAME} extra\n" in out


def test_a_database_from_before_migrations_is_adopted(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "demeter-data").mkdir()
    url = _embedded_url(workdir)

    async def old_release() -> None:
        engine = create_engine(url)
        try:
            await insert_an_image(engine, first_release_table())
        finally:
            await engine.dispose()

    asyncio.run(old_release())
    code, out, _ = run(capsys, "db", "check")
    assert (code, "made before migrations" in out) == (1, True)
    assert run(capsys, "db", "upgrade")[0] == 0
    assert run(capsys, "db", "check")[0] == 0
    code, out, _ = run(capsys, "ls", "--session", "s1")
    assert (code, len(out.splitlines())) == (0, 1)  # the old row is listed


def test_a_database_a_newer_release_migrated_is_refused(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    _on(
        _embedded_url(workdir),
        f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'demeter_9999'",
    )
    code, out, _ = run(capsys, "db", "current")
    assert (code, "demeter_9999 (unknown to this release" in out) == (0, True)
    code, out, _ = run(capsys, "db", "check")
    assert (code, "a newer release migrated it" in out) == (1, True)
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (2, "")
    assert "demeter_9999" in err
    assert "upgrade demeter-storage" in err
    code, _, err = run(capsys, "ls")  # the service refuses to start on it, too
    assert (code, "demeter_9999" in err) == (2, True)


def test_the_memory_backend_has_no_database_to_migrate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMETER_STORAGE_BACKEND", "memory")
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (2, "")
    assert "set DEMETER_DATABASE_URL" in err


def test_an_unreachable_database_fails_with_its_password_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMETER_DATABASE_URL", "postgresql+asyncpg://demeter:s3cret@127.0.0.1:9/x")
    code, out, err = run(capsys, "db", "check")
    assert (code, out) == (1, "")
    assert err.startswith("demeter-storage: error: the database postgresql+asyncpg://demeter:")
    assert "s3cret" not in err
    assert "Traceback" not in err


@pytest.fixture
def postgres_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty PostgreSQL database of its own, in ``DEMETER_DATABASE_URL``."""
    name = asyncio.run(create_postgres_database(postgres_url))
    url = database_url(postgres_url, name)
    monkeypatch.setenv("DEMETER_DATABASE_URL", url)
    yield url
    asyncio.run(drop_postgres_database(postgres_url, name))


@pytest.mark.postgres
def test_a_postgres_database_is_upgraded_and_checked(
    capsys: pytest.CaptureFixture[str], postgres_database: str
) -> None:
    code, out, _ = run(capsys, "db", "check")
    assert (code, f"no revision (behind the head {HEAD}" in out) == (1, True)
    code, out, _ = run(capsys, "db", "upgrade")
    assert (code, out.endswith(f"upgraded from no revision to {HEAD}\n")) == (0, True)
    assert run(capsys, "db", "check")[0] == 0
    _on(postgres_database, "DROP INDEX uq_demeter_images_idempotency_key")
    code, out, _ = run(capsys, "db", "check")
    assert (code, "  add_index uq_demeter_images_idempotency_key\n" in out) == (1, True)
