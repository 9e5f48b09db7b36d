"""A circuit breaker on purgatory, with an injectable clock, one probe, and Redis fallback.

purgatory supplies the state machine (closed -> opened -> half-opened), the
failure counting, the repositories (in memory, or in Redis so that many
processes trip together) and the event hooks. Around it this module adds what
purgatory leaves out:

* **Outcomes are classified**, not every exception is a failure: only
  :class:`~demeter_storage.domain.errors.StorageUnavailable` (after retries)
  counts; any other answer from the backend (not found, access denied...) is a
  success, since the backend answered; an error from the caller's own data or a
  cancellation is neutral (it proves nothing either way).
* **Time comes from an injected clock**, so tests move a fake clock instead of
  sleeping; purgatory's own timestamps are replaced before they are stored.
* **Exactly one probe** goes through after the reset time (purgatory lets every
  concurrent caller through); with Redis, one probe across all processes.
* **Redis never blocks storage**: if it is unreachable the breaker falls back
  to local state with a warning and tries Redis again later.
* **No credentials in names**: a circuit's name becomes Redis keys and appears
  in errors and logs, so a password in it (a circuit named after an endpoint
  URL) is masked; so is the Redis URL's in the warnings about Redis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork, ContextChanged
from purgatory.domain.model import CLOSED, HALF_OPENED, OPENED, Context, HalfOpenedState

from demeter_storage.domain.errors import ConfigurationError, StorageError, StorageUnavailable
from demeter_storage.domain.urls import mask_url, redact

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Outcome = Literal["success", "failure", "neutral"]
BreakerState = Literal["closed", "open", "half-open"]
_STATE_NAMES: Final[dict[str, BreakerState]] = {
    CLOSED: "closed",
    OPENED: "open",
    HALF_OPENED: "half-open",
}
_REDIS_TIMEOUT_SECONDS: Final = 0.5
HOOK_ERROR_LOG_INTERVAL: Final = 60.0
"""Seconds between two logged failures of the ``on_event`` hook."""


def classify(exc: BaseException | None) -> Outcome:
    """What an operation's outcome says about the backend's health."""
    if exc is None:
        return "success"
    if isinstance(exc, StorageUnavailable):
        return "failure"
    if isinstance(exc, StorageError):
        return "success"
    return "neutral"


@attrs.define
class Verdict:
    """Set by a guarded block that knows better than its exception what it proved."""

    outcome: Outcome | None = None


@attrs.frozen
class BreakerStatus:
    """A snapshot of a circuit.

    Attributes:
        name: the circuit's name.
        state: ``"closed"``, ``"open"`` or ``"half-open"``.
        failure_count: consecutive failures counted while closed.
        retry_after: seconds until a probe may go, when open; else None.
        shared: whether the state is read from Redis right now.
    """

    name: str
    state: BreakerState
    failure_count: int
    retry_after: float | None
    shared: bool


@attrs.frozen
class BreakerEvent:
    """A change worth knowing about: ``kind`` is purgatory's event kind.

    Attributes:
        name: the circuit's name.
        kind: ``"circuit_breaker_created"``, ``"state_changed"``, ``"failed"`` or ``"recovered"``.
        state: the new state, for ``"state_changed"``.
        failure_count: the count so far, for ``"failed"``.
    """

    name: str
    kind: str
    state: BreakerState | None = None
    failure_count: int | None = None


def _with_timeouts(url: str) -> str:
    """Add short socket timeouts to a Redis URL, so an unreachable Redis fails fast."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(_REDIS_TIMEOUT_SECONDS))
    query.setdefault("socket_connect_timeout", str(_REDIS_TIMEOUT_SECONDS))
    return parts._replace(query=urlencode(query)).geturl()


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError  # noqa: PLC0415 - the optional redis extra
    except ImportError:  # pragma: no cover - redis is installed with the redis extra
        return (OSError, TimeoutError)
    return (RedisError, OSError, TimeoutError)


