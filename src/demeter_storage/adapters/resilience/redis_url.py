"""The circuit breaker's Redis URL as redis-py reads it: checked before any connection."""

from __future__ import annotations

import importlib.util

from demeter_storage.domain.urls import redis_url_problem as shape_problem


def url_problem(url: str) -> str | None:
    """Why redis-py cannot connect to ``url`` (or is not installed), or None.

    The answer may quote the URL: callers redact it.
    """
    problem = shape_problem(url)
    if problem:
        return problem
    if importlib.util.find_spec("redis") is None:
        return "needs the redis package: pip install 'demeter-storage[redis]', or unset it"
    from redis.connection import parse_url  # noqa: PLC0415 - the optional redis extra

    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # parses its query (socket_timeout=...)
    except (ValueError, TypeError) as exc:
        return f"redis cannot use it ({exc})"
    return None
