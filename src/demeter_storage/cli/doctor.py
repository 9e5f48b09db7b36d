"""``demeter-storage doctor``: check what the settings point at, one fix per problem.

It names the database and Redis it checks by their URLs, masked; every line it
prints is also scrubbed of the passwords of the URL variables, whatever a
driver's error message quotes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError, StorageError, StorageUnavailable
from demeter_storage.domain.urls import mask_url, redact
from demeter_storage.ports import ImageStore
from demeter_storage.service.image_service import ImageService
from demeter_storage.settings.storage import StorageSettings

OK: Final = "ok     "
PROBLEM: Final = "PROBLEM"
NOTE: Final = "note   "


URL_VARIABLES: Final = (
    "DEMETER_DATABASE_URL",
    "DEMETER_REDIS_URL",
    "S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "DEMETER_PUBLIC_BASE_URL",
)
"""The variables whose passwords no line of the report may show."""


class Report:
    """Collects check results and prints them as they come.

    Args:
        urls: URLs whose passwords are masked in every line printed.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self.problems = 0
        self._urls = tuple(urls)

    def _print(self, text: str) -> None:
        print(redact(text, *self._urls))

    def ok(self, what: str) -> None:
        """A check that passed."""
        self._print(f"{OK} {what}")

    def note(self, what: str, fix: str) -> None:
        """Worth doing, but nothing is wrong yet (not counted as a problem)."""
        self._print(f"{NOTE} {what}\n        fix: {fix}")

    def problem(self, what: str, fix: str) -> None:
        """A check that failed, with what to do about it."""
        self.problems += 1
        self._print(f"{PROBLEM} {what}\n        fix: {fix}")


async def run_checks() -> int:
    """Run every check; exit code 0 when all passed, 1 otherwise."""
    report = Report(os.environ[name] for name in URL_VARIABLES if os.environ.get(name))
    try:
        settings = StorageSettings.from_env()
    except ConfigurationError as exc:
        report.problem("the settings are invalid", str(exc))
        return 1
    report.ok(f"settings read (backend {settings.backend!r})")
    if settings.backend == "s3":
        _check_credentials(settings, report)
    elif settings.backend == "local":
        _check_root(settings, report)
    try:
        service = await build_service(settings)
    except StorageError as exc:
        report.problem("the service cannot be built", str(exc))
        return 1
    try:
        await _check_database(service, report, _database_shown(settings))
        for store in (service.originals, service.visualizations):
            # The memory backend's policy lives and dies with the process: nothing to check.
            if await _check_bucket(store, report) and settings.backend != "memory":
                await _check_lifecycle(
                    service, store, report, enforced_by_server=settings.backend == "s3"
                )
        await _check_breaker(service, report, settings.redis_url)
    finally:
        await service.aclose()
    print(f"{report.problems} problem(s) found" if report.problems else "everything looks right")
    return 1 if report.problems else 0


def _check_credentials(settings: StorageSettings, report: Report) -> None:
    from demeter_storage.adapters.s3.credentials import find_credentials  # noqa: PLC0415

    if settings.aws_access_key_id is not None:
        report.ok("credentials: explicit keys from AWS_ACCESS_KEY_ID")
        return
    try:
        found = find_credentials(settings.aws_profile)
    except Exception as exc:
        report.problem(f"credentials: {exc}", "fix AWS_PROFILE or the shared config files")
        return
    if found is None:
        report.problem(
            "credentials: none found in boto3's chain",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role",
        )
    else:
        report.ok(f"credentials: found by boto3 ({found})")


def _check_root(settings: StorageSettings, report: Report) -> None:
    root = settings.storage_root
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".doctor-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        report.problem(
            f"storage root {root} is not writable ({exc.strerror})",
            "point DEMETER_STORAGE_ROOT at a writable directory",
        )
        return
    report.ok(f"storage root {root.resolve()} is writable")


def _database_shown(settings: StorageSettings) -> str:
    if settings.database_url is None and settings.backend == "memory":
        return "(in memory)"
    return mask_url(settings.database_url or settings.embedded_database_url)


async def _check_database(service: ImageService, report: Report, shown: str) -> None:
    try:
        await service.metadata.list_session("doctor", limit=1)
    except StorageError as exc:
        report.problem(
            f"metadata database {shown}: {exc}",
            "check DEMETER_DATABASE_URL, that the server runs, and that the schema exists "
            "(DEMETER_CREATE_SCHEMA=1 or your migrations)",
        )
        return
    report.ok(f"metadata database {shown} answers")


async def _check_bucket(store: ImageStore, report: Report) -> bool:
    try:
        await store.exists("doctor/probe")
    except StorageUnavailable as exc:
        report.problem(
            f"bucket {store.name}: unreachable ({exc})",
            "check S3_ENDPOINT_URL and the network; the server may be down",
        )
        return False
    except ConfigurationError as exc:
        report.problem(
            f"bucket {store.name}: {exc}",
            "create the bucket (S3_CREATE_BUCKETS=1) or fix the credentials' permissions",
        )
        return False
    report.ok(f"bucket {store.name} is reachable")
    return True


async def _check_lifecycle(
    service: ImageService, store: ImageStore, report: Report, *, enforced_by_server: bool
) -> None:
    wanted = service.lifecycle_policy().for_bucket(store.name)
    try:
        applied = await store.get_lifecycle()
    except StorageError as exc:
        report.problem(f"lifecycle of {store.name}: {exc}", "check the lifecycle permissions")
        return
    if applied != wanted and enforced_by_server:
        # The bucket enforces other rules than configured: that costs money or data.
        report.problem(
            f"lifecycle of {store.name} differs from the configured policy",
            "run `demeter-storage lifecycle apply`",
        )
    elif applied != wanted:
        report.note(
            f"lifecycle of {store.name} is not the configured policy yet",
            "run `demeter-storage lifecycle apply`, then `lifecycle sweep` now and then",
        )
    else:
        report.ok(f"lifecycle of {store.name} is the configured policy")


async def _check_breaker(service: ImageService, report: Report, redis_url: str | None) -> None:
    status: Callable[[], Awaitable[object]] | None = getattr(
        service.originals, "breaker_status", None
    )
    if status is None:
        return
    current = await status()
    state = getattr(current, "state", "unknown")
    if redis_url is not None and getattr(current, "shared", False):
        report.ok(f"circuit breaker state is shared through Redis at {mask_url(redis_url)}")
    elif redis_url is not None:
        report.note(
            f"circuit breaker state is not shared: Redis at {mask_url(redis_url)} is unreachable",
            "check DEMETER_REDIS_URL and that Redis runs; until then each process keeps its own",
        )
    if state == "closed":
        report.ok("circuit breaker is closed")
    else:
        report.problem(
            f"circuit breaker is {state}: calls fail fast",
            "fix the endpoint; it closes after its reset time and one successful probe",
        )
