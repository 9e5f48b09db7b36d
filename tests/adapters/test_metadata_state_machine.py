"""The metadata repositories against the in-memory model: SQLite and PostgreSQL must agree."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository, create_engine
from demeter_storage.adapters.sql.schema import create_schema
from demeter_storage.ports import MetadataRepository
from demeter_storage.testing import metadata_state_machine

DEFAULT = settings(max_examples=60, stateful_step_count=40, deadline=None)
LONGER = settings(max_examples=500, stateful_step_count=60, deadline=None)


@contextlib.asynccontextmanager
async def _memory() -> AsyncIterator[MetadataRepository]:
    yield InMemoryMetadataRepository()


@contextlib.asynccontextmanager
async def _sqlite() -> AsyncIterator[MetadataRepository]:
    directory = tempfile.mkdtemp(prefix="demeter-metadata-sm-")
    try:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(directory) / 'meta.sqlite3'}")
        await create_schema(engine)
        repository = SqlAlchemyMetadataRepository(engine, owns_engine=True)
        yield repository
        await repository.aclose()
    finally:
        shutil.rmtree(directory)


def _postgres(url: str) -> contextlib.AbstractAsyncContextManager[MetadataRepository]:
    """A factory of repositories, each in a fresh schema of its own, dropped afterwards."""

    @contextlib.asynccontextmanager
    async def repository() -> AsyncIterator[MetadataRepository]:
        schema = f"demeter_sm_{uuid.uuid4().hex[:12]}"
        admin = create_engine(url)
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
        try:
            await create_schema(engine)
            repository = SqlAlchemyMetadataRepository(engine, owns_engine=True)
            yield repository
            await repository.aclose()
        finally:
            await engine.dispose()
            async with admin.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()

    return repository()


TestInMemoryRepositoryMachine = metadata_state_machine(_memory).TestCase
TestInMemoryRepositoryMachine.settings = settings(DEFAULT, max_examples=20)


def test_sqlite_agrees_with_the_model() -> None:
    run_state_machine_as_test(metadata_state_machine(_sqlite), settings=DEFAULT)


@pytest.mark.postgres
def test_postgres_agrees_with_the_model(postgres_url: str) -> None:
    run_state_machine_as_test(
        metadata_state_machine(lambda: _postgres(postgres_url)), settings=DEFAULT
    )


@pytest.mark.slow
def test_sqlite_agrees_with_the_model_over_longer_runs() -> None:
    run_state_machine_as_test(metadata_state_machine(_sqlite), settings=LONGER)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_agrees_with_the_model_over_longer_runs(postgres_url: str) -> None:
    run_state_machine_as_test(
        metadata_state_machine(lambda: _postgres(postgres_url)), settings=LONGER
    )
