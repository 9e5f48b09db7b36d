"""The package's Alembic migrations: no drift from the models, round trips, locks, host apps.

Databases made before migrations (by ``create_all``) are upgraded in
test_schema_upgrade.py; this module checks the migrations themselves on SQLite
and PostgreSQL, and the host-app example of docs/examples/host_alembic.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import alembic.config
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from demeter_storage.adapters.sql import migrations
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import TABLE_NAME, create_schema, metadata
from demeter_storage.domain.errors import ConfigurationError
from tests.adapters.sql.databases import (
    create_postgres_database,
    database_url,
    drop_postgres_database,
)
from tests.adapters.sql.postgres_schema import until_waiting_on_a_lock

HOST_EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "host_alembic"
T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
FIRST, SECOND = "demeter_0001", "demeter_0002"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database: an SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
        return
    server_url = request.getfixturevalue("postgres_url")
    name = await create_postgres_database(server_url)
    try:
        yield database_url(server_url, name)
    finally:
        await drop_postgres_database(server_url, name)


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database)
    yield engine
    await engine.dispose()


def test_the_migrations_are_one_line_of_revisions() -> None:
    script = migrations.script_directory()
    assert script.get_heads() == [SECOND]
    assert migrations.head() == SECOND
    chain = [revision.revision for revision in script.walk_revisions()]
    assert chain == [SECOND, FIRST]
    assert script.get_revision(FIRST).branch_labels == {"demeter_storage"}


async def test_an_empty_database_upgraded_has_no_drift_from_the_models(
    engine: AsyncEngine,
) -> None:
    await migrations.upgrade(engine)

    def compare(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts=migrations.context_options())
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(compare) == []
        tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert tables == {TABLE_NAME, migrations.VERSION_TABLE}  # no alembic_version: the host's
    assert await migrations.current(engine) == (SECOND,)
    status = await migrations.status(engine)
    assert (status.ok, status.differences) == (True, ())


async def test_a_change_made_by_hand_is_drift(engine: AsyncEngine) -> None:
    await migrations.upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(sa.text(f"ALTER TABLE {TABLE_NAME} ADD COLUMN extra INTEGER"))
        await connection.execute(sa.text("DROP INDEX ix_demeter_images_parent"))
    status = await migrations.status(engine)
    assert not status.ok
    assert sorted(status.differences) == [
        "add_index ix_demeter_images_parent",
        f"remove_column {TABLE_NAME} extra",
    ]


async def _columns(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: {column["name"] for column in sa.inspect(sync).get_columns(TABLE_NAME)}
        )


async def test_downgrade_and_upgrade_round_trip_keeps_the_rows(engine: AsyncEngine) -> None:
    await create_schema(engine)
    columns = await _columns(engine)
    repository = SqlAlchemyMetadataRepository(engine)
    image_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.run_sync(_insert_with_model, image_id)

    await migrations.downgrade(engine, FIRST)
    assert await migrations.current(engine) == (FIRST,)
    assert await _columns(engine) == columns - {"etag", "idempotency_key"}

    await migrations.upgrade(engine)
    assert await migrations.current(engine) == (SECOND,)
    assert await _columns(engine) == columns
    record = await repository.get(image_id)
    assert record is not None
    assert (record.key, record.etag) == ("s1/a.jpg", None)  # a downgrade loses what it drops
    assert (await migrations.status(engine)).ok

    await migrations.downgrade(engine, "base")
    assert await migrations.current(engine) == ()
    async with engine.connect() as connection:
        assert not await connection.run_sync(lambda sync: sa.inspect(sync).has_table(TABLE_NAME))
    await create_schema(engine)
    assert await repository.get(image_id) is None
    assert (await migrations.status(engine)).ok


def _insert_with_model(connection: sa.Connection, image_id: uuid.UUID) -> None:
    connection.execute(
        metadata.tables[TABLE_NAME]
        .insert()
        .values(
            image_id=image_id,
            kind="original",
            session_id="s1",
            bucket="demeter-photos-original",
            key="s1/a.jpg",
            filename="a.jpg",
            content_type="image/jpeg",
            size=3,
            sha256="a" * 64,
            state="ready",
            created_at=T0,
            updated_at=T0,
            user_metadata={},
            etag='"abc"',
            idempotency_key="k1",
        )
    )


async def test_upgrades_started_at_once_all_succeed(database: str) -> None:
    engines = [create_engine(database) for _ in range(4)]
    try:
        await asyncio.gather(*(create_schema(engine) for engine in engines))
        assert await migrations.current(engines[0]) == (SECOND,)
        assert (await migrations.status(engines[0])).ok
    finally:
        for engine in engines:
            await engine.dispose()


async def test_sqlite_upgrades_wait_for_the_migration_lock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    holder = create_engine(url)
    # No busy timeout: an upgrade that finds the lock taken fails at once.
    impatient = create_async_engine(url, connect_args={"timeout": 0})
    try:
        async with migrations.locked(holder):
            with pytest.raises(sa.exc.OperationalError, match="locked"):
                await migrations.upgrade(impatient)
        await migrations.upgrade(impatient)
        assert await migrations.current(holder) == (SECOND,)
    finally:
        await holder.dispose()
        await impatient.dispose()


@pytest.mark.postgres
async def test_postgres_upgrades_wait_for_the_migration_lock(
    admin: AsyncEngine, schema: str, postgres_url: str
) -> None:
    def in_schema(name: str) -> AsyncEngine:
        settings = {"search_path": schema, "application_name": name}
        return create_engine(postgres_url, connect_args={"server_settings": settings})

    holder, waiter = in_schema("holder"), in_schema(schema)
    try:
        async with migrations.locked(holder):
            upgrade = asyncio.create_task(migrations.upgrade(waiter))
            await until_waiting_on_a_lock(admin, schema)
            assert not upgrade.done()
        await upgrade
        assert await migrations.current(holder) == (SECOND,)
    finally:
        await holder.dispose()
        await waiter.dispose()


async def test_a_database_a_newer_release_migrated_is_refused(engine: AsyncEngine) -> None:
    await create_schema(engine)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = 'demeter_9999'")
        )
    with pytest.raises(ConfigurationError, match=r"demeter_9999.*newer release"):
        await create_schema(engine)
    with pytest.raises(ConfigurationError, match="demeter_9999"):
        await migrations.downgrade(engine, FIRST)
    with pytest.raises(ConfigurationError, match="demeter_9999"):
        await migrations.refuse_newer(engine)
    status = await migrations.status(engine)
    assert (status.current, status.unknown, status.ok) == (
        ("demeter_9999",),
        ("demeter_9999",),
        False,
    )
    assert {"etag", "idempotency_key"} <= await _columns(engine)  # nothing was downgraded


async def test_an_upgrade_to_a_revision_stops_there(engine: AsyncEngine) -> None:
    await migrations.refuse_newer(engine)  # never migrated: not refused
    await migrations.upgrade(engine, FIRST)
    await migrations.refuse_newer(engine)  # behind: not refused either
    assert await migrations.current(engine) == (FIRST,)
    status = await migrations.status(engine)
    assert (status.at_head, status.differences, status.table_exists) == (False, (), True)
    await migrations.upgrade(engine)
    assert await migrations.current(engine) == (SECOND,)


def test_offline_mode_prints_the_sql_of_every_revision() -> None:
    buffer = io.StringIO()
    config = migrations.alembic_config("postgresql+asyncpg://demeter@db.invalid/photos")
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert f"CREATE TABLE {migrations.VERSION_TABLE}" in sql
    assert f"CREATE TABLE {TABLE_NAME}" in sql
    assert "CREATE UNIQUE INDEX uq_demeter_images_idempotency_key" in sql
    assert f"UPDATE {migrations.VERSION_TABLE} SET version_num='{SECOND}'" in sql


def test_the_include_name_hooks_split_the_tables() -> None:
    for name in (TABLE_NAME, migrations.VERSION_TABLE):
        assert migrations.only_demeter_storage(name, "table", {})
        assert not migrations.not_demeter_storage(name, "table", {})
    assert not migrations.only_demeter_storage("orders", "table", {})
    assert migrations.not_demeter_storage("orders", "table", {})
    assert migrations.not_demeter_storage("public", "schema", {})


# The host app's example (docs/examples/host_alembic), through Alembic's own command line.


@pytest.fixture
def host_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example; its two environments read their URLs from the environment."""
    copy = tmp_path / "host"
    shutil.copytree(HOST_EXAMPLE, copy)
    monkeypatch.chdir(copy)
    return copy / "alembic.ini"


