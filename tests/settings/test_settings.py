"""Settings from the environment, and the composition root built from them."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from demeter_storage import ConfigurationError, Secret, StorageUnavailable
from demeter_storage.adapters.local.store import LocalImageStore
from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.adapters.memory.store import InMemoryImageStore
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.adapters.resilience.breaker import BreakerEvent
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.repository import SqlAlchemyMetadataRepository
from demeter_storage.bootstrap import build_service, build_stores
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.settings.storage import StorageSettings, settings_markdown
from demeter_storage.testing import SeaweedFSServer
from tests.service.conftest import jpeg

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_follow_the_seed_card() -> None:
    settings = StorageSettings.from_env({})
    assert settings.backend == "local"
    assert settings.bucket_original == "demeter-photos-original"
    assert settings.bucket_visualization == "demeter-photos-viz"
    assert settings.presigned_url_expiry_hours == 24
    assert settings.max_upload_bytes == 500 * 1024 * 1024
    assert (settings.breaker_failure_threshold, settings.breaker_reset_seconds) == (5, 60.0)
    assert settings.embedded_database_url.endswith("demeter-data/demeter.sqlite3")


def test_every_variable_is_read() -> None:
    settings = StorageSettings.from_env(
        {
            "DEMETER_STORAGE_BACKEND": "S3",
            "DEMETER_STORAGE_ROOT": "/srv/photos",
            "DEMETER_DATABASE_URL": "postgresql+asyncpg://db/photos",
            "DEMETER_CREATE_SCHEMA": "yes",
            "S3_BUCKET_ORIGINAL": "field-originals",
            "S3_BUCKET_VISUALIZATION": "field-viz",
            "S3_PRESIGNED_URL_EXPIRY_HOURS": "48",
            "DEMETER_MAX_UPLOAD_BYTES": "1_000_000",
            "DEMETER_THUMBNAILS": "off",
            "AWS_REGION": "eu-west-3",
            "AWS_ACCESS_KEY_ID": "AKID",
            "AWS_SECRET_ACCESS_KEY": "very-secret-value",
            "AWS_SESSION_TOKEN": "token-value",
            "S3_ENDPOINT_URL": "http://127.0.0.1:8333",
            "S3_ADDRESSING_STYLE": "path",
            "S3_MAX_CONCURRENCY": "32",
            "S3_PART_SIZE": str(16 * 1024 * 1024),
            "DEMETER_BREAKER_RESET_SECONDS": "30.5",
            "DEMETER_REDIS_URL": "redis://127.0.0.1:6379/1",
            "UNRELATED": "ignored",
            "S3_READ_TIMEOUT": "",
            "S3_PRESIGN_STABLE_SECONDS": "3600",
            "S3_ENGINE": "obstore",
        }
    )
    assert settings.s3_engine == "obstore"
    assert settings.s3_presign_stable_seconds == 3600
    assert settings.backend == "s3"
    assert settings.storage_root == Path("/srv/photos")
    assert settings.create_schema is True
    assert settings.thumbnails is False
    assert settings.max_upload_bytes == 1_000_000
    assert settings.aws_secret_access_key == Secret("very-secret-value")
    assert settings.breaker_reset_seconds == 30.5
    assert settings.s3_read_timeout == 60.0  # empty means default
    assert "very-secret-value" not in repr(settings)
    assert "token-value" not in repr(settings)


def test_the_stable_url_window_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="S3_PRESIGN_STABLE_SECONDS"):
        StorageSettings.from_env({"S3_PRESIGN_STABLE_SECONDS": "0"})


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env(
            {
                "DEMETER_STORAGE_BACKEND": "ftp",
                "S3_PRESIGNED_URL_EXPIRY_HOURS": "a day",
                "DEMETER_THUMBNAILS": "maybe",
                "S3_CONNECT_TIMEOUT": "soon",
                "AWS_SECRET_ACCESS_KEY": "",
            }
        )
    message = str(caught.value)
    assert "invalid settings (4)" in message
    for name in (
        "DEMETER_STORAGE_BACKEND",
        "S3_PRESIGNED_URL_EXPIRY_HOURS",
        "DEMETER_THUMBNAILS",
        "S3_CONNECT_TIMEOUT",
    ):
        assert name in message
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env(
            {
                "S3_PRESIGNED_URL_EXPIRY_HOURS": "169",
                "S3_BUCKET_VISUALIZATION": "demeter-photos-original",
                "AWS_SECRET_ACCESS_KEY": "only-the-secret",
                "S3_PART_SIZE": "1024",
                "DEMETER_RETRY_ATTEMPTS": "0",
                "S3_READ_TIMEOUT": "-1",
                "DEMETER_SIGNING_SECRET": "short",
                "DEMETER_MAX_UPLOAD_BYTES": "0",
                "DEMETER_RETRY_BACKOFF_SECONDS": "-1",
            }
        )
    message = str(caught.value)
    assert "invalid settings (9)" in message
    assert "only-the-secret" not in message
    assert "short" not in message.replace("shorter", "")


def test_the_configuration_pages_table_is_the_one_the_fields_describe() -> None:
    page = DOCS.read_text()
    start = page.index("<!-- settings table:")
    table = page[page.index("\n\n", start) + 2 : page.index("\n<!-- end of the settings table")]
    # Stale? Paste the output of demeter_storage.settings.settings_markdown() over it.
    assert table == settings_markdown()


async def test_the_embedded_default_is_local_files_and_sqlite(tmp_path: Path) -> None:
    service = await build_service(StorageSettings(storage_root=tmp_path / "data"))
    try:
        assert isinstance(service.originals, LocalImageStore)
        assert service.originals.root == str(tmp_path / "data" / "demeter-photos-original")
        assert isinstance(service.metadata, SqlAlchemyMetadataRepository)
        assert isinstance(service.thumbnails, PillowThumbnailMaker)
        response = await service.upload_original(
            jpeg(), "demo", UploadRequest("a.jpg", "image/jpeg")
        )
        assert response.url is not None
        assert response.url.startswith("http://127.0.0.1:8765/demeter-photos-original/demo/a.jpg?")
        assert (tmp_path / "data" / "demeter.sqlite3").exists()
    finally:
        await service.aclose()
    again = await build_service(StorageSettings(storage_root=tmp_path / "data"))
    assert (await again.list_session_images("demo")).items[0].s3_key == "demo/a.jpg"
    await again.aclose()


async def test_the_memory_backend_keeps_everything_in_memory() -> None:
    service = await build_service(StorageSettings(backend="memory", thumbnails=False))
    assert isinstance(service.originals, InMemoryImageStore)
    assert isinstance(service.metadata, InMemoryMetadataRepository)
    assert service.thumbnails is None
    await service.aclose()


@pytest.mark.parametrize("engine", ["boto3", "obstore"])
async def test_the_s3_backend_is_always_resilient_and_shares_one_circuit(
    seaweedfs_server: SeaweedFSServer, tmp_path: Path, engine: str
) -> None:
    if engine == "obstore":
        from demeter_storage.adapters.s3.obstore.store import ObstoreImageStore  # noqa: PLC0415

        expected_inner: type = ObstoreImageStore
    else:
        expected_inner = S3ImageStore
    settings = StorageSettings.from_env(
        {
            "DEMETER_STORAGE_BACKEND": "s3",
            "DEMETER_STORAGE_ROOT": str(tmp_path),
            "S3_ENDPOINT_URL": seaweedfs_server.endpoint_url,
            "S3_ADDRESSING_STYLE": "path",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": seaweedfs_server.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweedfs_server.secret_key.reveal(),
            "S3_BUCKET_ORIGINAL": f"boot-originals-{engine}",
            "S3_BUCKET_VISUALIZATION": f"boot-viz-{engine}",
            "S3_CREATE_BUCKETS": "true",
            "S3_ENGINE": engine,
        }
    )
    service = await build_service(settings)
    try:
        for store in (service.originals, service.visualizations):
            assert isinstance(store, ResilientImageStore)
            assert isinstance(store.inner, expected_inner)
        assert service.originals.breaker is service.visualizations.breaker  # type: ignore[attr-defined]
        response = await service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/jpeg"))
        assert response.bucket == f"boot-originals-{engine}"
        assert await service.download_original("s/a.jpg") == jpeg()
    finally:
        await service.aclose()


def test_the_obstore_engine_without_obstore_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "demeter_storage.adapters.s3.obstore.store", None)
    settings = StorageSettings(backend="s3", s3_engine="obstore", aws_region="us-east-1")
    with pytest.raises(ConfigurationError, match=r"demeter-storage\[fast\]"):
        build_stores(settings)


def test_boto3s_endpoint_variables_are_followed_visibly() -> None:
    both = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2"}
    assert StorageSettings.from_env(both).s3_endpoint_url == "http://127.0.0.1:2"
    generic = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    assert StorageSettings.from_env(generic).s3_endpoint_url == "http://127.0.0.1:1"
    ours = {**both, "S3_ENDPOINT_URL": "http://127.0.0.1:3"}
    assert StorageSettings.from_env(ours).s3_endpoint_url == "http://127.0.0.1:3"
    assert StorageSettings.from_env({}).s3_endpoint_url is None


def test_a_storage_root_given_as_a_string_becomes_a_path() -> None:
    assert StorageSettings(storage_root="photos").storage_root == Path("photos")  # type: ignore[arg-type]


def test_a_redis_url_without_the_redis_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demeter_storage.adapters.resilience.breaker import CircuitBreaker  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"demeter-storage\[redis\]"):
        CircuitBreaker("no-redis", redis_url="redis://127.0.0.1:6379/0")


async def test_a_postgresql_pool_holds_a_connection_per_concurrent_call(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = StorageSettings(
        backend="memory",
        database_url=postgres_url,
        create_schema=True,
        s3_max_concurrency=24,
        storage_root=tmp_path,
    )
    service = await build_service(settings)
    try:
        assert isinstance(service.metadata, SqlAlchemyMetadataRepository)
        assert service.metadata.engine.pool.size() == 24  # type: ignore[attr-defined]
    finally:
        await service.aclose()


@pytest.mark.parametrize("engine", ["boto3", "obstore"])
async def test_the_s3_stores_breaker_reports_its_events_to_the_hook_given(
    tmp_path: Path, engine: str
) -> None:
    with socket.socket() as unused:  # a loopback port nothing listens on: connections refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings = StorageSettings(
        backend="s3",
        storage_root=tmp_path,
        database_url="sqlite+aiosqlite:///:memory:",
        s3_engine=engine,
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_addressing_style="path",
        s3_connect_timeout=0.5,
        aws_region="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=Secret("not-a-real-secret"),
        breaker_failure_threshold=2,
        retry_attempts=1,
    )
    events: list[BreakerEvent] = []
    service = await build_service(settings, on_breaker_event=events.append)
    try:
        for _ in range(2):
            with pytest.raises(StorageUnavailable):
                await service.originals.put("s/a.jpg", b"a photo", content_type="image/jpeg")
        # The visualizations' store shares the circuit: it fails fast now, without a request.
        with pytest.raises(StorageUnavailable, match="failing fast without a request") as fast:
            await service.visualizations.get("s/viz_a.jpg")
        assert fast.value.retry_after is not None
    finally:
        await service.aclose()
    states = [event.state for event in events if event.kind == "state_changed"]
    assert states == ["open"]
    assert [event.failure_count for event in events if event.kind == "failed"] == [1, 2]
    assert {event.name for event in events} == {service.originals.breaker.name}  # type: ignore[attr-defined]
