"""PostgreSQL: record writes that arrive together share one statement, each caller its own outcome.

Each test holds the first write on a row lock, queues more behind it, then
lets it go: the queued writes are then sent together, as one statement.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from demeter_storage import StorageUnavailable
from demeter_storage.adapters.sql.repository import (
    SqlAlchemyMetadataRepository,
    create_engine,
)
from demeter_storage.adapters.sql.schema import TABLE_NAME
from demeter_storage.domain.errors import ImageAlreadyExists, ValidationError
from demeter_storage.domain.records import ImageRecord, ImageState
from demeter_storage.testing.metadata_contract import T0, make_record
from tests.adapters.sql.postgres_schema import (
    key_locked,
    repository_in,
    terminate_backends,
    until_waiting_on_a_lock,
)

pytestmark = pytest.mark.postgres

T = TypeVar("T")
SHA = "b" * 64
T1 = T0 + timedelta(seconds=5)


def _statements_sent(repository: SqlAlchemyMetadataRepository) -> int:
    statements = repository._statements
    assert statements is not None, "asyncpg engines write through AsyncpgStatements"
    return statements.batches_written


@asynccontextmanager
async def _row_locked(postgres_url: str, schema: str, image_id: uuid.UUID) -> AsyncIterator[None]:
    """The record's row locked by another transaction until the block ends."""
    blocker = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with blocker.begin() as holding:
            await holding.execute(
                sa.text(f"SELECT 1 FROM {TABLE_NAME} WHERE image_id = :id FOR UPDATE"),
                {"id": image_id},
            )
            yield
    finally:
        await blocker.dispose()


async def _outcomes(writes: list[Awaitable[T]]) -> list[T | BaseException]:
    return await asyncio.gather(*writes, return_exceptions=True)


async def _queued_behind_an_insert(
    postgres_url: str,
    admin: AsyncEngine,
    schema: str,
    repository: SqlAlchemyMetadataRepository,
    queued: list[ImageRecord],
) -> list[Any]:
    """Hold one insert on a lock, queue ``queued`` behind it, release; their outcomes."""
    first = make_record(key="s1/first.jpg")
    async with key_locked(postgres_url, schema, first) as holding:
        held = asyncio.create_task(repository.add(first))
        await until_waiting_on_a_lock(admin, schema)
        writes = [asyncio.create_task(repository.add(record)) for record in queued]
        await asyncio.sleep(0.05)  # every queued write has reached the writer
        await holding.rollback()
    await held
    return await _outcomes(writes)


async def test_inserts_that_arrive_during_one_go_as_one_statement(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema) as repository:
        records = [make_record(key=f"s1/photo-{n:02d}.jpg") for n in range(20)]
        outcomes = await _queued_behind_an_insert(postgres_url, admin, schema, repository, records)
        assert outcomes == [None] * 20
        assert _statements_sent(repository) == 2  # the held one, then the twenty
        for record in records:
            assert await repository.get(record.image_id) == record


async def test_a_key_taken_inside_a_batch_is_refused_to_its_caller_alone(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema) as repository:
        existing = make_record(key="s1/existing.jpg")
        await repository.add(existing)
        twins = [make_record(key="s1/twin.jpg"), make_record(key="s1/twin.jpg")]
        alone = make_record(key="s1/alone.jpg")
        late = make_record(key="s1/existing.jpg")
        outcomes = await _queued_behind_an_insert(
            postgres_url, admin, schema, repository, [*twins, alone, late]
        )
        assert _statements_sent(repository) == 3  # existing, the held one, the four
        assert outcomes[0] is None  # the first twin in the batch wins the key
        refused = outcomes[1]
        assert isinstance(refused, ImageAlreadyExists)
        assert refused.existing_image_id == twins[0].image_id
        assert outcomes[2] is None
        assert isinstance(outcomes[3], ImageAlreadyExists)
        assert outcomes[3].existing_image_id == existing.image_id
        assert await repository.get(twins[1].image_id) is None
        assert await repository.get(alone.image_id) == alone


async def test_a_row_the_batch_refuses_fails_alone_and_the_others_are_written(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema) as repository:
        good = [make_record(key=f"s1/good-{n}.jpg") for n in range(3)]
        orphan = make_record(key="s1/orphan.jpg", parent_id=uuid.uuid4())  # no such parent
        outcomes = await _queued_behind_an_insert(
            postgres_url, admin, schema, repository, [good[0], orphan, good[1], good[2]]
        )
        assert isinstance(outcomes[1], ValidationError)
        assert "names no image record" in str(outcomes[1])
        assert [outcomes[0], *outcomes[2:]] == [None, None, None]
        for record in good:
            assert await repository.get(record.image_id) == record
        assert await repository.get(orphan.image_id) is None


