"""The rules :meth:`StorageSettings.check` applies: one pass that lists every problem.

Each rule refuses what the composition root or an adapter would refuse later
(a base URL the URL signer rejects after an upload, a bucket that would be a
directory outside the storage root, a URL SQLAlchemy or redis-py cannot
parse...), so that a bad value stops ``build_service`` before anything is
written. Rules only look: nothing is created, and the lifecycle file is opened
without blocking and read only if it is a regular file.

What a driver accepts (a database URL, a Redis URL, an S3 endpoint, region
or profile) is asked of that driver's adapter, imported only when such a
value is set, so that reading settings loads no driver.

URLs are shown through :func:`~demeter_storage.domain.urls.mask_url`, so no
problem ever quotes a password.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from demeter_storage.domain.buckets import bucket_name_problem
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.domain.urls import http_url_problem, mask_url, redact

if TYPE_CHECKING:
    from demeter_storage.settings.storage import StorageSettings

MAX_LIFECYCLE_FILE_BYTES: Final = 1024 * 1024
EMBEDDED_DATABASE: Final = "demeter.sqlite3"
"""The embedded SQLite database's file name, under the storage root."""
SQLITE_SIDE_FILES: Final = ("", "-wal", "-shm", "-journal")
SQLITE_MAX_PATH_BYTES: Final = 511
"""SQLite's Unix file names hold 512 bytes with the final NUL."""


def invalid_settings(problems: list[str], note: str | None = None) -> ConfigurationError:
    """The one error that lists every problem (and a note on where a value came from)."""
    listed = "\n".join(f"  - {problem}" for problem in problems)
    message = f"invalid settings ({len(problems)}):\n{listed}"
    return ConfigurationError(message + (f"\n({note})" if note else ""))


def problems(settings: StorageSettings, mistyped: frozenset[str]) -> list[str]:
    """Every problem of ``settings``, skipping the fields in ``mistyped``."""
    checked = _Checked(settings, mistyped)
    return [
        *_bounds(checked),
        *_pairs(checked),
        *_buckets(checked),
        *_urls(checked),
        *_paths(checked),
    ]


@attrs.frozen
class _Checked:
    """The settings, with the names of their well-typed fields."""

    settings: Any
    mistyped: frozenset[str]

    def value(self, name: str) -> Any:
        return getattr(self.settings, name)

    def ok(self, *names: str) -> bool:
        """Whether every field named holds a value of its type (else its type was reported)."""
        return not self.mistyped.intersection(names)

    def env(self, name: str) -> str:
        return str(attrs.fields_dict(type(self.settings))[name].metadata["env"])

    @property
    def uses_storage_root(self) -> bool:
        """The local store, or the embedded database, lives under the root."""
        return self.value("backend") == "local" or self.uses_embedded_database

    @property
    def uses_embedded_database(self) -> bool:
        return self.value("database_url") is None and self.value("backend") != "memory"


def _bounds(checked: _Checked) -> Iterator[str]:
    for field in attrs.fields(type(checked.settings)):
        bounds = field.metadata.get("bounds")
        value = checked.value(field.name)
        if bounds is None or value is None or not checked.ok(field.name):
            continue
        low, high = bounds
        # NaN fails both comparisons; infinities fail the finite test.
        if not (math.isfinite(value) and low <= value <= high):
            yield f"{field.metadata['env']} must be from {low:,} to {high:,}, got {value!r}"


def _pairs(checked: _Checked) -> Iterator[str]:
    value = checked.value
    if checked.ok("bucket_original", "bucket_visualization") and value("bucket_original") == value(
        "bucket_visualization"
    ):
        yield "S3_BUCKET_ORIGINAL and S3_BUCKET_VISUALIZATION must differ"
    if checked.ok("aws_access_key_id", "aws_secret_access_key") and (
        (value("aws_access_key_id") is None) != (value("aws_secret_access_key") is None)
    ):
        yield "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither"
    backoffs = ("retry_backoff_seconds", "retry_max_backoff_seconds")
    if checked.ok(*backoffs) and value(backoffs[0]) > value(backoffs[1]):
        yield (
            "DEMETER_RETRY_BACKOFF_SECONDS must not exceed DEMETER_RETRY_MAX_BACKOFF_SECONDS "
            f"({value(backoffs[0])!r} > {value(backoffs[1])!r})"
        )
    secret = value("signing_secret")
    if checked.ok("signing_secret") and secret is not None and len(secret.reveal()) < 16:
        yield "DEMETER_SIGNING_SECRET must be at least 16 characters"
    region = value("aws_region")
    if checked.ok("aws_region") and region is not None:
        from demeter_storage.adapters.s3.names import region_problem  # noqa: PLC0415

        problem = region_problem(region)
        if problem:
            yield f"AWS_REGION={region!r}: {problem}"


def _buckets(checked: _Checked) -> Iterator[str]:
    for name in ("bucket_original", "bucket_visualization"):
        if not checked.ok(name):
            continue
        bucket = checked.value(name)
        problem = bucket_name_problem(bucket)
        if problem:
            yield f"{checked.env(name)}: {problem}"
        elif (
            checked.value("backend") == "local"
            and checked.uses_embedded_database
            and bucket in {EMBEDDED_DATABASE + side for side in SQLITE_SIDE_FILES}
        ):
            yield (
                f"{checked.env(name)}={bucket!r} is the embedded database's file name under "
                "DEMETER_STORAGE_ROOT: choose another bucket name"
            )