def _alembic(ini: Path, *argv: str) -> None:
    alembic.config.main(argv=["-c", str(ini), *argv])  # exits non-zero on failure


def _run_the_host_example(ini: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DEMETER_DATABASE_URL", url)
    _alembic(ini, "upgrade", "head")  # the app's own
    _alembic(ini, "-n", "demeter_storage", "upgrade", "head")  # ours, beside it
    _alembic(ini, "check")  # the app's autogenerate leaves our tables alone
    _alembic(ini, "-n", "demeter_storage", "check")  # ours leaves the app's alone

    async def versions() -> tuple[set[str], tuple[str, ...], set[str]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                host = await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
                tables = await connection.run_sync(
                    lambda sync: set(sa.inspect(sync).get_table_names())
                )
                hosts = {row[0] for row in host}
            return hosts, await migrations.current(engine), tables
        finally:
            await engine.dispose()

    host, ours, tables = asyncio.run(versions())
    assert (host, ours) == ({"host_0001"}, (SECOND,))
    assert tables == {"orders", "alembic_version", TABLE_NAME, migrations.VERSION_TABLE}
    _alembic(ini, "-n", "demeter_storage", "downgrade", FIRST)
    with pytest.raises(SystemExit):  # behind: alembic check fails, as `db check` does
        _alembic(ini, "-n", "demeter_storage", "check")
    _alembic(ini, "-n", "demeter_storage", "upgrade", "head")
    _alembic(ini, "check")


def test_a_host_app_runs_our_migrations_beside_its_own_on_sqlite(
    host_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_the_host_example(host_app, f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}", monkeypatch)


@pytest.mark.postgres
def test_a_host_app_runs_our_migrations_beside_its_own_on_postgres(
    host_app: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = asyncio.run(create_postgres_database(postgres_url))
    try:
        _run_the_host_example(host_app, database_url(postgres_url, name), monkeypatch)
    finally:
        asyncio.run(drop_postgres_database(postgres_url, name))
