"""Resilience around any store: a purgatory circuit breaker and tenacity retries."""

from demeter_storage.adapters.resilience.breaker import BreakerEvent, BreakerStatus, CircuitBreaker
from demeter_storage.adapters.resilience.store import ResilientImageStore

__all__ = ["BreakerEvent", "BreakerStatus", "CircuitBreaker", "ResilientImageStore"]
