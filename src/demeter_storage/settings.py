r"""Settings from environment variables, with the seed card's names.

Every setting has a default and one variable; :func:`settings_table` lists
them (a test checks that the configuration page of the docs lists each). Bad values
give one :class:`~demeter_storage.domain.errors.ConfigurationError` listing
every problem; secrets are :class:`~demeter_storage.domain.secrets.Secret`\\ s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args

import attrs
import cattrs

from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.domain.lifecycle import MAX_DAYS as MAX_LIFECYCLE_DAYS
from demeter_storage.domain.lifecycle import LifecyclePolicy, LifecycleRule
from demeter_storage.domain.secrets import Secret

MiB: Final = 1024 * 1024
Backend = Literal["local", "s3", "memory"]
AddressingStyle = Literal["auto", "path", "virtual"]
S3Engine = Literal["boto3", "obstore"]
ExpiredRecords = Literal["mark", "remove"]
_CHOICES: Final = {
    "Backend": Backend,
    "AddressingStyle": AddressingStyle,
    "S3Engine": S3Engine,
    "ExpiredRecords": ExpiredRecords,
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _setting(env: str, default: Any, help: str) -> Any:
    return attrs.field(default=default, metadata={"env": env, "help": help})


@attrs.frozen(kw_only=True)
class StorageSettings:
    """Everything ``build_service`` needs; see :func:`settings_table` for the variables."""

    backend: Backend = _setting(
        "DEMETER_STORAGE_BACKEND", "local", "Where objects go: `local`, `s3` or `memory`."
    )
    storage_root: Path = attrs.field(
        default=Path("demeter-data"),
        converter=Path,
        metadata={
            "env": "DEMETER_STORAGE_ROOT",
            "help": "Root directory of the local store (one subdirectory per bucket) and of "
            "the default SQLite database.",
        },
    )
    database_url: str | None = _setting(
        "DEMETER_DATABASE_URL",
        None,
        "SQLAlchemy URL of the metadata database (`postgresql+asyncpg://...`). Default: "
        "`sqlite+aiosqlite:///{DEMETER_STORAGE_ROOT}/demeter.sqlite3` (in memory for the "
        "`memory` backend).",
    )
    create_schema: bool | None = _setting(
        "DEMETER_CREATE_SCHEMA",
        None,
        "Create the metadata table at start-up. Default: only for the embedded SQLite "
        "database (use your migrations otherwise).",
    )
    bucket_original: str = _setting(
        "S3_BUCKET_ORIGINAL", "demeter-photos-original", "Bucket of original photos."
    )
    bucket_visualization: str = _setting(
        "S3_BUCKET_VISUALIZATION", "demeter-photos-viz", "Bucket of visualizations."
    )
    presigned_url_expiry_hours: int = _setting(
        "S3_PRESIGNED_URL_EXPIRY_HOURS", 24, "Default lifetime of presigned URLs (1-168)."
    )
    max_upload_bytes: int = _setting(
        "DEMETER_MAX_UPLOAD_BYTES", 500 * MiB, "Largest upload accepted, in bytes (500 MiB)."
    )
    thumbnails: bool | None = _setting(
        "DEMETER_THUMBNAILS",
        None,
        "Store a 256 px JPEG thumbnail beside each original. Default: on when Pillow is "
        "installed (the `thumbnails` extra).",
    )
    stale_upload_seconds: int = _setting(
        "DEMETER_STALE_UPLOAD_SECONDS",
        3600,
        "An upload unfinished after this long is abandoned; `reconcile` removes it.",
    )
    direct_upload_expiry_seconds: int = _setting(
        "DEMETER_DIRECT_UPLOAD_EXPIRY_SECONDS",
        900,
        "Lifetime of a direct upload's form (1 s to 7 days); `reconcile` removes uploads "
        "not completed 5 minutes after it.",
    )
    signing_secret: Secret | None = _setting(
        "DEMETER_SIGNING_SECRET",
        None,
        "HMAC key of the local store's signed URLs (at least 16 bytes). Default: one "
        "created in each bucket directory (`.demeter/signing-key`).",
    )
    public_base_url: str | None = _setting(
        "DEMETER_PUBLIC_BASE_URL",
        None,
        "Base URL of the local store's signed URLs. Default: `http://127.0.0.1:8765`, where "
        "`demeter-storage serve` listens.",
    )
    aws_region: str | None = _setting("AWS_REGION", None, "AWS region of the buckets.")
    aws_access_key_id: str | None = _setting(
        "AWS_ACCESS_KEY_ID",
        None,
        "Access key id. Default: boto3's credential chain (profiles, container and "
        "instance roles).",
    )
    aws_secret_access_key: Secret | None = _setting(
        "AWS_SECRET_ACCESS_KEY", None, "Secret key (with `AWS_ACCESS_KEY_ID`)."
    )
    aws_session_token: Secret | None = _setting(
        "AWS_SESSION_TOKEN", None, "Session token of temporary credentials."
    )
    aws_profile: str | None = _setting(
        "AWS_PROFILE", None, "Named profile of the shared AWS config files."
    )
    s3_engine: S3Engine = _setting(
        "S3_ENGINE",
        "boto3",
        "`boto3`, or `obstore` for the faster Rust engine (needs the `fast` extra).",
    )
    s3_endpoint_url: str | None = _setting(
        "S3_ENDPOINT_URL",
        None,
        "Endpoint of an S3-compatible server (SeaweedFS, MinIO, R2...); when unset, boto3's "
        "`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, if set.",
    )
    s3_addressing_style: AddressingStyle = _setting(
        "S3_ADDRESSING_STYLE", "auto", "`path` for most S3-compatible servers, else `auto`."
    )
    s3_max_concurrency: int = _setting(
        "S3_MAX_CONCURRENCY", 16, "S3 calls at once per store (threads and pooled connections)."
    )
    s3_connect_timeout: float = _setting("S3_CONNECT_TIMEOUT", 5.0, "Seconds to connect.")
    s3_read_timeout: float = _setting("S3_READ_TIMEOUT", 60.0, "Seconds to wait for data.")
    s3_multipart_threshold: int = _setting(
        "S3_MULTIPART_THRESHOLD", 8 * MiB, "Streamed puts above this size use multipart upload."
    )
    s3_part_size: int = _setting("S3_PART_SIZE", 8 * MiB, "Multipart part size (>= 5 MiB).")
    s3_multipart_concurrency: int = _setting(
        "S3_MULTIPART_CONCURRENCY", 4, "Parts uploaded at once."
    )
    s3_presign_stable_seconds: int | None = _setting(
        "S3_PRESIGN_STABLE_SECONDS",
        None,
        "Sign presigned URLs at the start of windows this long (e.g. 3600), so one object "
        "keeps one cacheable URL per window; such URLs live one window longer. Default: off.",
    )
    s3_create_buckets: bool = _setting(
        "S3_CREATE_BUCKETS", False, "Create missing buckets at start-up."
    )
    breaker_failure_threshold: int = _setting(
        "DEMETER_BREAKER_FAILURE_THRESHOLD", 5, "Failed operations in a row that open the circuit."
    )
    breaker_reset_seconds: float = _setting(
        "DEMETER_BREAKER_RESET_SECONDS", 60.0, "Seconds the circuit stays open before one probe."
    )
    retry_attempts: int = _setting(
        "DEMETER_RETRY_ATTEMPTS", 3, "Attempts per S3 operation (transient errors only)."
    )
    retry_backoff_seconds: float = _setting(
        "DEMETER_RETRY_BACKOFF_SECONDS", 0.2, "First backoff between attempts (doubles, jittered)."
    )
    retry_max_backoff_seconds: float = _setting(
        "DEMETER_RETRY_MAX_BACKOFF_SECONDS", 5.0, "Longest backoff between attempts."
    )
    redis_url: str | None = _setting(
        "DEMETER_REDIS_URL",
        None,
        "Share the circuit breaker's state between processes through this Redis.",
    )
    visualizations_expire_days: int = _setting(
        "DEMETER_VIZ_EXPIRE_DAYS",
        90,
        "Lifecycle: visualizations expire after this many days (0: never).",
    )
    originals_expire_days: int = _setting(
        "DEMETER_ORIGINALS_EXPIRE_DAYS",
        0,
        "Lifecycle: originals expire after this many days (0: never).",
    )
    abort_incomplete_uploads_days: int = _setting(
        "DEMETER_ABORT_INCOMPLETE_UPLOADS_DAYS",
        1,
        "Lifecycle: abort multipart uploads left unfinished this long (0: never; not advised).",
    )
    lifecycle_file: Path | None = _setting(
        "DEMETER_LIFECYCLE_FILE",
        None,
        'A JSON lifecycle policy (`{"rules": [...]}`) replacing the three settings above.',
    )
    expired_records: ExpiredRecords = _setting(
        "DEMETER_EXPIRED_RECORDS",
        "mark",
        "What `reconcile` does with records whose objects a lifecycle rule removed: "
        "`mark` them expired, or `remove` them.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StorageSettings:
        """Read the settings from ``environ`` (``os.environ`` by default).

        Unset and empty variables keep their defaults.

        Raises:
            ConfigurationError: listing every invalid value.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in attrs.fields(cls):
            raw = env.get(field.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[field.name] = _parse(raw, field.type)
            except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
                problems.append(f"{field.metadata['env']}={_shown(field, raw)}: {exc}")
        if "s3_endpoint_url" not in values:
            # boto3 would follow these silently; the package must know its endpoint
            # (listing order, the circuit's name, bucket creation).
            fallback = env.get("AWS_ENDPOINT_URL_S3", "").strip()
            fallback = fallback or env.get("AWS_ENDPOINT_URL", "").strip()
            if fallback:
                values["s3_endpoint_url"] = fallback
        if problems:
            raise _invalid(problems)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Check the values against one another.

        Raises:
            ConfigurationError: listing every problem.
        """
        problems = [message for holds, message in self._rules() if not holds]
        if problems:
            raise _invalid(problems)

    def _rules(self) -> list[tuple[bool, str]]:
        at_least_one = (
            "s3_max_concurrency",
            "s3_multipart_concurrency",
            "breaker_failure_threshold",
            "retry_attempts",
            "stale_upload_seconds",
            "max_upload_bytes",
        )
        positive = (
            "s3_connect_timeout",
            "s3_read_timeout",
            "breaker_reset_seconds",
            "retry_max_backoff_seconds",
        )
        part_sizes = ("s3_part_size", "s3_multipart_threshold")
        window = self.s3_presign_stable_seconds
        not_negative = (
            "visualizations_expire_days",
            "originals_expire_days",
            "abort_incomplete_uploads_days",
        )
        secret = self.signing_secret.reveal() if self.signing_secret else "x" * 16
        return [
            (
                1 <= self.presigned_url_expiry_hours <= 168,
                "S3_PRESIGNED_URL_EXPIRY_HOURS must be from 1 to 168",
            ),
            (
                self.bucket_original != self.bucket_visualization,
                "S3_BUCKET_ORIGINAL and S3_BUCKET_VISUALIZATION must differ",
            ),
            (
                (self.aws_access_key_id is None) == (self.aws_secret_access_key is None),
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither",
            ),
            (
                self.retry_backoff_seconds >= 0,
                "DEMETER_RETRY_BACKOFF_SECONDS must not be negative",
            ),
            (len(secret) >= 16, "DEMETER_SIGNING_SECRET must be at least 16 characters"),
            (
                1 <= self.direct_upload_expiry_seconds <= 604800,
                "DEMETER_DIRECT_UPLOAD_EXPIRY_SECONDS must be from 1 to 604800 (7 days)",
            ),
            (
                window is None or 1 <= window <= 302400,
                "S3_PRESIGN_STABLE_SECONDS must be from 1 to 302400 (3.5 days)",
            ),
            *[(getattr(self, n) >= 1, f"{_env(n)} must be at least 1") for n in at_least_one],
            *[(getattr(self, n) > 0, f"{_env(n)} must be positive") for n in positive],
            *[
                (0 <= getattr(self, n) <= MAX_LIFECYCLE_DAYS, f"{_env(n)} must be 0 to 36500")
                for n in not_negative
            ],
            *[
                (5 * MiB <= getattr(self, n) <= 5 * 1024 * MiB, f"{_env(n)} must be 5 MiB to 5 GiB")
                for n in part_sizes
            ],
        ]

    def lifecycle_policy(self) -> LifecyclePolicy:
        """The lifecycle policy these settings describe.

        Raises:
            ConfigurationError: the policy file is unreadable or invalid.
        """
        if self.lifecycle_file is not None:
            try:
                return LifecyclePolicy.from_dict(json.loads(self.lifecycle_file.read_text()))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"DEMETER_LIFECYCLE_FILE={str(self.lifecycle_file)!r}: {exc}"
                ) from exc
        rules = []
        if self.abort_incomplete_uploads_days:
            rules.append(
                LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_uploads_after_days=self.abort_incomplete_uploads_days,
                )
            )
        for rule_id, bucket, days in (
            ("expire-visualizations", self.bucket_visualization, self.visualizations_expire_days),
            ("expire-originals", self.bucket_original, self.originals_expire_days),
        ):
            if days:
                rules.append(LifecycleRule(id=rule_id, bucket=bucket, expire_after_days=days))
        try:
            return LifecyclePolicy(rules=rules)
        except ValueError as exc:
            raise ConfigurationError(f"invalid lifecycle settings: {exc}") from exc

    @property
    def embedded_database_url(self) -> str:
        """The default database: SQLite under the storage root."""
        return f"sqlite+aiosqlite:///{(self.storage_root / 'demeter.sqlite3').resolve()}"


def _env(name: str) -> str:
    env: str = attrs.fields_dict(StorageSettings)[name].metadata["env"]
    return env


def _shown(field: attrs.Attribute[Any], raw: str) -> str:
    return "********" if "Secret" in str(field.type) else repr(raw)


def _invalid(problems: list[str]) -> ConfigurationError:
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return ConfigurationError(f"invalid settings ({len(problems)}):\n{listed}")


def _parse(raw: str, annotation: Any) -> Any:
    """Turn an environment string into a value of the field's type."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    if base == "bool":
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true/false, yes/no, on/off or 1/0")
    if base == "int":
        return int(raw.replace("_", ""))
    if base == "float":
        return float(raw)
    if base == "Path":
        try:
            return Path(raw).expanduser()
        except RuntimeError as exc:  # "~someone" whose home is unknown
            raise ValueError(f"cannot expand the home directory ({exc})") from None
    if base == "Secret":
        return Secret(raw)
    if base in _CHOICES:
        allowed = get_args(_CHOICES[base])
        if raw.lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return raw.lower()
    if base == "str":
        return raw
    raise TypeError(f"unsupported setting type {annotation}{' (optional)' if optional else ''}")


def settings_table() -> list[tuple[str, str, str]]:
    """``(variable, default, meaning)`` of every setting, in declaration order."""
    rows = []
    for field in attrs.fields(StorageSettings):
        default = field.default
        shown = "(none)" if default is None else f"`{default}`"
        rows.append((field.metadata["env"], shown, field.metadata["help"]))
    return rows
