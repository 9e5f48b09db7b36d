r"""Settings from environment variables, with the seed card's names.

Every setting has a default and one variable; :func:`settings_table` lists
them, and :func:`settings_markdown` writes the table of the configuration
page from the same field metadata. The environment is structured by the
cattrs converter of :mod:`demeter_storage.settings.parsing`; bad values give
one :class:`~demeter_storage.domain.errors.ConfigurationError` listing every
problem (the rules are in :mod:`demeter_storage.settings.rules`); secrets are
:class:`~demeter_storage.domain.secrets.Secret`\\ s, and URLs that may hold a
password show masked in ``repr`` and in every problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs

from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.lifecycle import MAX_DAYS as MAX_LIFECYCLE_DAYS
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.secrets import Secret
from demeter_storage.settings.parsing import (
    AddressingStyle,
    Backend,
    ExpiredRecords,
    S3Engine,
    setting,
    structure_environment,
    type_problem,
)
from demeter_storage.settings.rules import (
    EMBEDDED_DATABASE,
    invalid_settings,
    policy_from_days,
    read_lifecycle_file,
)
from demeter_storage.settings.rules import problems as rule_problems

MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB
__all__ = [
    "AddressingStyle",
    "Backend",
    "ExpiredRecords",
    "S3Engine",
    "StorageSettings",
    "settings_markdown",
    "settings_table",
]
_ENDPOINT_FALLBACKS: Final = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@attrs.frozen(kw_only=True)
class StorageSettings:
    """Everything ``build_service`` needs; see :func:`settings_table` for the variables."""

    backend: Backend = setting(
        "DEMETER_STORAGE_BACKEND", "local", "Where objects go: `local`, `s3` or `memory`."
    )
    storage_root: Path = setting(
        "DEMETER_STORAGE_ROOT",
        Path("demeter-data"),
        "Root directory of the local store (one subdirectory per bucket) and of the default "
        "SQLite database.",
        converter=Path,
    )
    database_url: str | None = setting(
        "DEMETER_DATABASE_URL",
        None,
        "SQLAlchemy URL of the metadata database, with an asyncio driver "
        "(`postgresql+asyncpg://...`). Default: "
        "`sqlite+aiosqlite:///{DEMETER_STORAGE_ROOT}/demeter.sqlite3` (in memory for the "
        "`memory` backend).",
        url=True,
    )
    create_schema: bool | None = setting(
        "DEMETER_CREATE_SCHEMA",
        None,
        "Upgrade the metadata schema to this release's migrations at start-up. Default: "
        "only for the embedded SQLite database (run `demeter-storage db upgrade` otherwise).",
    )
    bucket_original: str = setting(
        "S3_BUCKET_ORIGINAL",
        "demeter-photos-original",
        "Bucket of original photos (S3's naming rules, on every backend).",
    )
    bucket_visualization: str = setting(
        "S3_BUCKET_VISUALIZATION",
        "demeter-photos-viz",
        "Bucket of visualizations (S3's naming rules, on every backend).",
    )
    presigned_url_expiry_hours: int = setting(
        "S3_PRESIGNED_URL_EXPIRY_HOURS",
        24,
        "Default lifetime of presigned URLs (1-168).",
        bounds=(1, 168),
    )
    max_upload_bytes: int = setting(
        "DEMETER_MAX_UPLOAD_BYTES",
        500 * MiB,
        "Largest upload accepted, in bytes (500 MiB; at most 5 GiB, S3's largest single copy).",
        bounds=(1, 5 * GiB),
    )
    thumbnails: bool | None = setting(
        "DEMETER_THUMBNAILS",
        None,
        "Store a 256 px JPEG thumbnail beside each original. Default: on when Pillow is "
        "installed (the `thumbnails` extra).",
    )
    max_concurrent_decodes: int | None = setting(
        "DEMETER_MAX_CONCURRENT_DECODES",
        None,
        "Images decoded for thumbnails at once (1-256). Default: the number of CPUs "
        "(`os.cpu_count()`).",
        bounds=(1, 256),
    )
    stale_upload_seconds: int = setting(
        "DEMETER_STALE_UPLOAD_SECONDS",
        3600,
        "An upload unfinished after this long is abandoned; `reconcile` removes it "
        "(1 s to 30 days).",
        bounds=(1, 30 * 86400),
    )
    direct_upload_expiry_seconds: int = setting(
        "DEMETER_DIRECT_UPLOAD_EXPIRY_SECONDS",
        900,
        "Lifetime of a direct upload's form (1 s to 7 days); `reconcile` removes uploads "
        "not completed 5 minutes after it.",
        bounds=(1, 7 * 86400),
    )
    orphan_grace_seconds: int = setting(
        "DEMETER_ORPHAN_GRACE_SECONDS",
        86400,
        "The orphan sweep deletes an object without a record only once it is this old "
        "(60 s to 365 days), so it never races an upload in flight.",
        bounds=(60, 365 * 86400),
    )
    signing_secret: Secret | None = setting(
        "DEMETER_SIGNING_SECRET",
        None,
        "HMAC key of the local store's signed URLs (at least 16 bytes). Default: one "
        "created in each bucket directory (`.demeter/signing-key`).",
    )
    public_base_url: str | None = setting(
        "DEMETER_PUBLIC_BASE_URL",
        None,
        "Base URL of the local store's signed URLs (`http(s)://host[:port][/path]`, without "
        "credentials, query or fragment). Default: `http://127.0.0.1:8765`, where "
        "`demeter-storage serve` listens.",
        url=True,
    )
    aws_region: str | None = setting(
        "AWS_REGION", None, "AWS region of the buckets (`us-east-1`, `eu-west-3`...)."
    )
    aws_access_key_id: str | None = setting(
        "AWS_ACCESS_KEY_ID",
        None,
        "Access key id. Default: boto3's credential chain (profiles, container and "
        "instance roles).",
    )
    aws_secret_access_key: Secret | None = setting(
        "AWS_SECRET_ACCESS_KEY", None, "Secret key (with `AWS_ACCESS_KEY_ID`)."
    )
    aws_session_token: Secret | None = setting(
        "AWS_SESSION_TOKEN", None, "Session token of temporary credentials."
    )
    aws_profile: str | None = setting(
        "AWS_PROFILE", None, "Named profile of the shared AWS config files."
    )
    s3_engine: S3Engine = setting(
        "S3_ENGINE",
        "boto3",
        "`boto3`, or `obstore` for the faster Rust engine (needs the `fast` extra).",
    )
    s3_endpoint_url: str | None = setting(
        "S3_ENDPOINT_URL",
        None,
        "Endpoint of an S3-compatible server (SeaweedFS, MinIO, R2...), `http(s)://host[:port]`, "
        "without credentials; when unset, boto3's `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, "
        "if set.",
        url=True,
    )
    s3_addressing_style: AddressingStyle = setting(
        "S3_ADDRESSING_STYLE", "auto", "`path` for most S3-compatible servers, else `auto`."
    )
    s3_max_concurrency: int = setting(
        "S3_MAX_CONCURRENCY",
        16,
        "S3 calls at once per store (threads and pooled connections; 1-1024).",
        bounds=(1, 1024),
    )
    s3_connect_timeout: float = setting(
        "S3_CONNECT_TIMEOUT", 5.0, "Seconds to connect (0.001-300).", bounds=(0.001, 300)
    )
    s3_read_timeout: float = setting(
        "S3_READ_TIMEOUT", 60.0, "Seconds to wait for data (0.001-3600).", bounds=(0.001, 3600)
    )
    s3_multipart_threshold: int = setting(
        "S3_MULTIPART_THRESHOLD",
        8 * MiB,
        "Streamed puts above this size use multipart upload (5 MiB to 5 GiB).",
        bounds=(5 * MiB, 5 * GiB),
    )
    s3_part_size: int = setting(
        "S3_PART_SIZE", 8 * MiB, "Multipart part size (5 MiB to 5 GiB).", bounds=(5 * MiB, 5 * GiB)
    )
    s3_multipart_concurrency: int = setting(
        "S3_MULTIPART_CONCURRENCY",
        4,
        "Parts uploaded at once, and parts `stream` downloads at once (1-64).",
        bounds=(1, 64),
    )
    s3_presign_stable_seconds: int | None = setting(
        "S3_PRESIGN_STABLE_SECONDS",
        None,
        "Sign presigned URLs at the start of windows this long (e.g. 3600; at most 3.5 days), "
        "so one object keeps one cacheable URL per window; such URLs live one window longer. "
        "Default: off.",
        bounds=(1, 302400),
    )
    s3_create_buckets: bool = setting(
        "S3_CREATE_BUCKETS", False, "Create missing buckets at start-up."
    )
    breaker_failure_threshold: int = setting(
        "DEMETER_BREAKER_FAILURE_THRESHOLD",
        5,
        "Failed operations in a row that open the circuit (1-1000).",
        bounds=(1, 1000),
    )
    breaker_reset_seconds: float = setting(
        "DEMETER_BREAKER_RESET_SECONDS",
        60.0,
        "Seconds the circuit stays open before one probe (0.001 to 1 day).",
        bounds=(0.001, 86400),
    )
    retry_attempts: int = setting(
        "DEMETER_RETRY_ATTEMPTS",
        3,
        "Attempts per S3 operation (transient errors only; 1-20).",
        bounds=(1, 20),
    )
    retry_backoff_seconds: float = setting(
        "DEMETER_RETRY_BACKOFF_SECONDS",
        0.2,
        "First backoff between attempts (doubles, jittered; 0-60, at most the longest).",
        bounds=(0, 60),
    )
    retry_max_backoff_seconds: float = setting(
        "DEMETER_RETRY_MAX_BACKOFF_SECONDS",
        5.0,
        "Longest backoff between attempts (0.001-600).",
        bounds=(0.001, 600),
    )
    redis_url: str | None = setting(
        "DEMETER_REDIS_URL",
        None,
        "Share the circuit breaker's state between processes through this Redis "
        "(`redis://[:password@]host[:port][/db]`, `rediss://...` or `unix://path`).",
        url=True,
    )
    visualizations_expire_days: int = setting(
        "DEMETER_VIZ_EXPIRE_DAYS",
        90,
        "Lifecycle: visualizations expire after this many days (0: never; at most 36500).",
        bounds=(0, MAX_LIFECYCLE_DAYS),
    )
    originals_expire_days: int = setting(
        "DEMETER_ORIGINALS_EXPIRE_DAYS",
        0,
        "Lifecycle: originals expire after this many days (0: never; at most 36500).",
        bounds=(0, MAX_LIFECYCLE_DAYS),
    )
    abort_incomplete_uploads_days: int = setting(
        "DEMETER_ABORT_INCOMPLETE_UPLOADS_DAYS",
        1,
        "Lifecycle: abort multipart uploads left unfinished this long (0: never, not advised; "
        "at most 36500).",
        bounds=(0, MAX_LIFECYCLE_DAYS),
    )
    lifecycle_file: Path | None = setting(
        "DEMETER_LIFECYCLE_FILE",
        None,
        'A JSON lifecycle policy (`{"rules": [...]}`, a regular file of at most 1 MiB) '
        "replacing the three settings above.",
        converter=attrs.converters.optional(Path),
    )
    expired_records: ExpiredRecords = setting(
        "DEMETER_EXPIRED_RECORDS",
        "mark",
        "What `reconcile` does with records whose objects a lifecycle rule removed: "
        "`mark` them expired, or `remove` them.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        """Read the settings from ``environ`` (``os.environ`` by default), and check them.

        Unset and empty variables keep their defaults.

        Raises:
            ConfigurationError: listing every invalid value.
        """
        env = os.environ if environ is None else environ
        values = {}
        for field in attrs.fields(cls):
            raw = env.get(field.metadata["env"], "").strip()
            if raw:
                values[field.metadata["env"]] = raw
        note = None
        if "S3_ENDPOINT_URL" not in values:
            # boto3 would follow these silently; the package must know its endpoint
            # (listing order, the circuit's name, bucket creation).
            for fallback in _ENDPOINT_FALLBACKS:
                if env.get(fallback, "").strip():
                    values["S3_ENDPOINT_URL"] = env[fallback].strip()
                    note = f"S3_ENDPOINT_URL is unset: its value came from {fallback}"
                    break
        settings, problems = structure_environment(values, cls)
        # Values that did not parse kept their defaults: checking the rest still
        # finds every other problem, for the one error.
        problems += settings.problems()
        if problems:
            raise invalid_settings(problems, note)
        return settings

    def check(self) -> None:
        """Check every value, and the values against one another.

        ``from_env`` calls it; ``build_service`` calls it on settings made in
        code. It only looks (the storage root and the lifecycle file are
        examined, nothing is created).

        Raises:
            ConfigurationError: listing every problem.
        """
        found = self.problems()
        if found:
            raise invalid_settings(found)

    def problems(self) -> list[str]:
        """Every problem :meth:`check` would raise, as lines (empty when none)."""
        mistyped = {}
        for field in attrs.fields(type(self)):
            problem = type_problem(getattr(self, field.name), field.type)
            if problem:
                mistyped[field.name] = f"{field.name} ({field.metadata['env']}) {problem}"
        return [*mistyped.values(), *rule_problems(self, frozenset(mistyped))]

    def lifecycle_policy(self) -> LifecyclePolicy:
        """The lifecycle policy these settings describe.

        Raises:
            ConfigurationError: the policy file is unreadable or invalid.
        """
        if self.lifecycle_file is not None:
            return read_lifecycle_file(self.lifecycle_file)
        try:
            return policy_from_days(self)
        except ValueError as exc:
            raise ConfigurationError(f"invalid lifecycle settings: {exc}") from exc

    @property
    def embedded_database_url(self) -> str:
        """The default database: SQLite under the storage root."""
        # The SQL driver builds the URL; SQLAlchemy loads only when it is asked for.
        from demeter_storage.adapters.sql.urls import sqlite_file_url  # noqa: PLC0415

        return sqlite_file_url(os.path.abspath(os.fspath(self.storage_root / EMBEDDED_DATABASE)))


attrs.resolve_types(StorageSettings)  # real types for the converters, not the annotations' text


def settings_table() -> list[tuple[str, str, str]]:
    """``(variable, default, meaning)`` of every setting, in declaration order."""
    rows = []
    for field in attrs.fields(StorageSettings):
        default = field.default
        shown = "(none)" if default is None else f"`{default}`"
        rows.append((field.metadata["env"], shown, field.metadata["help"]))
    return rows


def settings_markdown() -> str:
    """The settings table of ``docs/configuration.md``, as Markdown (one line a setting)."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{env}` | {default} | {meaning} |" for env, default, meaning in settings_table()]
    return "\n".join(lines) + "\n"
