"""Issue 19, item 5: every setting is checked before anything is written.

``StorageSettings.from_env`` and ``check()`` (which ``build_service`` runs on
settings built in code) refuse every value that the composition root or an
adapter would refuse later, all problems in one ``ConfigurationError``.
"""

from __future__ import annotations

import json
import math
import os
from datetime import timedelta
from pathlib import Path

import pytest

from demeter_storage import ConfigurationError
from demeter_storage.adapters.pillow.thumbnails import PillowThumbnailMaker
from demeter_storage.bootstrap import build_service
from demeter_storage.service.schemas import UploadRequest
from demeter_storage.settings.storage import StorageSettings, settings_table
from tests.service.conftest import jpeg


def refused(environ: dict[str, str]) -> str:
    """The message of the ConfigurationError ``from_env`` raises for ``environ``."""
    with pytest.raises(ConfigurationError) as caught:
        StorageSettings.from_env(environ)
    return str(caught.value)


# The public base URL: refused by the settings, not after an upload.

BAD_BASE_URLS = [
    "ftp://x",
    "http://",
    "http:///path",
    "//example.com",
    "example.com",
    "http://h:99999",
    "http://h:port",
    "http://h:0",
    "http://h/?q=1",
    "http://h/#top",
    "http://user:pw@h",
    "http://exa mple.com",
    "http://h\n/x",
    "http://-bad-.example",
]


@pytest.mark.parametrize("url", BAD_BASE_URLS)
def test_an_invalid_public_base_url_is_refused_by_the_settings(url: str) -> None:
    assert "DEMETER_PUBLIC_BASE_URL" in refused({"DEMETER_PUBLIC_BASE_URL": url})


@pytest.mark.parametrize("url", ["ftp://x", "http://h:99999", "http://user:pw@h"])
async def test_an_invalid_public_base_url_given_in_code_fails_before_any_write(
    tmp_path: Path, url: str
) -> None:
    root = tmp_path / "data"
    settings = StorageSettings(storage_root=root, public_base_url=url)

    async def upload() -> None:
        # Before: the service was built, the photo stored and its record marked
        # ready, then the URL signer refused the base URL.
        service = await build_service(settings)
        try:
            await service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/jpeg"))
        finally:
            await service.aclose()

    with pytest.raises(ConfigurationError, match="DEMETER_PUBLIC_BASE_URL"):
        await upload()
    assert not root.exists()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "https://photos.example.com/files/", "http://[::1]:8080"]
)
def test_good_public_base_urls_are_accepted(url: str) -> None:
    assert StorageSettings.from_env({"DEMETER_PUBLIC_BASE_URL": url}).public_base_url == url


# Bucket names: S3's rules on every backend, and never outside the storage root.

BAD_BUCKETS = [
    "../../x",
    "/abs/x",
    "..",
    "a/b",
    "ab",
    "x" * 64,
    "Upper-Case",
    "under_score",
    "-starts-with-dash",
    "ends-with-dash-",
    "two..dots",
    "192.168.5.4",
    "xn--punycode",
    "nul\x00byte",
    "sp ace",
    ".demeter",
]


@pytest.mark.parametrize("backend", ["local", "memory", "s3"])
@pytest.mark.parametrize("name", BAD_BUCKETS)
def test_bucket_names_follow_s3s_rules_on_every_backend(backend: str, name: str) -> None:
    message = refused({"DEMETER_STORAGE_BACKEND": backend, "S3_BUCKET_ORIGINAL": name})
    assert "S3_BUCKET_ORIGINAL" in message


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute-bucket", ".."])
async def test_a_local_bucket_given_in_code_never_places_files_outside_the_root(
    tmp_path: Path, name: str
) -> None:
    root = tmp_path / "deep" / "data"
    settings = StorageSettings(storage_root=root, bucket_visualization=name)
    with pytest.raises(ConfigurationError, match="S3_BUCKET_VISUALIZATION"):
        await build_service(settings)
    assert not (tmp_path / "escaped").exists()
    assert not root.exists()


