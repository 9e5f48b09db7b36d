"""Retries and a circuit breaker around any :class:`~demeter_storage.ports.ImageStore`.

The order matters: the circuit breaker is **outside**, the retry **inside**, so
one operation (with all its attempts) is one sample for the breaker. Only
:class:`~demeter_storage.domain.errors.StorageUnavailable` (5xx, throttling,
timeouts, dropped connections, as adapters translate them) is retried, and
only while the data can be sent again; never a 4xx, a missing key, or an error
from the caller's own data source.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from demeter_storage.adapters.resilience.breaker import BreakerEvent, BreakerStatus, CircuitBreaker
from demeter_storage.domain.errors import StorageUnavailable
from demeter_storage.domain.lifecycle import LifecyclePolicy
from demeter_storage.domain.objects import HttpMethod, ObjectInfo, PresignedPost, PresignedUrl
from demeter_storage.ports import (
    ImageStore,
    ProvisionsBucket,
    RemovesLeftovers,
)
from demeter_storage.ports.streams import Payload

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.info(
        "attempt %d failed (%s); retrying in %.2f s",
        state.attempt_number,
        error,
        state.next_action.sleep if state.next_action else 0.0,
    )


class ResilientImageStore(ImageStore):
    """Decorates a store with a tenacity retry inside a purgatory circuit breaker.

    Args:
        inner: the store to protect.
        failure_threshold: failed operations (after their retries) in a row that
            open the circuit.
        reset_timeout: seconds the circuit stays open; then exactly one probe
            goes through: success closes it, failure reopens it.
        retry_attempts: attempts per operation (1 disables retries).
        retry_backoff: the first backoff in seconds; it doubles per attempt, with jitter.
        retry_max_backoff: the longest backoff in seconds.
        redis_url: share the breaker's state with other processes through Redis;
            if Redis is unreachable the breaker uses local state (with a warning)
            and storage calls go on.
        circuit_name: the circuit's name (default ``demeter-storage:{inner.name}``).
        breaker: an existing circuit breaker to share (stores on one backend
            should trip together); overrides the breaker arguments above.
        on_breaker_event: called with each :class:`BreakerEvent` (state changes,
            failures, recoveries): the hook for metrics.
        clock: returns the time in seconds; injectable for tests.
        sleep: the coroutine used to wait between attempts; injectable for tests.
    """

    def __init__(
        self,
        inner: ImageStore,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        retry_attempts: int = 3,
        retry_backoff: float = 0.2,
        retry_max_backoff: float = 5.0,
        redis_url: str | None = None,
        circuit_name: str | None = None,
        on_breaker_event: Callable[[BreakerEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.retry_attempts = retry_attempts
        self._backoff = retry_backoff
        self._max_backoff = retry_max_backoff
        self._sleep = sleep
        self.breaker = breaker or CircuitBreaker(
            circuit_name or f"demeter-storage:{inner.name}",
            threshold=failure_threshold,
            reset_timeout=reset_timeout,
            redis_url=redis_url,
            clock=clock,
            on_event=on_breaker_event,
        )

    def __repr__(self) -> str:
        return f"ResilientImageStore({self.inner!r}, breaker={self.breaker!r})"

    async def ensure_bucket(self) -> bool:
        """Create the inner store's bucket, through the breaker; False if it has none to create."""
        inner = self.inner
        if not isinstance(inner, ProvisionsBucket):
            return False
        return await self._guarded(inner.ensure_bucket)

    async def remove_leftovers(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove the inner store's leftovers of crashed writes; 0 if it never leaves any."""
        inner = self.inner
        if not isinstance(inner, RemovesLeftovers):
            return 0
        return await inner.remove_leftovers(older_than)

    async def breaker_status(self) -> BreakerStatus:
        """The circuit breaker's state now."""
        return await self.breaker.status()

    async def aclose(self) -> None:
        """Close the inner store and the breaker's Redis connection."""
        await self.breaker.aclose()
        await self.inner.aclose()

    def _wait_after(self, attempt_number: int) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        # Jitter in proportion to the backoff: tenacity's default (up to 1 s)
        # would swamp a 0.2 s first backoff.
        wait = wait_exponential_jitter(
            multiplier=self._backoff, max=self._max_backoff, jitter=self._backoff
        )
        # Tenacity's wait strategies only read the attempt number of the state.
        state = cast(RetryCallState, SimpleNamespace(attempt_number=attempt_number))
        return float(wait(state))

    async def _attempts(
        self, operation: Callable[[], Awaitable[_T]], can_retry: Callable[[], bool]
    ) -> _T:
        # The first attempt runs on its own: tenacity's machinery is only set up
        # once an attempt failed in a way worth retrying (the rare case).
        try:
            return await operation()
        except StorageUnavailable:
            if self.retry_attempts == 1 or not can_retry():
                raise
        await self._sleep(self._wait_after(1))
        retrying = AsyncRetrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, StorageUnavailable) and can_retry()
            ),
            stop=stop_after_attempt(self.retry_attempts - 1),
            # tenacity counts from the second attempt: its n-th wait is our (n+1)-th.
            wait=lambda state: self._wait_after(state.attempt_number + 1),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _guarded(
        self,
        operation: Callable[[], Awaitable[_T]],
        can_retry: Callable[[], bool] = lambda: True,
    ) -> _T:
        async with self.breaker.guard():
            return await self._attempts(operation, can_retry)

    # The inner store's protected methods are called directly: arguments were
    # checked (and normalised) by this store's public methods already.

    async def _put(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: dict[str, str],
        *,
        if_absent: bool = False,
    ) -> ObjectInfo:
        return await self._guarded(
            lambda: self.inner._put(key, payload, content_type, metadata, if_absent=if_absent),
            can_retry=lambda: payload.replayable,
        )

    async def _copy(self, source: str, target: str, *, if_absent: bool) -> ObjectInfo:
        return await self._guarded(lambda: self.inner._copy(source, target, if_absent=if_absent))

    async def _get(self, key: str) -> bytes:
        return await self._guarded(lambda: self.inner._get(key))

    async def _head(self, key: str) -> ObjectInfo:
        return await self._guarded(lambda: self.inner._head(key))

    async def _delete(self, key: str) -> None:
        await self._guarded(lambda: self.inner._delete(key))

    async def _delete_many(self, keys: builtins.list[str]) -> None:
        await self._guarded(lambda: self.inner._delete_many(keys))

    async def _delete_if_match(self, key: str, etag: str) -> None:
        await self._guarded(lambda: self.inner._delete_if_match(key, etag))

    async def _presign(self, key: str, expires_in: int, method: HttpMethod) -> PresignedUrl:
        # Signing is local computation: no request, so nothing for the breaker to judge.
        return await self.inner._presign(key, expires_in, method)

    async def _presign_put(self, key: str, expires_in: int, content_type: str) -> PresignedUrl:
        return await self.inner._presign_put(key, expires_in, content_type)

    async def _presign_post(
        self, key: str, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        return await self.inner._presign_post(key, content_type, max_size, expires_in)

    async def _apply_lifecycle(self, policy: LifecyclePolicy) -> None:
        await self._guarded(lambda: self.inner._apply_lifecycle(policy))

    async def _get_lifecycle(self) -> LifecyclePolicy:
        return await self._guarded(self.inner._get_lifecycle)

    async def _sweep(self, now: datetime, dry_run: bool) -> builtins.list[ObjectInfo]:
        return await self._guarded(lambda: self.inner._sweep(now, dry_run))

    async def _stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        async for chunk in self._guarded_iteration(lambda: self.inner._stream(key, chunk_size)):
            yield chunk

    async def _list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        async for info in self._guarded_iteration(lambda: self.inner._list(prefix)):
            yield info

    async def _guarded_iteration(self, start: Callable[[], AsyncIterator[_T]]) -> AsyncIterator[_T]:
        """Iterate under one breaker guard; only the first item is retried.

        The whole iteration is one operation for the breaker: a connection lost
        mid-stream is a failure, and a consumer that stops early still proved
        the backend answered.
        """
        async with self.breaker.guard() as verdict:
            iterator: AsyncIterator[_T] | None = None

            async def first_item() -> tuple[_T | None, bool]:
                nonlocal iterator
                if iterator is not None:
                    await _close(iterator)
                iterator = start()
                try:
                    return await anext(iterator), True
                except StopAsyncIteration:
                    return None, False

            try:
                first, more = await self._attempts(first_item, lambda: True)
                if not more:
                    return
                try:
                    yield first  # type: ignore[misc]
                    async for item in iterator:  # type: ignore[union-attr]
                        yield item
                except GeneratorExit:
                    verdict.outcome = "success"
                    raise
            finally:
                if iterator is not None:
                    await _close(iterator)


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
