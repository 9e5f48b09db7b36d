"""Secrets never leak: a full session at DEBUG, every log line, repr and error message scanned.

Two sessions, as a host app would run them: one on S3 (moto, in-process)
with an access key, a secret key and a session token; one on the local store
with its URL signing secret, serving signed URLs over the ASGI app. Everything
either writes to a log, returns as an error or shows in a repr is searched for
the three secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
from moto import mock_aws

from demeter_storage import ConfigurationError, StorageError, StorageUnavailable
from demeter_storage.adapters.s3.config import S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.adapters.sql.engine import create_engine
from demeter_storage.bootstrap import build_service
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.settings.storage import StorageSettings
from demeter_storage.web.app import SignedUrlApp
from tests.service.conftest import jpeg

SECRET_KEY = "SeCrEtKeY-0123456789abcdefghijklmnopqrstuv"
SESSION_TOKEN = "SeSsIoNtOkEn-FwoGZXIvYXdzEJr//////////wEaDN0tAreal"
SIGNING_SECRET = "SiGnInGsEcReT-7f3a9c2e4b6d8f0a1c3e5b7d9f1a3c5e"
SECRETS = (SECRET_KEY, SESSION_TOKEN, SIGNING_SECRET)


class Seen:
    """Everything a session exposed: log messages, error texts, reprs."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def error(self, exc: BaseException) -> None:
        self.texts += [str(exc), repr(exc)]
        if exc.__cause__ is not None:
            self.error(exc.__cause__)

    def reprs(self, *objects: Any) -> None:
        self.texts += [repr(o) for o in objects] + [str(o) for o in objects]

    @contextlib.contextmanager
    def expect_error(self) -> Iterator[None]:
        try:
            yield
        except (StorageError, TypeError, ValueError) as exc:
            self.error(exc)
        else:
            raise AssertionError("the call was expected to fail")


def leaks(texts: list[str]) -> list[tuple[str, str]]:
    return [(secret[:12], text[:160]) for text in texts for secret in SECRETS if secret in text]


async def exercise(service: ImageService, seen: Seen) -> None:
    """Everything a host app does in a day, including its failures."""
    photo = jpeg()
    image = await service.upload_original(photo, "s1", UploadRequest("a.jpg", "image/jpeg"))
    viz = await service.upload_visualization(photo, "s1", "a.jpg", parent_id=image.image_id)
    assert await service.download_original("s1/a.jpg") == photo
    url = await service.generate_presigned_url("s1/a.jpg", expiry_hours=2)
    upload = await service.begin_direct_upload("s1", "d.jpg", "image/jpeg", len(photo))
    seen.reprs(service, service.originals, service.metadata, image, viz, upload)
    with seen.expect_error():
        await service.download_original("s1/missing.jpg")
    with seen.expect_error():
        await service.generate_presigned_url("s1/a.jpg", expiry_hours=500)
    with seen.expect_error():
        await service.upload_original(b"not an image", "s1", UploadRequest("b.jpg", "image/jpeg"))
    with seen.expect_error():
        await service.complete_direct_upload(upload.image_id)
    with seen.expect_error():
        await service.store_for("someone-elses-bucket").head("s1/a.jpg")
    await service.apply_lifecycle()
    await service.reconcile()
    await service.audit()
    assert await service.delete_image(image.image_id)
    # Handed to a client, never logged: with temporary credentials, a presigned
    # URL and an upload form must carry the session token for S3 to accept them.
    assert url
    assert upload.fields


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "s3transfer", "demeter_storage", "aiosqlite"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(repr(record.exc_info[1]))
    return texts