@pytest.mark.parametrize("name", ["demeter.sqlite3", "demeter.sqlite3-wal", "demeter.sqlite3-shm"])
def test_a_local_bucket_cannot_take_the_embedded_databases_file_names(name: str) -> None:
    assert "S3_BUCKET_ORIGINAL" in refused({"S3_BUCKET_ORIGINAL": name})
    # With a database elsewhere (or on S3, where buckets are not files) the name is free.
    StorageSettings.from_env(
        {"S3_BUCKET_ORIGINAL": name, "DEMETER_DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    )
    StorageSettings.from_env({"S3_BUCKET_ORIGINAL": name, "DEMETER_STORAGE_BACKEND": "s3"})


@pytest.mark.parametrize("name", ["abc", "demeter-photos-2024", "a.b.c", "x" * 63, "0-9"])
def test_s3_style_bucket_names_are_accepted(name: str) -> None:
    assert StorageSettings.from_env({"S3_BUCKET_ORIGINAL": name}).bucket_original == name


# Numbers: finite, with upper bounds.

UPPER_BOUNDS = {
    "S3_PRESIGNED_URL_EXPIRY_HOURS": "168",
    "DEMETER_MAX_UPLOAD_BYTES": str(5 * 1024**3),
    "DEMETER_STALE_UPLOAD_SECONDS": "2592000",
    "DEMETER_DIRECT_UPLOAD_EXPIRY_SECONDS": "604800",
    "S3_MAX_CONCURRENCY": "1024",
    "S3_CONNECT_TIMEOUT": "300",
    "S3_READ_TIMEOUT": "3600",
    "S3_MULTIPART_THRESHOLD": str(5 * 1024**3),
    "S3_PART_SIZE": str(5 * 1024**3),
    "S3_MULTIPART_CONCURRENCY": "64",
    "S3_PRESIGN_STABLE_SECONDS": "302400",
    "DEMETER_BREAKER_FAILURE_THRESHOLD": "1000",
    "DEMETER_BREAKER_RESET_SECONDS": "86400",
    "DEMETER_RETRY_ATTEMPTS": "20",
    "DEMETER_RETRY_BACKOFF_SECONDS": "60",
    "DEMETER_RETRY_MAX_BACKOFF_SECONDS": "600",
    "DEMETER_VIZ_EXPIRE_DAYS": "36500",
    "DEMETER_ORIGINALS_EXPIRE_DAYS": "36500",
    "DEMETER_ABORT_INCOMPLETE_UPLOADS_DAYS": "36500",
    "DEMETER_MAX_CONCURRENT_DECODES": "256",
    "DEMETER_ORPHAN_GRACE_SECONDS": "31536000",
}


def test_every_numeric_setting_has_an_upper_bound() -> None:
    numeric = {
        variable
        for variable, default, _ in settings_table()
        if variable in UPPER_BOUNDS or default.strip("`").replace(".", "").isdigit()
    }
    assert numeric <= set(UPPER_BOUNDS), numeric - set(UPPER_BOUNDS)


@pytest.mark.parametrize("variable", sorted(UPPER_BOUNDS))
def test_numeric_settings_accept_their_upper_bound(variable: str) -> None:
    environ = {variable: UPPER_BOUNDS[variable]}
    if variable == "DEMETER_RETRY_BACKOFF_SECONDS":
        environ["DEMETER_RETRY_MAX_BACKOFF_SECONDS"] = "600"
    StorageSettings.from_env(environ)


@pytest.mark.parametrize("variable", sorted(UPPER_BOUNDS))
@pytest.mark.parametrize("value", ["above", "1000000", "1e300", "inf", "nan", "-inf"])
def test_numeric_settings_refuse_huge_and_non_finite_values(variable: str, value: str) -> None:
    if value == "above":
        bound = float(UPPER_BOUNDS[variable])
        value = str(int(bound) + 1)
    elif value == "1000000" and float(UPPER_BOUNDS[variable]) >= 1_000_000:
        value = str(int(float(UPPER_BOUNDS[variable])) * 10)
    assert variable in refused({variable: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retry_attempts", 1_000_000),
        ("s3_read_timeout", math.inf),
        ("breaker_reset_seconds", math.nan),
        ("retry_backoff_seconds", math.inf),
        ("max_upload_bytes", 5 * 1024**3 + 1),
    ],
)
async def test_numbers_given_in_code_are_checked_by_build_service(field: str, value: float) -> None:
    settings = StorageSettings(**{"backend": "memory", field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid settings"):
        settings.check()
    with pytest.raises(ConfigurationError, match="invalid settings"):
        await build_service(settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retry_attempts", "3"),
        ("s3_read_timeout", "60"),
        ("thumbnails", "yes"),
        ("bucket_original", 42),
        ("retry_attempts", True),
        ("max_concurrent_decodes", 2.5),
        ("backend", "ftp"),
        ("database_url", b"sqlite+aiosqlite://"),
        ("retry_attempts", None),
        ("s3_addressing_style", "PATH"),
    ],
)
def test_values_of_the_wrong_type_given_in_code_are_configuration_errors(
    field: str, value: object
) -> None:
    settings = StorageSettings(**{"backend": "memory", field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid settings"):
        settings.check()


def test_the_first_backoff_may_not_exceed_the_longest() -> None:
    message = refused(
        {"DEMETER_RETRY_BACKOFF_SECONDS": "10", "DEMETER_RETRY_MAX_BACKOFF_SECONDS": "5"}
    )
    assert "DEMETER_RETRY_BACKOFF_SECONDS" in message


# Paths: the storage root and the lifecycle file.


def test_a_storage_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    assert "DEMETER_STORAGE_ROOT" in refused({"DEMETER_STORAGE_ROOT": str(a_file)})
    assert "DEMETER_STORAGE_ROOT" in refused({"DEMETER_STORAGE_ROOT": str(a_file / "below")})
    # The memory backend keeps its database in memory: the root is not used.
    StorageSettings.from_env(
        {"DEMETER_STORAGE_ROOT": str(a_file), "DEMETER_STORAGE_BACKEND": "memory"}
    )


@pytest.mark.parametrize("root", ["with\x00nul", "x" * 300, "/".join(["y" * 200] * 30)])
def test_a_storage_root_the_system_cannot_use_is_refused(root: str) -> None:
    assert "DEMETER_STORAGE_ROOT" in refused({"DEMETER_STORAGE_ROOT": root})


async def test_a_storage_root_given_in_code_is_checked_before_the_database_is_made(
    tmp_path: Path,
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigurationError, match="DEMETER_STORAGE_ROOT"):
        await build_service(StorageSettings(storage_root=a_file, backend="s3"))


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "policy.fifo"
    os.mkfifo(fifo)
    return fifo


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "missing.json", "does not exist"),
        (lambda tmp: tmp, "not a regular file"),
        (_fifo, "not a regular file"),
        (lambda tmp: Path("/dev/zero"), "not a regular file"),
        (lambda tmp: _write(tmp / "a.json", "{not json"), "JSON"),
        (lambda tmp: _write(tmp / "b.json", '{"rules": [{"id": 5}]}'), ""),
        (lambda tmp: _write(tmp / "c.json", "[]"), ""),
        (lambda tmp: _write(tmp / "d.json", " " * (1024 * 1024 + 1)), "larger"),
        (lambda tmp: _write(tmp / "e.json", "\udcff"), ""),
    ],
)
def test_the_lifecycle_file_must_be_a_regular_readable_json_policy(
    tmp_path: Path, make: object, words: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    message = refused({"DEMETER_LIFECYCLE_FILE": str(path)})
    assert "DEMETER_LIFECYCLE_FILE" in message
    assert words in message


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def test_a_good_lifecycle_file_is_read(tmp_path: Path) -> None:
    policy = {
        "rules": [{"id": "expire-viz", "bucket": "demeter-photos-viz", "expire_after_days": 30}]
    }
    path = _write(tmp_path / "policy.json", json.dumps(policy))
    settings = StorageSettings.from_env({"DEMETER_LIFECYCLE_FILE": str(path)})
    assert [rule.id for rule in settings.lifecycle_policy().rules] == ["expire-viz"]


# URLs of the database and of Redis.


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "nosuchdialect+driver://h/db",
        "postgresql+asyncpg://h:port/db",
        "postgresql+asyncpg://h:99999/db",
        "postgresql+nosuchdriver://h/db",
        "sqlite:///sync-driver.db",
        "postgresql+asyncpg://h/db\x00",
    ],
)
def test_a_database_url_the_engine_cannot_use_is_refused(url: str) -> None:
    assert "DEMETER_DATABASE_URL" in refused({"DEMETER_DATABASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis://",
        "redis://:6379/0",
        "redis://h:port/0",
        "redis://h:99999/0",
        "redis://h:6379/db",
        "redis://h:6379/0?socket_timeout=soon",
        "unix://",
        "redis://h\x00:6379",
    ],
)
def test_a_malformed_redis_url_is_refused(url: str) -> None:
    assert "DEMETER_REDIS_URL" in refused({"DEMETER_REDIS_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@cache.example.com:6380/2",
        "redis://redis_cache",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_good_redis_urls_are_accepted(url: str) -> None:
    assert StorageSettings.from_env({"DEMETER_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h",
        "http://h:99999",
        "http://under_score:9000",
        "http://h:1/?x=1",
        "http://ak:pw@127.0.0.1:8333",
        "127.0.0.1:8333",
    ],
)
def test_a_malformed_s3_endpoint_url_is_refused(url: str) -> None:
    assert "S3_ENDPOINT_URL" in refused({"S3_ENDPOINT_URL": url})


def test_the_aws_region_is_checked() -> None:
    assert "AWS_REGION" in refused({"AWS_REGION": "us-east-1/../x"})
    assert StorageSettings.from_env({"AWS_REGION": "eu-west-3"}).aws_region == "eu-west-3"


def test_the_aws_profile_is_checked_on_the_s3_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile photos]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    s3 = {"DEMETER_STORAGE_BACKEND": "s3", "DEMETER_STORAGE_ROOT": str(tmp_path)}
    message = refused({**s3, "AWS_PROFILE": "nope"})
    assert "AWS_PROFILE='nope': no AWS config file has it (known: photos)" in message
    assert StorageSettings.from_env({**s3, "AWS_PROFILE": "photos"}).aws_profile == "photos"
    # Only the S3 backend uses it.
    StorageSettings.from_env({"DEMETER_STORAGE_ROOT": str(tmp_path), "AWS_PROFILE": "nope"})


# One error for everything.


def test_every_new_problem_is_listed_in_the_one_error(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    message = refused(
        {
            "DEMETER_PUBLIC_BASE_URL": "ftp://x",
            "S3_BUCKET_ORIGINAL": "../../x",
            "DEMETER_RETRY_ATTEMPTS": "1000000",
            "S3_READ_TIMEOUT": "inf",
            "DEMETER_STORAGE_ROOT": str(a_file),
            "DEMETER_LIFECYCLE_FILE": str(tmp_path),
            "DEMETER_REDIS_URL": "redis://h:port",
            "DEMETER_DATABASE_URL": "not a url",
            "DEMETER_ORPHAN_GRACE_SECONDS": "1",
            "DEMETER_MAX_CONCURRENT_DECODES": "0",
        }
    )
    assert "invalid settings (10)" in message


# The two new settings.


def test_the_new_settings_have_their_defaults_and_variables() -> None:
    settings = StorageSettings.from_env({})
    assert settings.max_concurrent_decodes is None
    assert settings.orphan_grace_seconds == 86400
    read = StorageSettings.from_env(
        {"DEMETER_MAX_CONCURRENT_DECODES": "3", "DEMETER_ORPHAN_GRACE_SECONDS": "3_600"}
    )
    assert (read.max_concurrent_decodes, read.orphan_grace_seconds) == (3, 3600)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEMETER_MAX_CONCURRENT_DECODES", "0"),
        ("DEMETER_MAX_CONCURRENT_DECODES", "257"),
        ("DEMETER_MAX_CONCURRENT_DECODES", "two"),
        ("DEMETER_ORPHAN_GRACE_SECONDS", "59"),
        ("DEMETER_ORPHAN_GRACE_SECONDS", "31536001"),
    ],
)
def test_the_new_settings_are_bounded(variable: str, value: str) -> None:
    assert variable in refused({variable: value})


async def test_the_orphan_grace_reaches_the_service() -> None:
    service = await build_service(
        StorageSettings(backend="memory", thumbnails=False, orphan_grace_seconds=600)
    )
    try:
        assert service.config.orphan_grace == timedelta(seconds=600)
    finally:
        await service.aclose()


async def test_a_storage_root_the_file_system_refuses_to_create_is_a_configuration_error() -> None:
    # /proc looks like a writable directory to root, but takes no new entries:
    # the check passes, mkdir fails, and that too must be a ConfigurationError.
    settings = StorageSettings(backend="s3", storage_root=Path("/proc/self/demeter-data"))
    with pytest.raises(ConfigurationError, match="DEMETER_STORAGE_ROOT"):
        await build_service(settings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_storage_root_this_process_cannot_write_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "not writable" in refused({"DEMETER_STORAGE_ROOT": str(locked / "data")})


@pytest.mark.parametrize(("value", "expected"), [(3, 3), (None, os.cpu_count() or 1)])
async def test_the_decode_limit_reaches_the_thumbnail_maker(
    value: int | None, expected: int
) -> None:
    service = await build_service(
        StorageSettings(backend="memory", thumbnails=True, max_concurrent_decodes=value)
    )
    try:
        assert isinstance(service.thumbnails, PillowThumbnailMaker)
        assert service.thumbnails.max_concurrent_decodes == expected
    finally:
        await service.aclose()
