"""Clocks that tests move by hand, so that nothing ever sleeps for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    """A clock that only moves when told to.

    Call it for seconds since the epoch (what the circuit breaker takes), or
    :meth:`now` for a timezone-aware datetime (what stores take).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> float:
        """Seconds since the epoch."""
        return self._now.timestamp()

    def now(self) -> datetime:
        """The current time as a timezone-aware datetime."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._now += timedelta(seconds=seconds)


async def no_sleep(_seconds: float) -> None:
    """A stand-in for ``asyncio.sleep`` that returns at once (records nothing)."""