async def test_an_s3_session_with_temporary_credentials_leaks_nothing(
    debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    seen = Seen()
    settings = StorageSettings.from_env(
        {
            "DEMETER_STORAGE_BACKEND": "s3",
            "DEMETER_STORAGE_ROOT": str(tmp_path),
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEKEYID0001",
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "S3_CREATE_BUCKETS": "true",
        }
    )
    seen.reprs(settings)
    with mock_aws():
        service = await build_service(settings)
        try:
            await exercise(service, seen)
        finally:
            await service.aclose()
    with seen.expect_error():
        StorageSettings.from_env({"AWS_SECRET_ACCESS_KEY": SECRET_KEY})  # no key id
    logs = log_texts(debug_logs)
    assert sum(len(t) for t in logs) > 10_000, "DEBUG logging was not on"
    assert any("botocore" in r.name for r in debug_logs.records)
    assert leaks(logs + seen.texts) == []


async def test_a_local_session_leaks_nothing_of_its_signing_secret(
    debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    seen = Seen()
    settings = StorageSettings.from_env(
        {"DEMETER_STORAGE_ROOT": str(tmp_path), "DEMETER_SIGNING_SECRET": SIGNING_SECRET}
    )
    seen.reprs(settings)
    service = await build_service(settings)
    try:
        await exercise(service, seen)
        photo = jpeg(32, 32)
        await service.upload_original(photo, "s2", UploadRequest("p.jpg", "image/jpeg"))
        url = await service.generate_presigned_url("s2/p.jpg")
        app = SignedUrlApp.for_service(service)
        seen.reprs(app, await service.originals.url_signer())  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as web:
            good = await web.get(url.removeprefix("http://127.0.0.1:8765"))
            tampered = await web.get(url[:-2] + "00")
        assert good.status_code == 200
        assert tampered.status_code == 403
        seen.texts += [tampered.text, str(tampered.headers)]
        with seen.expect_error():
            await service.originals.verify_url(url[:-2] + "00")  # type: ignore[attr-defined]
    finally:
        await service.aclose()
    with seen.expect_error():
        StorageSettings.from_env({"DEMETER_SIGNING_SECRET": SIGNING_SECRET[:10]})  # too short
    logs = log_texts(debug_logs)
    assert logs
    assert leaks(logs + seen.texts) == []


# Issue 19, item 6: passwords inside the database, Redis and S3 endpoint URLs.

DB_PASSWORD = "DbPaSsWoRd-4f1c9e7a2b"
REDIS_PASSWORD = "ReDiSpAsSwOrD-8d3b6a1f0c"
ENDPOINT_PASSWORD = "EnDpOiNtPaSs-5e2a7c9b1d"
URL_PASSWORDS = (DB_PASSWORD, REDIS_PASSWORD, ENDPOINT_PASSWORD)


def url_leaks(texts: list[str]) -> list[tuple[str, str]]:
    return [
        (password[:12], text[:200])
        for text in texts
        for password in URL_PASSWORDS
        if password in text
    ]


def with_password(url: str, password: str) -> tuple[str, str]:
    """``url`` with ``password`` in its userinfo, unless it has one (then that one)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user = parts.username or "default"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl(), password


def unused_port() -> int:
    with socket.socket() as unused:  # a loopback port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port: int = unused.getsockname()[1]
    return port


def test_repr_of_the_settings_masks_url_passwords() -> None:
    settings = StorageSettings(
        database_url=f"postgresql+asyncpg://photos:{DB_PASSWORD}@db.internal:5432/photos",
        redis_url=f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0",
    )
    texts = [repr(settings), str(settings), repr(attrs.evolve(settings, backend="memory"))]
    assert url_leaks(texts) == []
    assert "postgresql+asyncpg://photos:********@db.internal:5432/photos" in texts[0]
    assert "redis://:********@cache.internal:6379/0" in texts[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEMETER_DATABASE_URL", f"postgresql+asyncpg://u:{DB_PASSWORD}@h:port/db"),
        ("DEMETER_DATABASE_URL", f"nosuchdialect://u:{DB_PASSWORD}@h/db"),
        ("DEMETER_DATABASE_URL", f"postgresql+asyncpg://u:{DB_PASSWORD}/x@h:99999/db"),
        ("DEMETER_DATABASE_URL", f"sqlite:///x.db?password={DB_PASSWORD}"),
        ("DEMETER_REDIS_URL", f"redis://:{REDIS_PASSWORD}@h:port/0"),
        ("DEMETER_REDIS_URL", f"http://u:{REDIS_PASSWORD}@h:6379"),
        ("DEMETER_REDIS_URL", f"redis://u:{REDIS_PASSWORD}#x@h:6379/0"),
        ("DEMETER_REDIS_URL", f"redis://h:6379/db?password={REDIS_PASSWORD}"),
        ("S3_ENDPOINT_URL", f"http://ak:{ENDPOINT_PASSWORD}@127.0.0.1:8333"),
        ("S3_ENDPOINT_URL", f"http://ak:{ENDPOINT_PASSWORD}@h:99999"),
        ("DEMETER_PUBLIC_BASE_URL", f"http://u:{ENDPOINT_PASSWORD}@h"),
    ],
)
def test_a_refused_url_is_named_with_its_password_masked(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env({variable: value})
    texts = [str(caught.value), repr(caught.value)]
    assert variable in texts[0]
    assert "********" in texts[0]
    assert url_leaks(texts) == []


def test_boto3s_endpoint_variable_with_credentials_is_refused_masked() -> None:
    with pytest.raises(ConfigurationError, match="S3_ENDPOINT_URL") as caught:
        StorageSettings.from_env({"AWS_ENDPOINT_URL": f"http://ak:{ENDPOINT_PASSWORD}@h:9000"})
    assert url_leaks([str(caught.value)]) == []


async def test_a_circuit_named_after_a_url_with_credentials_keeps_them_out_of_redis(
    redis_url: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis  # noqa: PLC0415 - the optional redis extra

    from demeter_storage.adapters.resilience.breaker import BreakerEvent, CircuitBreaker  # noqa: PLC0415

    shared, redis_password = with_password(redis_url, REDIS_PASSWORD)
    marker = uuid.uuid4().hex[:8]
    events: list[BreakerEvent] = []
    breaker = CircuitBreaker(
        f"leak-{marker}:http://ak:{ENDPOINT_PASSWORD}@127.0.0.1:1",
        threshold=1,
        redis_url=shared,
        on_event=events.append,
    )
    seen = Seen()
    try:
        with seen.expect_error():
            await breaker.call(_unavailable)
        with seen.expect_error():
            await breaker.call(_unavailable)  # open: fails fast, naming the circuit
        status = await breaker.status()
        assert status.state == "open"
        assert status.shared
        seen.reprs(breaker, status, *events)
    finally:
        await breaker.aclose()
    client = aioredis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"cbr::leak-{marker}*")]
        for key in keys:
            await client.delete(key)
    finally:
        await client.aclose()
    assert keys, "the circuit's state was not shared through Redis"
    assert url_leaks(keys + seen.texts + log_texts(debug_logs)) == []
    assert redis_password not in " ".join(keys + seen.texts + log_texts(debug_logs))


async def _unavailable() -> None:
    raise StorageUnavailable("the test's backend is down")


async def test_an_s3_session_with_url_passwords_leaks_nothing(
    redis_url: str,
    postgres_url: str,
    debug_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DEBUG logs, reprs, errors, Redis keys and `doctor` of a session whose URLs hold passwords."""
    import redis.asyncio as aioredis  # noqa: PLC0415 - the optional redis extra

    from demeter_storage.cli import main  # noqa: PLC0415

    shared, redis_password = with_password(redis_url, REDIS_PASSWORD)
    database, db_password = with_password(postgres_url, DB_PASSWORD)
    port = unused_port()
    environ = {
        "DEMETER_STORAGE_BACKEND": "s3",
        "DEMETER_STORAGE_ROOT": str(tmp_path),
        "DEMETER_DATABASE_URL": database,
        "DEMETER_REDIS_URL": shared,
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "S3_ADDRESSING_STYLE": "path",
        "S3_CONNECT_TIMEOUT": "0.5",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_BUCKET_ORIGINAL": f"leaks-{uuid.uuid4().hex[:8]}",
        "DEMETER_BREAKER_FAILURE_THRESHOLD": "1",
        "DEMETER_RETRY_ATTEMPTS": "1",
        "DEMETER_THUMBNAILS": "0",
    }
    seen = Seen()
    settings = StorageSettings.from_env(environ)
    seen.reprs(settings)
    service = await build_service(settings)
    try:
        seen.reprs(service, service.originals, service.metadata)
        seen.reprs(service.metadata.engine, service.metadata.engine.url)  # type: ignore[attr-defined]
        with seen.expect_error():
            await service.originals.put("s/a.jpg", b"a photo", content_type="image/jpeg")
        with seen.expect_error():  # the circuit is open: it fails fast, naming itself
            await service.visualizations.get("s/viz_a.jpg")
        name = service.originals.breaker.name  # type: ignore[attr-defined]
        assert name == f"demeter-storage:s3:http://127.0.0.1:{port}"
        with contextlib.suppress(StorageError):
            await service.metadata.list_session("s", limit=1)
    finally:
        await service.aclose()
    client = aioredis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=f"cbr::{name}*")]
        for key in keys:
            await client.delete(key)
    finally:
        await client.aclose()
    assert keys, "the circuit's state was not shared through Redis"
    # `doctor` on the same settings, and on settings it must refuse.
    for variable, value in {**environ, "DEMETER_STORAGE_BACKEND": "memory"}.items():
        monkeypatch.setenv(variable, value)
    # (the table may be missing from this database: a problem, not a leak)
    await asyncio.to_thread(main, ["doctor"])
    monkeypatch.setenv("DEMETER_REDIS_URL", f"redis://:{REDIS_PASSWORD}@h:port/0")
    assert await asyncio.to_thread(main, ["doctor"]) == 1
    out, err = capsys.readouterr()
    assert "postgresql+asyncpg://" in out
    texts = [*keys, *seen.texts, *log_texts(debug_logs), out, err]
    assert sum(len(t) for t in log_texts(debug_logs)) > 1000, "DEBUG logging was not on"
    for password in (redis_password, db_password, SECRET_KEY):
        assert password not in "\n".join(texts), password[:12]


