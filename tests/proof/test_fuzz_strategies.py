"""The fuzz strategies themselves: they produce accepted and refused inputs alike.

A fuzzer that only ever tries invalid names proves nothing about valid ones.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.proof.strategies import (
    expected_key,
    expected_original_key,
    image_bytes,
    keys,
    names,
    sniffed_type,
)


def _share(strategy: st.SearchStrategy[Any], predicate: Any) -> float:
    seen: list[bool] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(strategy)
    def collect(value: Any) -> None:
        seen.append(bool(predicate(value)))

    collect()
    return sum(seen) / len(seen)


def test_names_are_accepted_and_refused_alike() -> None:
    def accepted(value: object) -> bool:
        return isinstance(expected_original_key(value, value), str)

    assert 0.15 < _share(names, accepted) < 0.85


def test_keys_are_accepted_and_refused_alike() -> None:
    def accepted(value: object) -> bool:
        return isinstance(value, str) and expected_key(value) is not None

    assert 0.05 < _share(keys, accepted) < 0.95


def test_image_data_is_accepted_and_refused_alike() -> None:
    assert 0.2 < _share(image_bytes(), lambda data: sniffed_type(data) is not None) < 0.9
