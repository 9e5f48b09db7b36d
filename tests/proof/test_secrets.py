"""Secrets never leak: a full session at DEBUG, every log line, repr and error message scanned.

Two sessions, as a host app would run them: one on S3 (moto, in-process)
with an access key, a secret key and a session token; one on the local store
with its URL signing secret, serving signed URLs over the ASGI app. Everything
either writes to a log, returns as an error or shows in a repr is searched for
the three secrets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto import mock_aws

from demeter_storage import StorageError
from demeter_storage.bootstrap import build_service
from demeter_storage.domain.schemas import UploadRequest
from demeter_storage.service import ImageService
from demeter_storage.settings import StorageSettings
from demeter_storage.web import SignedUrlApp
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