def _urls(checked: _Checked) -> Iterator[str]:
    for name, rule in (
        ("public_base_url", http_url_problem),
        ("s3_endpoint_url", _endpoint_problem),
        ("redis_url", _redis_problem),
        ("database_url", _database_problem),
    ):
        url = checked.value(name)
        if url is None or not checked.ok(name):
            continue
        problem = rule(url)
        if problem:
            yield f"{checked.env(name)}={mask_url(url)!r}: {redact(problem, url)}"
    profile = checked.value("aws_profile")
    if (
        checked.ok("aws_profile", "backend")
        and checked.value("backend") == "s3"
        and profile is not None
    ):
        from demeter_storage.adapters.s3.names import profile_problem  # noqa: PLC0415

        problem = profile_problem(profile)
        if problem:
            yield f"AWS_PROFILE={profile!r}: {problem}"


# Each imports its driver's adapter (and so the driver) only when a URL is set.


def _endpoint_problem(url: str) -> str | None:
    from demeter_storage.adapters.s3.names import endpoint_problem  # noqa: PLC0415

    return endpoint_problem(url)


def _redis_problem(url: str) -> str | None:
    from demeter_storage.adapters.resilience.redis_url import url_problem  # noqa: PLC0415

    return url_problem(url)


def _database_problem(url: str) -> str | None:
    from demeter_storage.adapters.sql.urls import database_url_problem  # noqa: PLC0415

    return database_url_problem(url)


def _paths(checked: _Checked) -> Iterator[str]:
    root = checked.value("storage_root")
    if checked.ok("storage_root", "backend", "database_url") and checked.uses_storage_root:
        problem = _directory_problem(root)
        if problem is None and checked.uses_embedded_database:
            database = os.path.abspath(os.fspath(root / EMBEDDED_DATABASE)) + "-journal"
            size = len(database.encode("utf-8"))
            if size > SQLITE_MAX_PATH_BYTES:
                problem = (
                    f"is too deep for the embedded database (SQLite takes paths of at most "
                    f"{SQLITE_MAX_PATH_BYTES} bytes): choose a shorter one, or set "
                    "DEMETER_DATABASE_URL"
                )
        if problem:
            yield f"DEMETER_STORAGE_ROOT={str(root)!r} {problem}"
    if checked.ok("lifecycle_file") and checked.value("lifecycle_file") is not None:
        try:
            read_lifecycle_file(checked.value("lifecycle_file"))
        except ConfigurationError as exc:
            yield str(exc)
    elif checked.ok(
        "abort_incomplete_uploads_days", "visualizations_expire_days", "originals_expire_days"
    ):
        try:
            policy_from_days(checked.settings)
        except ValueError as exc:
            yield f"invalid lifecycle settings: {exc}"


def _directory_problem(root: Path) -> str | None:
    """Why ``root`` cannot be (or become) a directory this process writes in, or None."""
    text = os.fspath(root)
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    target = Path(os.path.abspath(text))
    probe = target
    while True:
        try:
            mode = os.stat(probe).st_mode
        except FileNotFoundError:
            if probe.parent == probe:
                return None
            probe = probe.parent
            continue
        except OSError as exc:  # a file on the way (ENOTDIR), too long, a loop, no access
            return f"cannot be used as a directory ({exc.strerror or exc})"
        shown = "is" if probe == target else f"is under {str(probe)!r}, which is"
        if not stat.S_ISDIR(mode):
            return f"{shown} not a directory"
        # The root, or the directory it will be created in, must take new entries.
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"{shown} not writable by this process"
        return None


def read_lifecycle_file(path: Path) -> LifecyclePolicy:
    """The lifecycle policy in the JSON file at ``path``.

    The file is opened without blocking, so a FIFO or a device never hangs
    the caller, and read only if it is a regular file of at most 1 MiB.

    Raises:
        ConfigurationError: naming the file and what is wrong with it.
    """
    where = f"DEMETER_LIFECYCLE_FILE={str(path)!r}"
    try:
        data = _read_regular_file(path)
    except _Refused as exc:
        raise ConfigurationError(f"{where} {exc}") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{where} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigurationError(f"{where} is not valid JSON ({exc})") from None
    try:
        return LifecyclePolicy.from_dict(document)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where} is not a lifecycle policy: {exc}") from None


class _Refused(Exception):
    """Why a file is not read."""


def _read_regular_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Refused("does not exist") from None
    except ValueError:
        raise _Refused("must not contain a NUL character") from None
    except OSError as exc:
        raise _Refused(f"cannot be read ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused("is not a regular file")
        chunks = []
        size = 0
        while size <= MAX_LIFECYCLE_FILE_BYTES and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _Refused(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_LIFECYCLE_FILE_BYTES:
        raise _Refused(f"is larger than {MAX_LIFECYCLE_FILE_BYTES:,} bytes")
    return data


def policy_from_days(settings: StorageSettings) -> LifecyclePolicy:
    """The policy of the three ``DEMETER_*_DAYS`` settings.

    Raises:
        ValueError: a rule is invalid.
    """
    rules = []
    if settings.abort_incomplete_uploads_days:
        rules.append(
            LifecycleRule(
                id="abort-incomplete-uploads",
                abort_incomplete_uploads_after_days=settings.abort_incomplete_uploads_days,
            )
        )
    for rule_id, bucket, days in (
        (
            "expire-visualizations",
            settings.bucket_visualization,
            settings.visualizations_expire_days,
        ),
        ("expire-originals", settings.bucket_original, settings.originals_expire_days),
    ):
        if days:
            rules.append(LifecycleRule(id=rule_id, bucket=bucket, expire_after_days=days))
    return LifecyclePolicy(rules=rules)