class CircuitBreaker:
    """One circuit, guarding calls to one backend.

    Args:
        name: the circuit's name (the Redis key is ``cbr::{name}``); a password
            in it is masked (see :func:`~demeter_storage.domain.urls.mask_url`).
        threshold: consecutive failed operations that open the circuit.
        reset_timeout: seconds the circuit stays open before one probe may go.
        redis_url: share the state through Redis (``redis://host:port/db``).
        clock: returns the time in seconds; injectable for tests.
        on_event: called with every :class:`BreakerEvent`; an exception it raises is
            logged (at most once a minute) and changes nothing.
        redis_retry_interval: seconds before Redis is tried again after a failure.
    """

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        reset_timeout: float = 60.0,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[BreakerEvent], None] | None = None,
        redis_retry_interval: float = 30.0,
    ) -> None:
        if threshold < 1 or reset_timeout <= 0:
            raise ValueError("threshold must be >= 1 and reset_timeout > 0")
        self.name = mask_url(name)
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._on_event = on_event
        self._hook_errors_quiet_until = 0.0
        self._local = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=reset_timeout
        )
        self._local.add_listener(self._listen)
        self._shared: AsyncCircuitBreakerFactory | None = None
        self._redis: Any = None
        self._redis_errors = _redis_errors()
        self._redis_url = redis_url  # only to mask its password in warnings
        if redis_url:
            url = _with_timeouts(redis_url)
            try:
                from redis import asyncio as aioredis  # noqa: PLC0415 - the optional redis extra
            except ImportError as exc:
                raise ConfigurationError(
                    "a Redis URL is set (DEMETER_REDIS_URL) but the redis package is missing: "
                    "pip install 'demeter-storage[redis]', or unset the URL"
                ) from exc
            self._shared = AsyncCircuitBreakerFactory(
                default_threshold=threshold,
                default_ttl=reset_timeout,
                uow=AsyncRedisUnitOfWork(url),
            )
            self._shared.add_listener(self._listen)
            self._redis = aioredis.from_url(url)
        self._redis_retry_interval = redis_retry_interval
        self._redis_down_until = 0.0
        self._probing = False
        self._open_until = 0.0
        # The in-memory repository hands out one Context object per circuit for
        # good: keep it rather than look it up on every call.
        self._local_context: Context | None = None

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, shared={self._shared is not None})"

    # The shared or the local state

    def _redis_failed(self, exc: BaseException) -> None:
        if self._clock() >= self._redis_down_until:
            logger.warning(
                "circuit %r: Redis is unreachable (%s: %s); using this process's own breaker "
                "state for %.0f s",
                self.name,
                type(exc).__name__,
                redact(str(exc), self._redis_url),
                self._redis_retry_interval,
            )
        self._redis_down_until = self._clock() + self._redis_retry_interval

    def _use_shared(self) -> bool:
        return self._shared is not None and self._clock() >= self._redis_down_until

    async def _context(self) -> tuple[AsyncCircuitBreakerFactory, Context]:
        if self._use_shared():
            assert self._shared is not None
            try:
                return self._shared, (await self._shared.get_breaker(self.name)).context
            except self._redis_errors as exc:
                self._redis_failed(exc)
        if self._local_context is None:
            self._local_context = (await self._local.get_breaker(self.name)).context
        return self._local, self._local_context

    async def _publish(self, factory: AsyncCircuitBreakerFactory, context: Context) -> None:
        """Store the context's state changes (in Redis, or locally) and notify listeners."""
        now = self._clock()
        if context.state == OPENED and context.opened_at is not None:
            # purgatory stamps wall-clock time; restamp with our clock.
            context._state.opened_at = now
            context.messages[:] = [
                dataclasses.replace(m, opened_at=now)
                if isinstance(m, ContextChanged) and m.state == OPENED
                else m
                for m in context.messages
            ]
            self._open_until = now + self.reset_timeout
        try:
            while context.messages:
                await factory.messagebus.handle(context.messages.pop(0), factory.uow)
        except self._redis_errors as exc:
            context.messages.clear()
            self._redis_failed(exc)

    # Probes

    async def _claim_probe(self) -> bool:
        if self._probing:
            return False
        if self._redis is not None and self._use_shared():
            try:
                claimed = await self._redis.set(
                    f"cbr::{self.name}::probe", "1", nx=True, px=int(self.reset_timeout * 1000)
                )
            except self._redis_errors as exc:
                self._redis_failed(exc)
            else:
                if not claimed:
                    return False
        self._probing = True
        return True

    async def _release_probe(self) -> None:
        self._probing = False
        if self._redis is not None and self._use_shared():
            try:
                await self._redis.delete(f"cbr::{self.name}::probe")
            except self._redis_errors as exc:
                self._redis_failed(exc)

    # Calls

    def _unavailable(self, retry_after: float, why: str) -> StorageUnavailable:
        return StorageUnavailable(
            f"{self.name}: {why}; failing fast without a request. Retry in {retry_after:.1f} s",
            retry_after=retry_after,
        )

    async def call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``operation`` through the circuit.

        Raises:
            StorageUnavailable: the circuit is open (``retry_after`` says until
                when), or another probe is in flight; ``operation`` was not called.
        """
        async with self.guard():
            return await operation()

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[Verdict]:
        """Guard the block: it runs only if the circuit lets it, and its outcome counts.

        The outcome is classified from the exception leaving the block (see
        :func:`classify`), unless the block sets ``verdict.outcome`` itself.

        Raises:
            StorageUnavailable: the circuit is open, or another probe is in
                flight; the block did not run.
        """
        now = self._clock()
        if now < self._open_until:
            raise self._unavailable(self._open_until - now, "the circuit is open")
        factory, context = await self._context()
        if context.state == OPENED:
            reopen_at = (context.opened_at or now) + self.reset_timeout
            if now < reopen_at:
                self._open_until = reopen_at
                raise self._unavailable(reopen_at - now, "the circuit is open")
        probing = context.state != CLOSED
        if probing:
            if not await self._claim_probe():
                raise self._unavailable(1.0, "another request is probing the backend")
            if context.state == OPENED:
                context.set_state(HalfOpenedState())
        verdict = Verdict()
        try:
            try:
                yield verdict
            except BaseException as exc:
                outcome = verdict.outcome or classify(exc)
                # A probe that proves nothing (cancelled, say) counts against it:
                # closing the circuit needs a real success.
                if outcome == "failure" or (outcome == "neutral" and probing):
                    context.handle_exception(exc)
                elif outcome == "success":
                    context.handle_end_request()
                raise
            context.handle_end_request()
            if context.state == CLOSED:
                self._open_until = 0.0
        finally:
            await self._publish(factory, context)
            if probing:
                await self._release_probe()

    async def status(self) -> BreakerStatus:
        """The circuit's state now."""
        factory, context = await self._context()
        now = self._clock()
        retry_after = None
        if context.state == OPENED:
            retry_after = max(0.0, (context.opened_at or now) + self.reset_timeout - now)
        return BreakerStatus(
            name=self.name,
            state=_STATE_NAMES[context.state],
            failure_count=int(context.failure_count or 0),
            retry_after=retry_after,
            shared=factory is self._shared,
        )

    async def aclose(self) -> None:
        """Close the Redis connections, if any (safe to call twice)."""
        if self._redis is not None:
            redis_client, self._redis = self._redis, None
            await redis_client.aclose()
            uow = self._shared.uow if self._shared is not None else None
            redis = getattr(getattr(uow, "contexts", None), "redis", None)
            if redis is not None:
                await redis.aclose()

    # Events

    def _listen(self, name: str, kind: str, event: Any) -> None:
        state = _STATE_NAMES.get(getattr(event, "state", ""), None)
        published = BreakerEvent(
            name=name, kind=kind, state=state, failure_count=getattr(event, "failure_count", None)
        )
        if kind == "state_changed":
            level = logging.WARNING if state == "open" else logging.INFO
            logger.log(level, "circuit %r is now %s", name, state)
        if self._on_event is not None:
            try:
                self._on_event(published)
            except Exception:
                # A metrics hook must not fail the storage call or upset the circuit's
                # state; nor flood the log with a traceback per failure in an outage.
                now = self._clock()
                if now >= self._hook_errors_quiet_until:
                    self._hook_errors_quiet_until = now + HOOK_ERROR_LOG_INTERVAL
                    logger.exception(
                        "circuit %r: the breaker event hook failed on a %s event "
                        "(its failures are logged at most once every %.0f s)",
                        name,
                        kind,
                        HOOK_ERROR_LOG_INTERVAL,
                    )
