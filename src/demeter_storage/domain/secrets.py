"""A wrapper that keeps secrets out of ``repr``, ``str`` and logs."""

from __future__ import annotations

import hmac
from typing import Final

MASK: Final = "********"
"""What every secret shows instead of itself (here and in :mod:`~demeter_storage.domain.urls`)."""


class Secret:
    """A secret string whose ``repr`` and ``str`` never show it.

    Call :meth:`reveal` at the one place the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