async def test_a_driver_error_quoting_the_database_url_is_masked_by_build_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demeter_storage import bootstrap  # noqa: PLC0415

    url = f"postgresql+asyncpg://photos:{DB_PASSWORD}@127.0.0.1:{unused_port()}/photos"

    async def quoting(engine: Any) -> None:
        # What a driver may do: quote the DSN it was given (its password decoded, too).
        raise StorageUnavailable(f"cannot connect to {url} with password {DB_PASSWORD}")

    monkeypatch.setattr(bootstrap, "create_schema", quoting)
    seen = Seen()
    with seen.expect_error():
        await build_service(StorageSettings(backend="memory", database_url=url, create_schema=True))
    assert url_leaks(seen.texts) == []
    assert "postgresql+asyncpg://photos:********@127.0.0.1" in seen.texts[0]


def test_create_engine_called_directly_masks_the_url_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_engine("nosuchdialect+nodriver://app:pa55-Secret-w0rd@127.0.0.1/db")
    assert "pa55-Secret-w0rd" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "app:********@127.0.0.1" in str(caught.value)


def test_an_s3_config_built_in_code_masks_its_endpoints_password() -> None:
    config = S3Config(endpoint_url="http://app:pa55-Secret-w0rd@127.0.0.1:9000")
    assert "pa55-Secret-w0rd" not in repr(config)
    assert "app:********@127.0.0.1:9000" in repr(config)
    assert "pa55-Secret-w0rd" not in repr(S3ImageStore("bucket-one", config=config))