async def test_updates_that_arrive_during_one_go_as_one_statement(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema, pool_size=2) as repository:
        records = [make_record(key=f"s1/photo-{n:02d}.jpg") for n in range(12)]
        for record in records:
            await repository.add(record)
        done = make_record(key="s1/done.jpg")
        await repository.add(done)
        await repository.mark_ready(done.image_id, size=1, sha256=SHA, thumbnail_key=None, now=T1)
        before = _statements_sent(repository)

        def ready(image_id: uuid.UUID, size: int) -> asyncio.Task[ImageRecord | None]:
            return asyncio.create_task(
                repository.mark_ready(
                    image_id, size=size, sha256=SHA, thumbnail_key=f"t/{size}.jpg", now=T1
                )
            )

        async with _row_locked(postgres_url, schema, records[0].image_id):
            held = ready(records[0].image_id, 0)
            await until_waiting_on_a_lock(admin, schema)
            queued = [ready(record.image_id, n) for n, record in enumerate(records) if n]
            queued += [ready(done.image_id, 99), ready(uuid.uuid4(), 98)]
            await asyncio.sleep(0.05)
        outcomes = [await held, *await _outcomes(queued)]
        assert _statements_sent(repository) - before == 2
        assert outcomes[-2:] == [None, None]  # already ready; no such record
        for n, (record, outcome) in enumerate(zip(records, outcomes, strict=False)):
            stored = await repository.get(record.image_id)
            assert outcome == stored
            assert stored is not None and stored.state is ImageState.READY
            assert (stored.size, stored.thumbnail_key, stored.updated_at) == (n, f"t/{n}.jpg", T1)
        stored_done = await repository.get(done.image_id)
        assert stored_done is not None and stored_done.size == 1


async def test_a_connection_lost_under_a_batch_fails_it_and_the_next_gets_a_new_one(
    postgres_url: str, admin: AsyncEngine, schema: str
) -> None:
    async with repository_in(postgres_url, schema, ping_idle_after=3600) as repository:
        first = make_record(key="s1/first.jpg")
        queued = [make_record(key=f"s1/queued-{n}.jpg") for n in range(3)]
        async with key_locked(postgres_url, schema, first):
            held = asyncio.create_task(repository.add(first))
            await until_waiting_on_a_lock(admin, schema)
            writes = [asyncio.create_task(repository.add(record)) for record in queued]
            await asyncio.sleep(0.05)
            await terminate_backends(admin, schema, waiting_on_a_lock=True)
            with pytest.raises(StorageUnavailable, match="cannot reach the database"):
                await held
            assert await _outcomes(writes) == [None, None, None]
        for record in queued:
            assert await repository.get(record.image_id) == record


async def test_a_connection_lost_under_a_multi_row_batch_is_not_retried_row_by_row(
    postgres_url: str, admin: AsyncEngine, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with repository_in(postgres_url, schema, ping_idle_after=3600) as repository:
        statements = repository._statements
        assert statements is not None
        rows_alone: list[object] = []
        insert_one = statements._insert_one

        async def counted(session: Any, arguments: Any) -> bool:
            rows_alone.append(arguments)
            return await insert_one(session, arguments)

        first = make_record(key="s1/first.jpg")
        locked = make_record(key="s1/locked.jpg")
        batch = [locked, make_record(key="s1/b.jpg"), make_record(key="s1/c.jpg")]
        async with (
            key_locked(postgres_url, schema, locked),
            key_locked(postgres_url, schema, first) as holding_first,
        ):
            held = asyncio.create_task(repository.add(first))
            await until_waiting_on_a_lock(admin, schema)
            writes = [asyncio.create_task(repository.add(record)) for record in batch]
            await asyncio.sleep(0.05)
            monkeypatch.setattr(statements, "_insert_one", counted)
            await holding_first.rollback()
            await held
            await until_waiting_on_a_lock(admin, schema)  # the batch of three, on locked's key
            await terminate_backends(admin, schema, waiting_on_a_lock=True)
            outcomes = await _outcomes(writes)
        assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)
        assert rows_alone == []  # failed as one, never retried row by row on a dead connection
