"""ResilientImageStore: retry inside, circuit breaker outside, over a store that fails on demand."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from demeter_storage import (
    ConfigurationError,
    InMemoryImageStore,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageUnavailable,
    ValidationError,
)
from demeter_storage.adapters.resilience.breaker import BreakerEvent, CircuitBreaker, classify
from demeter_storage.adapters.resilience.store import ResilientImageStore
from demeter_storage.ports.streams import Payload
from demeter_storage.testing import ManualClock


class FlakyStore(InMemoryImageStore):
    """An in-memory store whose backend can be switched off, counting its requests."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.requests = 0
        self.down = False
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def _request(self) -> None:
        self.requests += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise StorageUnavailable("backend down")
        if self.error is not None:
            raise self.error

    async def _get(self, key: str) -> bytes:
        await self._request()
        return await super()._get(key)

    async def _head(self, key: str) -> object:  # type: ignore[override]
        await self._request()
        return await super()._head(key)

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ):  # type: ignore[no-untyped-def]
        await self._request()
        return await super()._put(key, payload, content_type, metadata, if_absent=if_absent)

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        await self._request()
        async for chunk in super()._stream(key, chunk_size):
            yield chunk
            if self.down:
                raise StorageUnavailable("connection dropped mid-stream")


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def flaky() -> FlakyStore:
    store = FlakyStore()
    await store.put("s/a.jpg", b"photo", content_type="image/jpeg")
    store.requests = 0
    return store


@pytest.fixture
def events() -> list[BreakerEvent]:
    return []


@pytest.fixture
def store(
    flaky: FlakyStore, clock: ManualClock, sleeps: Sleeps, events: list[BreakerEvent]
) -> ResilientImageStore:
    return ResilientImageStore(
        flaky,
        clock=clock,
        sleep=sleeps,
        on_breaker_event=events.append,
        circuit_name=f"test-{uuid.uuid4().hex}",
    )


async def _fail(store: ResilientImageStore, times: int) -> None:
    for _ in range(times):
        with pytest.raises(StorageUnavailable):
            await store.get("s/a.jpg")


async def test_transient_errors_are_retried_with_growing_backoff(
    store: ResilientImageStore, flaky: FlakyStore, sleeps: Sleeps
) -> None:
    original = flaky._request
    failures = iter([True, True, False])

    async def twice_down() -> None:
        flaky.down = next(failures)
        await original()

    flaky._request = twice_down  # type: ignore[method-assign]
    assert await store.get("s/a.jpg") == b"photo"
    assert flaky.requests == 3
    assert len(sleeps.calls) == 2
    first, second = sleeps.calls
    assert 0.2 <= first <= 0.4
    assert 0.4 <= second <= 0.6
    assert (await store.breaker_status()).state == "closed"


async def test_five_failed_operations_open_the_circuit_and_each_counts_once(
    store: ResilientImageStore, flaky: FlakyStore, events: list[BreakerEvent]
) -> None:
    flaky.down = True
    await _fail(store, 4)
    status = await store.breaker_status()
    assert (status.state, status.failure_count) == ("closed", 4)
    assert flaky.requests == 12  # 3 attempts per operation
    await _fail(store, 1)
    assert (await store.breaker_status()).state == "open"
    assert [e.failure_count for e in events if e.kind == "failed"] == [1, 2, 3, 4, 5]


