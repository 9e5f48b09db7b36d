"""``demeter-storage doctor``: check what the settings point at, one fix per problem."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError, StorageError, StorageUnavailable
from demeter_storage.ports import ImageStore
from demeter_storage.service import ImageService
from demeter_storage.settings import StorageSettings

OK: Final = "ok     "
PROBLEM: Final = "PROBLEM"
NOTE: Final = "note   "


class Report:
    """Collects check results and prints them as they come."""

    def __init__(self) -> None:
        self.problems = 0

    def ok(self, what: str) -> None:
        """A check that passed."""
        print(f"{OK} {what}")

    def note(self, what: str, fix: str) -> None:
        """Worth doing, but nothing is wrong yet (not counted as a problem)."""
        print(f"{NOTE} {what}\n        fix: {fix}")

    def problem(self, what: str, fix: str) -> None:
        """A check that failed, with what to do about it."""
        self.problems += 1
        print(f"{PROBLEM} {what}\n        fix: {fix}")


async def run_checks() -> int:
    """Run every check; exit code 0 when all passed, 1 otherwise."""
    report = Report()
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
        await _check_database(service, report)
        for store in (service.originals, service.visualizations):
            # The memory backend's policy lives and dies with the process: nothing to check.
            if await _check_bucket(store, report) and settings.backend != "memory":
                await _check_lifecycle(
                    service, store, report, enforced_by_server=settings.backend == "s3"
                )
        await _check_breaker(service, report)
    finally:
        await service.aclose()
    print(f"{report.problems} problem(s) found" if report.problems else "everything looks right")
    return 1 if report.problems else 0


def _check_credentials(settings: StorageSettings, report: Report) -> None:
    import boto3  # noqa: PLC0415 - only the S3 backend needs it

    if settings.aws_access_key_id is not None:
        report.ok("credentials: explicit keys from AWS_ACCESS_KEY_ID")
        return
    try:
        found = boto3.Session(profile_name=settings.aws_profile).get_credentials()
    except Exception as exc:
        report.problem(f"credentials: {exc}", "fix AWS_PROFILE or the shared config files")
        return
    if found is None:
        report.problem(
            "credentials: none found in boto3's chain",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role",
        )
    else:
        report.ok(f"credentials: found by boto3 ({found.method})")


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


async def _check_database(service: ImageService, report: Report) -> None:
    try:
        await service.metadata.list_session("doctor", limit=1)
    except StorageError as exc:
        report.problem(
            f"metadata database: {exc}",
            "check DEMETER_DATABASE_URL, that the server runs, and that the schema exists "
            "(DEMETER_CREATE_SCHEMA=1 or your migrations)",
        )
        return
    report.ok("metadata database answers")


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


async def _check_breaker(service: ImageService, report: Report) -> None:
    status: Callable[[], Awaitable[object]] | None = getattr(
        service.originals, "breaker_status", None
    )
    if status is None:
        return
    current = await status()
    state = getattr(current, "state", "unknown")
    if state == "closed":
        report.ok("circuit breaker is closed")
    else:
        report.problem(
            f"circuit breaker is {state}: calls fail fast",
            "fix the endpoint; it closes after its reset time and one successful probe",
        )