async def test_an_open_circuit_fails_fast_without_a_request(
    store: ResilientImageStore, flaky: FlakyStore, clock: ManualClock
) -> None:
    flaky.down = True
    await _fail(store, 5)
    sent = flaky.requests
    clock.advance(15)
    for call in (
        store.get("s/a.jpg"),
        store.head("s/a.jpg"),
        store.exists("s/a.jpg"),
        store.put("s/b.jpg", b"x", content_type="image/jpeg"),
        store.delete("s/a.jpg"),
        store.delete_many(["s/a.jpg"]),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            await call
        assert caught.value.retry_after == pytest.approx(45)
        assert "failing fast" in str(caught.value)
    with pytest.raises(StorageUnavailable):
        [chunk async for chunk in store.stream("s/a.jpg")]
    with pytest.raises(StorageUnavailable):
        [info async for info in store.list()]
    assert flaky.requests == sent
    # Signing needs no request, so it works even while the circuit is open.
    assert (await store.presign("s/a.jpg", expires_in=60)).method == "GET"


async def test_after_the_reset_time_exactly_one_probe_goes_through(
    store: ResilientImageStore, flaky: FlakyStore, clock: ManualClock
) -> None:
    flaky.down = True
    await _fail(store, 5)
    flaky.down = False
    clock.advance(60.5)
    flaky.gate = asyncio.Event()
    sent = flaky.requests
    calls = [asyncio.create_task(store.get("s/a.jpg")) for _ in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert flaky.requests == sent + 1
    assert (await store.breaker_status()).state == "half-open"
    flaky.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results.count(b"photo") == 1
    assert all(isinstance(r, StorageUnavailable) for r in results if r != b"photo")
    assert (await store.breaker_status()).state == "closed"
    flaky.gate = None
    assert await store.get("s/a.jpg") == b"photo"


async def test_a_failed_probe_reopens_the_circuit(
    store: ResilientImageStore, flaky: FlakyStore, clock: ManualClock
) -> None:
    flaky.down = True
    await _fail(store, 5)
    clock.advance(61)
    await _fail(store, 1)  # the probe
    status = await store.breaker_status()
    assert status.state == "open"
    assert status.retry_after == pytest.approx(60)


async def test_a_cancelled_probe_does_not_close_the_circuit(
    store: ResilientImageStore, flaky: FlakyStore, clock: ManualClock
) -> None:
    flaky.down = True
    await _fail(store, 5)
    flaky.down = False
    clock.advance(61)
    flaky.gate = asyncio.Event()
    probe = asyncio.create_task(store.get("s/a.jpg"))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert (await store.breaker_status()).state == "open"


@pytest.mark.parametrize(
    "error",
    [ObjectNotFound("s/a.jpg"), ConfigurationError("access denied")],
)
async def test_answers_from_the_backend_never_count_and_are_not_retried(
    store: ResilientImageStore, flaky: FlakyStore, error: Exception
) -> None:
    flaky.error = error
    for _ in range(10):
        with pytest.raises(type(error)):
            await store.get("s/a.jpg")
    assert flaky.requests == 10
    assert (await store.breaker_status()).state == "closed"


async def test_an_answer_resets_the_failure_count(
    store: ResilientImageStore, flaky: FlakyStore
) -> None:
    flaky.down = True
    await _fail(store, 4)
    flaky.down = False
    with pytest.raises(ObjectNotFound):
        await store.get("s/missing.jpg")
    flaky.down = True
    await _fail(store, 4)
    assert (await store.breaker_status()).state == "closed"


async def test_a_lost_create_only_put_is_an_answer_never_retried_nor_counted(
    store: ResilientImageStore, flaky: FlakyStore, sleeps: Sleeps
) -> None:
    flaky.down = True
    await _fail(store, 4)
    flaky.down = False
    flaky.requests = 0
    for _ in range(10):
        with pytest.raises(ObjectExists):
            await store.put("s/a.jpg", b"other", content_type="image/jpeg", if_absent=True)
    assert flaky.requests == 10  # one attempt each
    status = await store.breaker_status()
    assert (status.state, status.failure_count) == ("closed", 0)  # answers reset the count
    assert await store.get("s/a.jpg") == b"photo"
    assert classify(ObjectExists("k")) == classify(ObjectChanged("k")) == "success"


async def test_bad_input_is_refused_before_the_breaker(
    store: ResilientImageStore, flaky: FlakyStore
) -> None:
    for _ in range(10):
        with pytest.raises(ValidationError):
            await store.get("../escape")
    assert flaky.requests == 0
    assert (await store.breaker_status()).failure_count == 0


async def test_errors_of_the_callers_own_data_are_neither_retried_nor_counted(
    store: ResilientImageStore, flaky: FlakyStore
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("upload interrupted by the client")

    for _ in range(6):
        with pytest.raises(RuntimeError, match="interrupted"):
            await store.put("s/b.jpg", broken(), content_type="image/jpeg")
    assert flaky.requests == 6
    assert (await store.breaker_status()).state == "closed"


async def test_a_one_shot_source_is_not_retried_once_read(
    store: ResilientImageStore, flaky: FlakyStore
) -> None:
    class ReadThenFail(FlakyStore):
        pass

    async def source() -> AsyncIterator[bytes]:
        yield b"one shot"

    inner = ReadThenFail()
    original = inner._put

    async def consume_then_fail(
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ):  # type: ignore[no-untyped-def]
        inner.requests += 1
        async for _ in payload.chunks():
            pass
        raise StorageUnavailable("connection reset after the body was sent")

    inner._put = consume_then_fail  # type: ignore[method-assign]
    resilient = ResilientImageStore(inner, sleep=Sleeps(), circuit_name=f"t-{uuid.uuid4().hex}")
    with pytest.raises(StorageUnavailable):
        await resilient.put("s/c.jpg", source(), content_type="image/jpeg")
    assert inner.requests == 1
    inner._put = original  # type: ignore[method-assign]
    await resilient.put("s/c.jpg", b"bytes are replayable", content_type="image/jpeg")


async def test_a_failure_mid_stream_counts_against_the_circuit(
    store: ResilientImageStore, flaky: FlakyStore
) -> None:
    await flaky.put("s/big.bin", b"x" * 100, content_type="image/jpeg")

    async def read_and_drop() -> None:
        stream = store.stream("s/big.bin", chunk_size=10)
        assert await anext(stream) == b"x" * 10
        flaky.down = True
        with pytest.raises(StorageUnavailable, match="mid-stream"):
            await anext(stream)
        flaky.down = False

    for _ in range(5):
        await read_and_drop()
    assert (await store.breaker_status()).state == "open"


async def test_state_changes_are_logged_and_reported(
    store: ResilientImageStore,
    flaky: FlakyStore,
    clock: ManualClock,
    events: list[BreakerEvent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky.down = True
    with caplog.at_level(logging.INFO, logger="demeter_storage"):
        await _fail(store, 5)
        flaky.down = False
        clock.advance(61)
        await store.get("s/a.jpg")
    changes = [e.state for e in events if e.kind == "state_changed"]
    assert changes == ["open", "half-open", "closed"]
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("breaker")]
    assert any("is now open" in m for m in messages)
    assert any("is now closed" in m for m in messages)
    assert any(
        r.levelno == logging.WARNING and "now open" in r.getMessage() for r in caplog.records
    )


async def test_a_hook_that_raises_is_logged_and_changes_nothing(
    flaky: FlakyStore, clock: ManualClock, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_metrics(event: BreakerEvent) -> None:
        raise RuntimeError("the metrics backend is down")

    store = ResilientImageStore(
        flaky, clock=clock, sleep=sleeps, on_breaker_event=broken_metrics, circuit_name="hooked"
    )
    flaky.down = True
    with caplog.at_level(logging.INFO, logger="demeter_storage"):
        await _fail(store, 5)  # each raises the store's own StorageUnavailable, not the hook's
        assert (await store.breaker_status()).state == "open"
        flaky.down = False
        clock.advance(61)
        assert await store.get("s/a.jpg") == b"photo"
    assert (await store.breaker_status()).state == "closed"
    failed_hooks = [r for r in caplog.records if "breaker event hook" in r.getMessage()]
    # Once when it first failed, once more after the minute's quiet (the probe): not per event.
    assert len(failed_hooks) == 2
    assert all(r.levelno == logging.ERROR and r.exc_info is not None for r in failed_hooks)


def test_outcomes_are_classified() -> None:
    assert classify(None) == "success"
    assert classify(StorageUnavailable("x")) == "failure"
    assert classify(ObjectNotFound("k")) == "success"
    assert classify(RuntimeError("caller")) == "neutral"
    assert classify(asyncio.CancelledError()) == "neutral"
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker("x", threshold=0)
    with pytest.raises(ValueError, match="retry_attempts"):
        ResilientImageStore(InMemoryImageStore(), retry_attempts=0)


async def test_capabilities_are_forwarded_explicitly(store: ResilientImageStore) -> None:
    # The in-memory store has no bucket to create and leaves no leftovers.
    assert await store.ensure_bucket() is False
    assert await store.remove_leftovers() == 0
    with pytest.raises(AttributeError):
        store.verify_url  # noqa: B018 - nothing passes through implicitly any more
    assert "ResilientImageStore" in repr(store)


async def test_ensure_bucket_reaches_a_store_that_provisions_one() -> None:
    class Provisioning(InMemoryImageStore):
        async def ensure_bucket(self) -> bool:
            return True

    assert await ResilientImageStore(Provisioning()).ensure_bucket() is True


# Shared state in Redis


async def test_a_circuit_opened_in_one_process_is_open_in_another(redis_url: str) -> None:
    name = f"test-shared-{uuid.uuid4().hex}"
    first_inner = FlakyStore()
    first_inner.down = True
    first = ResilientImageStore(first_inner, redis_url=redis_url, circuit_name=name, sleep=Sleeps())
    await _fail(first, 5)
    assert (await first.breaker_status()).shared
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from demeter_storage import InMemoryImageStore, StorageUnavailable
        from demeter_storage.adapters.resilience.store import ResilientImageStore

        async def main():
            inner = InMemoryImageStore()
            store = ResilientImageStore(inner, redis_url={redis_url!r}, circuit_name={name!r})
            try:
                await store.get("s/a.jpg")
            except StorageUnavailable as exc:
                print("open", round(exc.retry_after))
            await store.aclose()

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert out.decode().split()[0] == "open"
    assert 0 < int(out.decode().split()[1]) <= 60
    await first.aclose()


async def test_one_probe_across_breakers_sharing_redis(redis_url: str) -> None:
    # Two breakers with no state in common but Redis: two processes, as far as they know.
    name = f"test-probe-{uuid.uuid4().hex}"
    clock = ManualClock()
    inners = [FlakyStore(), FlakyStore()]
    stores = [
        ResilientImageStore(
            inner, redis_url=redis_url, circuit_name=name, clock=clock, sleep=Sleeps()
        )
        for inner in inners
    ]
    for inner in inners:
        await inner.put("s/a.jpg", b"photo", content_type="image/jpeg")
        inner.down = True
    await _fail(stores[0], 5)
    for inner in inners:
        inner.down = False
    clock.advance(61)
    inners[0].gate = asyncio.Event()
    probe = asyncio.create_task(stores[0].get("s/a.jpg"))
    await asyncio.sleep(0.05)
    with pytest.raises(StorageUnavailable, match="probing"):
        await stores[1].get("s/a.jpg")
    inners[0].gate.set()
    assert await probe == b"photo"
    assert await stores[1].get("s/a.jpg") == b"photo"
    for store in stores:
        await store.aclose()


async def test_unreachable_redis_falls_back_to_local_state_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = FlakyStore()
    await inner.put("s/a.jpg", b"photo", content_type="image/jpeg")
    store = ResilientImageStore(
        inner, redis_url="redis://127.0.0.1:1/0", circuit_name="unreachable", sleep=Sleeps()
    )
    with caplog.at_level(logging.WARNING, logger="demeter_storage"):
        assert await store.get("s/a.jpg") == b"photo"
    assert any("Redis is unreachable" in r.getMessage() for r in caplog.records)
    inner.down = True
    await _fail(store, 5)
    status = await store.breaker_status()
    assert (status.state, status.shared) == ("open", False)
    await store.aclose()


async def test_a_redis_that_answers_nothing_costs_one_short_timeout_then_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = silent.getsockname()[1]
    inner = FlakyStore()
    await inner.put("s/a.jpg", b"photo", content_type="image/jpeg")
    store = ResilientImageStore(
        inner, redis_url=f"redis://127.0.0.1:{port}/0", circuit_name="silent", sleep=Sleeps()
    )
    try:
        with caplog.at_level(logging.WARNING, logger="demeter_storage"):
            started = time.monotonic()
            # Without the breaker's socket timeout this would wait for ever.
            assert await asyncio.wait_for(store.get("s/a.jpg"), 10) == b"photo"
            first = time.monotonic() - started
            started = time.monotonic()
            for _ in range(20):
                assert await store.get("s/a.jpg") == b"photo"
            later = time.monotonic() - started
        warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per retry interval, not per call
        assert "Timeout" in warnings[0].getMessage()
        # The breaker's short socket timeout ended the wait, not the OS's; later calls
        # skip Redis until the retry interval passes.
        assert first < 5
        assert later < first
        assert (await store.breaker_status()).shared is False
    finally:
        await store.aclose()
        silent.close()
